"""A training run's output folder: the lock that keeps a second run out, the last complete
checkpoint (one that a kill cut short has no ``trainer_state.json`` and is skipped), and the
refusal of a folder that holds another run unless ``--resume`` or ``--force``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from datagen.core.errors import UserError

MANIFEST = "train_manifest.json"
CHECKPOINT_PREFIX = "checkpoint-"


def last_checkpoint(out: Path) -> Path | None:
    """The complete checkpoint with the highest step in ``out``, or None. The Trainer writes
    ``trainer_state.json`` last, so a checkpoint cut short by a kill has none and is skipped."""
    found = [
        p for p in out.glob(f"{CHECKPOINT_PREFIX}*")
        if p.name[len(CHECKPOINT_PREFIX):].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return max(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]), default=None)


def lock_out(out: Path) -> Any:
    """Hold ``out`` for this run (process 0 of a multi-process run; the others write only
    through it), so that a second ``train run`` on the same folder is refused at once."""
    from datagen.core.writing import check_output
    from datagen.core.rundir import DirLock

    check_output(out, directory=True)
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    out.mkdir(parents=True, exist_ok=True)
    return DirLock.acquire(out, "train run")


def check_out(out: Path, *, resume: bool, force: bool) -> Path | None:
    """The checkpoint to resume from; refuses to mix two runs in one folder (``out`` was checked
    by :func:`lock_out`)."""
    checkpoint = last_checkpoint(out) if out.is_dir() else None
    if resume:
        if checkpoint is None:
            print(f"--resume: no checkpoint in {out}; starting from the beginning", file=sys.stderr)
        return checkpoint
    if force:
        if out.is_dir() and int(os.environ.get("RANK", "0")) == 0:
            clear(out)
        return None
    if checkpoint is not None or (out / MANIFEST).exists():
        raise UserError(
            f"--out {out}: holds a training run already; pass --resume to continue it from its last checkpoint, "
            "--force to train again from scratch, or choose another --out"
        )
    return None


def clear(out: Path) -> None:
    """Remove the checkpoints and run files of an earlier run (``--force``), nothing else."""
    import shutil

    for ckpt in out.glob(f"{CHECKPOINT_PREFIX}*"):
        shutil.rmtree(ckpt, ignore_errors=True)
    for name in (MANIFEST, "metrics.json", "log_history.json"):
        (out / name).unlink(missing_ok=True)
