"""The runner: the one loop every command that writes a run directory goes through.

A command builds a :class:`~datagen.core.rundir.RunDir` (its settings decide resume or refusal) and a
*step*; :func:`run_step` does the rest, the same way for every command:

* **parts**: part 0 holds the ``read`` stage (records read, bad rows skipped under
  ``--on-error skip``) when the command reads records; every batch the step yields becomes the
  next part, numbered from 1, written atomically and sealed (:meth:`RunDir.write_part`);
* **resume**: a sealed part is never redone. The step's ``restore(batch, part)`` (optional) sees
  what the part holds, so a stateful step (Self-Instruct's growing pool, Evol-Instruct's rounds,
  the filter's survivors) rebuilds its state exactly as the live run built it;
* **the ledger**: each part's counts must satisfy ``in == out + rejected`` for every stage it
  touches, and the records it keeps must be what its last stage let out, checked here before
  the part is sealed; a step that loses or invents records fails loudly instead of writing a
  funnel that does not add up;
* **progress** (one bar, ``DATAGEN_PROGRESS=0`` hides it), **LLM usage** (tokens and requests
  spent per part, from the step's backends) and **seconds** per part;
* **stopping**: a backend that stops the run (:class:`~datagen.core.errors.RunStopped`) leaves the
  sealed parts and a ``status: stopped`` manifest saying how much is left;
* **finalize**: the step's ``manifest()`` and ``final_stats()`` go into ``manifest.json`` and
  ``stats.json``.

A step declares only its work::

    class Step(Protocol):
        name: str                 # the progress bar's label
        unit: str                 # what a progress unit is ("prompt", "evolution", "task")
        def batches(self) -> Iterator[Batch]: ...
        def process(self, batch: Batch, ctx: Context) -> list[Record] | Written: ...  # the kept records

``batches`` is lazy: the runner asks for the next batch only after the previous one was processed
or restored, so a batch may depend on what came before. ``process`` returns the records it keeps
and calls ``ctx.reject(record, reason, evidence)`` for the rest. A batch knows nothing of files,
so the same step can run on another executor that feeds it batches and collects parts.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence

from datagen.core.record import Record, Rejection
from datagen.core.stats import Stats
from datagen.core.progress import bar as progress_bar

if TYPE_CHECKING:
    from datagen.core.rundir import RunDir


@dataclass
class Batch:
    """One unit of work, sealed as one part: ``items`` (records, stage input, a round number...),
    ``size`` (progress units it accounts for; ``process`` or ``restore`` may set it when the work
    a batch did is known only afterwards, as Self-Instruct's accepted tasks) and ``info`` (shown
    beside the bar, e.g. the round)."""

    items: Any
    size: int
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class SealedPart:
    """What a sealed part holds, read lazily (a resuming step reads only what it needs)."""

    run: RunDir
    index: int

    def records(self) -> Iterator[Record]:
        return self.run.part_records(self.index)

    def rejections(self) -> Iterator[Rejection]:
        return self.run.part_rejections(self.index)

    def stats(self) -> dict[str, Any]:
        return self.run.part_stats(self.index)


@dataclass(frozen=True)
class Written:
    """What ``process`` returns when it wrote the part's ``records.jsonl`` and ``rejected.jsonl``
    itself (:meth:`RunDir.part_file`), streaming, instead of returning the records: how many of
    each. The runner checks the ledger against them and seals the part."""

    records: int
    rejected: int


class Context:
    """What a step sees while it processes one batch: the part's :class:`Stats` and
    :meth:`reject`, which counts a rejection and keeps it for the part's ``rejected.jsonl``."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.stats = Stats()
        self.rejected: list[Rejection] = []

    def reject(self, record: Record | None, reason: str, evidence: dict[str, Any] | None = None, *,
               stage: str | None = None, raw: str | None = None) -> None:
        st = stage or self.stage
        self.stats.rejected(st, reason)
        self.rejected.append(Rejection(stage=st, reason=reason, evidence=evidence or {}, record=record, raw=raw))

    def add_rejections(self, rejections: Sequence[Rejection]) -> None:
        """Rejections a step built (and counted) itself."""
        self.rejected.extend(rejections)


class Step(Protocol):
    name: str
    unit: str

    def batches(self) -> Iterator[Batch]: ...

    def process(self, batch: Batch, ctx: Context) -> list[Record] | Written: ...


class LedgerError(AssertionError):
    """A step's counts do not add up: records lost or invented (a bug, never bad input)."""


