"""The run directory: resumable, atomic, self-describing.

Every command writes ``records.jsonl``, ``rejected.jsonl``, ``stats.json`` and ``manifest.json``,
and a dataset card, ``README.md`` (:mod:`datagen.core.card`).
While it works, finished pieces go to ``.parts/`` as numbered parts, each written atomically and
sealed by a ``.done`` marker written last. Interrupt the command at any point (Ctrl-C, kill -9, a
crash) and run it again: sealed parts are kept, the unsealed one is redone, and nothing is lost or
written twice. The final files appear only when every part is done, and ``manifest.json`` (with
``"status": "complete"``) is written last of all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from datagen.core.card import CARD, ours as card_ours, run_card
from datagen.core.errors import RunStopped, UserError
from datagen.core.writing import atomic_open, check_output, write_json, write_jsonl
from datagen.core.io import iter_jsonl
from datagen.core.record import Record, Rejection
from datagen.core.stats import Stats

OUTPUTS = ("records.jsonl", "rejected.jsonl", "stats.json", "manifest.json")
PARTS = ".parts"
TRACKED_PACKAGES = (
    "datagen-train", "torch", "transformers", "peft", "accelerate", "openai", "datasketch",
    "sentence-transformers", "datasets", "pydantic", "numpy",
)


LOCK = ".lock"


class DirLock:
    """An exclusive lock on an output directory, held while a command writes to it.

    ``flock`` on ``DIR/.lock``: the kernel releases it when the process ends, however it ends
    (a ``kill -9`` too), so a stale lock never blocks a rerun. The file names the holder (pid,
    command, start time) for the refusal message. One process may take the same directory again
    (a library caller resuming in-process); another process is refused at once."""

    _held: dict[str, "DirLock"] = {}

    def __init__(self, key: str, fd: int) -> None:
        self.key, self.fd, self.count = key, fd, 1

    @classmethod
    def acquire(cls, directory: Path, command: str) -> "DirLock":
        import fcntl

        key = os.path.realpath(directory)
        held = cls._held.get(key)
        if held is not None:
            held.count += 1
            return held
        path = Path(key) / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(
                f"--out {directory}: in use by {holder}; wait for it to finish (then rerun to resume, "
                "or to find it complete), or choose another --out"
            ) from None
        except OSError:  # a file system without flock: go on unlocked rather than refuse to work
            os.close(fd)
            return cls(key, -1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({command}, started {datetime.now().isoformat(timespec='seconds')})\n".encode(), 0)
        lock = cls(key, fd)
        cls._held[key] = lock
        return lock

    def release(self) -> None:
        self.count -= 1
        if self.count > 0 or self.fd < 0:
            return
        self._held.pop(self.key, None)
        os.close(self.fd)  # closing the last descriptor releases the flock
        self.fd = -1


def _read_json(path: Path) -> dict[str, Any]:
    """A run file this tool wrote; a damaged one (edited by hand, a full disk) is the user's to
    decide about, never a traceback."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: damaged (not a JSON object); pass --force to start the run over, or choose another --out")
    return doc