def check_ledger(stats: dict[str, Any], where: str, kept: int | None = None) -> None:
    """``in == out + rejected`` for every stage in ``stats`` (a :meth:`Stats.to_dict`), and the
    ``kept`` records a part returns are what its last stage let out."""
    stages = stats.get("stages", {})
    for name, s in stages.items():
        if s["in"] != s["out"] + s["rejected_total"]:
            raise LedgerError(f"{where}: stage {name!r} counted {s['in']} in but {s['out']} out + {s['rejected_total']} rejected")
    if kept is not None and stages:
        name, last = list(stages.items())[-1]
        if last["out"] != kept:
            raise LedgerError(f"{where}: {kept} records kept but its last stage {name!r} let {last['out']} out")


class UsageMeter:
    """Tokens, requests and seconds a part spends, from the backends' cumulative usage."""

    def __init__(self, llms: Sequence[Any]) -> None:
        self.llms = list(dict.fromkeys(llms))  # a backend used in two roles counts once

    def snapshot(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for llm in self.llms:
            for k, v in llm.usage.to_dict().items():
                total[k] = total.get(k, 0) + v
        return total

    def since(self, before: dict[str, float]) -> dict[str, float]:
        after = self.snapshot()
        return {k: round(after[k] - before.get(k, 0), 6) for k in after}


def run_step(
    run: RunDir,
    step: Step,
    *,
    total: int,
    read: tuple[int, Sequence[Rejection]] | None = None,
    llms: Sequence[Any] = (),
    progress: bool = True,
    pending: Callable[[], tuple[int, int, str]] | None = None,
    manifest: dict[str, Any] | None = None,
    records_from_last: bool = False,
) -> dict[str, Any]:
    """Run ``step`` in ``run``: every batch a part (numbered from 1), sealed parts restored
    instead of redone, the ledger checked, then finalized. ``total`` is the work in progress units;
    ``read`` the ``(records read, rejections)`` of a command that reads records (part 0);
    ``pending`` says ``(left, total, unit)`` when the run stops early (default: the progress units
    not done); ``records_from_last``: the last part's records are the output (successive stages),
    else every part's. Returns the final stats."""
    from datagen.core.errors import UserError

    if read is not None:
        run.write_read_part(*read)
    elif run.part_done(0):
        raise UserError(f"--out {run.path}: holds an unfinished run written by an older version (its parts are numbered "
                        "differently); pass --force to start it over, or choose another --out")
    meter = UsageMeter(llms)
    restore = getattr(step, "restore", None)
    index, done_units, restored, said = 1, 0, 0, False

    def say_resumed() -> None:
        nonlocal said
        if restored and not said:
            print(f"resuming {run.path}: {done_units}/{total} {step.unit}s already done ({restored} parts sealed)", file=sys.stderr)
        said = True

    def not_done() -> tuple[int, int, str]:
        return max(0, total - done_units), total, f"{step.unit}s"

    bar = progress_bar(total, step.name, step.unit, show=progress)
    with bar, run.stops_resumably(pending or not_done):
        for batch in step.batches():
            if batch.info:
                bar.set_postfix(batch.info)
            if run.part_done(index):
                if restore is not None:
                    restore(batch, SealedPart(run, index))
                restored += 1
            else:
                say_resumed()
                ctx = Context(step.name)
                t0, before = time.time(), meter.snapshot()
                kept = step.process(batch, ctx)
                if meter.llms:
                    ctx.stats.extra["llm"] = meter.since(before)
                ctx.stats.extra.setdefault("seconds", round(time.time() - t0, 3))
                if isinstance(kept, Written):
                    check_ledger(ctx.stats.to_dict(), f"{step.name} part {index}", kept=kept.records)
                    run.seal_part(index, ctx.stats, kept.records, kept.rejected)
                else:
                    check_ledger(ctx.stats.to_dict(), f"{step.name} part {index}", kept=len(kept))
                    run.write_part(index, kept, ctx.rejected, ctx.stats)
            done_units += batch.size
            bar.update(batch.size)
            index += 1
    say_resumed()
    final = getattr(step, "final_stats", None)
    describe = getattr(step, "manifest", None)
    doc = {**(describe() if describe is not None else {}), **(manifest or {})}
    parts = ([0] if read is not None else []) + list(range(1, index))
    return run.finalize(doc, stats=final() if final is not None else None, parts=parts,
                        records_from=index - 1 if records_from_last and index > 1 else None)