class AlreadyComplete(Exception):
    """The run directory already holds a finished run of the same settings."""


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def file_digest(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(settings: dict[str, Any]) -> str:
    blob = json.dumps(settings, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class RunDir:
    """An output directory for one command. ``settings`` are what determine the output (inputs
    and their digests, parameters, models, prompt hashes); a rerun with the same settings resumes,
    one with different settings is refused unless ``force``."""

    def __init__(self, path: str | os.PathLike[str], command: str, settings: dict[str, Any], force: bool = False) -> None:
        self.path = Path(path)
        self.command = command
        self.settings = settings
        self.fp = fingerprint({"command": command, **settings})
        self.parts = self.path / PARTS
        self.started = time.time()
        self._lock: DirLock | None = None
        try:
            self._prepare(force)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Let other processes use the directory (done by finalize, and at exit in any case)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- lifecycle ---------------------------------------------------------------------------
    def _prepare(self, force: bool) -> None:
        p = check_output(self.path, directory=True)
        manifest = p / "manifest.json"
        run_json = self.parts / "run.json"
        if p.is_dir() and not force and not manifest.exists() and not run_json.exists():
            foreign = [x.name for x in p.iterdir() if x.name not in OUTPUTS and not x.name.startswith(".")]
            if any((p / o).exists() for o in OUTPUTS) or foreign:
                raise UserError(f"--out {p}: exists and is not a datagen run directory; choose another --out or pass --force")
        p.mkdir(parents=True, exist_ok=True)
        self._lock = DirLock.acquire(p, self.command)  # everything below runs under the lock
        if manifest.exists() and not force:
            old = _read_json(manifest)
            if old.get("status") == "complete":
                if old.get("fingerprint") == self.fp:
                    raise AlreadyComplete(str(p))
                raise UserError(
                    f"--out {p}: holds a finished '{old.get('command')}' run with different settings; "
                    "pass --force to replace it, or choose another --out"
                )
        if run_json.exists() and not force:
            old_fp = _read_json(run_json).get("fingerprint")
            if old_fp != self.fp:
                raise UserError(
                    f"--out {p}: holds an unfinished run with different settings; rerun it with the same "
                    "arguments to resume, pass --force to discard it, or choose another --out"
                )
        if force:
            self.clear()
        self.parts.mkdir(parents=True, exist_ok=True)
        if not run_json.exists():
            write_json(run_json, {"command": self.command, "fingerprint": self.fp, "settings": self.settings})
        self.write_manifest({}, "running")

    def clear(self) -> None:
        """Remove what this tool writes in the directory (never anything else)."""
        for name in OUTPUTS + ("report.html",):
            (self.path / name).unlink(missing_ok=True)
        if card_ours(self.path / CARD):
            (self.path / CARD).unlink()
        shutil.rmtree(self.parts, ignore_errors=True)

    # -- parts -------------------------------------------------------------------------------
    def _part(self, i: int, suffix: str) -> Path:
        return self.parts / f"part-{i:06d}.{suffix}"

    def part_done(self, i: int) -> bool:
        return self._part(i, "done").exists()

    def done_parts(self) -> list[int]:
        return sorted(int(x.name[5:11]) for x in self.parts.glob("part-*.done"))

    def part_file(self, i: int, suffix: str) -> Path:
        """Where part ``i``'s ``records.jsonl``, ``rejected.jsonl`` ... live (a step that streams
        writes them itself, then :meth:`seal_part`)."""
        self.parts.mkdir(parents=True, exist_ok=True)
        return self._part(i, suffix)

    def write_part(self, i: int, records: Iterable[Record], rejected: Iterable[Rejection], stats: Stats) -> None:
        n_records = write_jsonl(self._part(i, "records.jsonl"), records)
        self.seal_part(i, stats, n_records, write_jsonl(self._part(i, "rejected.jsonl"), rejected))

    def seal_part(self, i: int, stats: Stats, n_records: int, n_rejected: int) -> None:
        """Seal part ``i`` whose files are written: its stats, then the marker that makes it done."""
        write_json(self._part(i, "stats.json"), stats.to_dict())
        write_json(self._part(i, "done"), {"records": n_records, "rejected": n_rejected, "at": time.time()})

    def part_counts(self, i: int) -> tuple[int, int]:
        """(records, rejections) of a sealed part."""
        doc = json.loads(self._part(i, "done").read_text(encoding="utf-8"))
        return int(doc["records"]), int(doc["rejected"])

    def write_read_part(self, n_read: int, rejects: Sequence[Rejection], records: Path | None = None) -> None:
        """Part 0 of a command that reads records: the ``read`` stage's ledger (``n_read`` records
        read, ``rejects`` bad rows skipped by ``--on-error skip``); ``records``, a file of the
        records read (record JSONL), becomes the part's records when given (moved in). Written once."""
        if self.part_done(0):
            return
        st = Stats.of_read(n_read, (r.reason for r in rejects))
        if records is None:
            self.write_part(0, [], rejects, st)
            return
        write_jsonl(self.part_file(0, "rejected.jsonl"), rejects)
        os.replace(records, self._part(0, "records.jsonl"))
        self.seal_part(0, st, n_read, len(rejects))

    def part_records(self, i: int) -> Iterator[Record]:
        for row in iter_jsonl(self._part(i, "records.jsonl")):
            yield Record.model_validate(row)

    def part_rejections(self, i: int) -> Iterator[Rejection]:
        for row in iter_jsonl(self._part(i, "rejected.jsonl")):
            yield Rejection.model_validate(row)

    def part_stats(self, i: int) -> dict[str, Any]:
        return json.loads(self._part(i, "stats.json").read_text(encoding="utf-8"))

    @contextlib.contextmanager
    def stops_resumably(self, pending: Callable[[], tuple[int, int, str]]) -> Iterator[None]:
        """Around a run's loop: when it stops cleanly (:class:`RunStopped`: a spent budget, a
        server that failed requests), say how much is left to do (``pending()``: left, total,
        unit), in the exception (the command prints it) and in ``manifest.json`` (``status:
        stopped``); the sealed parts stay."""
        try:
            yield
        except RunStopped as e:
            left, total, unit = e.pending = pending()
            self.write_manifest({"stopped": {"reason": str(e), "pending": left, "total": total, "unit": unit}}, "stopped")
            raise

    def write_manifest(self, manifest: dict[str, Any], status: str) -> None:
        write_json(self.path / "manifest.json", self._manifest_doc(manifest, status))

    def _manifest_doc(self, manifest: dict[str, Any], status: str) -> dict[str, Any]:
        doc = {
            "command": self.command,
            "status": status,
            "fingerprint": self.fp,
            "settings": self.settings,
            "argv": [os.path.basename(sys.argv[0])] + sys.argv[1:],
            "versions": package_versions(),
            "started": datetime.fromtimestamp(self.started, timezone.utc).isoformat(timespec="seconds"),
        }
        doc.update(manifest)
        if status == "complete":
            doc["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return doc

    def finalize(
        self, manifest: dict[str, Any], stats: Stats | None = None, n_parts: int | None = None, records_from: int | None = None,
        parts: Sequence[int] | None = None,
    ) -> dict[str, Any]:
        """Concatenate the sealed parts into the final files, write stats.json, the dataset card
        (README.md) and, last, manifest.json. Safe to repeat if interrupted: parts are removed only
        afterwards. ``parts`` (or ``n_parts``: 0 .. n-1) names the parts; default: every sealed one.

        ``records_from`` takes ``records.jsonl`` from that one part instead of all of them: for a
        pipeline whose parts are successive stages, the last part's records are the survivors
        (the earlier parts' records are intermediate). ``rejected.jsonl`` always gathers every
        part."""
        if parts is None:
            parts = self.done_parts() if n_parts is None else list(range(n_parts))
        parts = list(parts)
        if records_from is not None and records_from not in parts:
            raise ValueError(f"records_from={records_from} is not one of the parts {parts}")
        total = Stats()
        for i in parts:
            total.merge(self.part_stats(i))
        if stats is not None:
            total.merge(stats.to_dict())
        n_rec = self._concat(parts if records_from is None else [records_from], "records.jsonl")
        n_rej = self._concat(parts, "rejected.jsonl")
        doc = total.to_dict()
        doc = {"command": self.command, "records": n_rec, "rejected": n_rej, **doc}
        doc["extra"]["wall_seconds_this_invocation"] = round(time.time() - self.started, 3)
        write_json(self.path / "stats.json", doc)
        final = self._manifest_doc(manifest, "complete")
        run_card(self.path, final, doc)  # README.md: the dataset card, from the files just written
        write_json(self.path / "manifest.json", final)
        shutil.rmtree(self.parts, ignore_errors=True)
        self.release()
        return doc

    def _concat(self, parts: list[int], suffix: str) -> int:
        """The parts' files joined into the final one, as bytes; returns the lines (a part's last
        line without a line break counts as one)."""
        n = 0
        with atomic_open(self.path / suffix, "wb") as out:
            for i in parts:
                last = b"\n"
                with open(self._part(i, suffix), "rb") as f:
                    while chunk := f.read(1 << 20):
                        out.write(chunk)
                        n += chunk.count(b"\n")
                        last = chunk[-1:]
                n += last != b"\n"
        return n
