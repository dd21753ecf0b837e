"""``datagen filter``: run curation stages in order, each annotating then deciding.

Stage ``k`` (1-based, in the canonical order heuristics, exact, minhash, semantic, quality, of
those selected) receives the survivors of stage ``k-1``. It annotates all of them
(:meth:`~datagen.filters.base.FilterStage.annotate`), then its ``verdict`` splits them: a kept
record goes on, a dropped one becomes a :class:`~datagen.record.Rejection` carrying the stage,
the reason code, the evidence and the annotated record. Every input record therefore ends in
exactly one of ``records.jsonl`` (the last stage's survivors) or ``rejected.jsonl``.

Resuming (:class:`~datagen.rundir.RunDir`): part 0 holds the read-stage rejections (bad input rows
under ``--on-error skip``); part ``k`` holds stage ``k``'s survivors as its records and its drops
as its rejections, sealed once the stage is finished. On a rerun, the stages with sealed parts
are skipped and the pipeline continues from the last sealed part's survivors. ``finalize`` takes
``records.jsonl`` from the last part only.

``stats.json`` shows the funnel (in, out and rejections per reason, per stage; seconds per stage)
and, under ``extra.scores.<stage>.<score>``, the distribution of every score a stage wrote, over
the records that reached that stage (:mod:`.distribution`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..record import Record, Rejection
from ..stage import Stats
from .base import FilterContext, FilterStage
from .distribution import distribution


def score_names(stage: FilterStage, records: Sequence[Record], before: set[str]) -> list[str]:
    """The scores ``stage`` writes: its ``score_names`` if it declares them, else the score keys
    that appeared while it annotated."""
    declared = getattr(stage, "score_names", None)
    if declared is not None:
        return list(declared)
    after: set[str] = set()
    for r in records:
        after.update(r.scores)
    return sorted(after - before)


def run_stage(stage: FilterStage, records: list[Record], ctx: FilterContext) -> tuple[list[Record], list[Rejection]]:
    """Annotate ``records`` with ``stage`` and split them by its verdicts; counts go to
    ``ctx.stats`` (in == out + rejected), with the stage's seconds and score distributions."""
    st, name = ctx.stats, stage.name
    st.seen(name, len(records))
    before = {k for r in records for k in r.scores}
    t0 = time.time()
    stage.annotate(records, ctx)
    kept: list[Record] = []
    rejected: list[Rejection] = []
    for rec in records:
        v = stage.verdict(rec)
        if v is None:
            kept.append(rec)
            continue
        reason, evidence = v
        st.rejected(name, reason)
        rejected.append(Rejection(stage=name, reason=reason, evidence=evidence, record=rec))
    st.kept(name, len(kept))
    st.extra["seconds"] = {name: round(time.time() - t0, 3)}
    st.extra["scores"] = {name: {s: distribution(r.scores[s] for r in records if s in r.scores) for s in score_names(stage, records, before)}}
    return kept, rejected


class FilterPipeline:
    """Selected stages, in order, over a :class:`~datagen.rundir.RunDir`."""

    def __init__(self, stages: Sequence[FilterStage], cache_dir: Path, llm_factory: Callable[[], Any] | None = None, progress: bool = True) -> None:
        self.stages = list(stages)
        self.cache_dir = cache_dir
        self.llm_factory = llm_factory
        self.progress = progress

    def resume_point(self, run: Any, records: list[Record]) -> tuple[int, list[Record]]:
        """(stages already done, the survivors to continue from)."""
        done = 0
        while done < len(self.stages) and run.part_done(done + 1):
            done += 1
        if done:
            print(f"resuming {run.path}: {', '.join(s.name for s in self.stages[:done])} already done", file=sys.stderr)
            return done, list(run.part_records(done))
        return 0, records

    def run(self, run: Any, records: list[Record], read_rejects: Sequence[Rejection] = (), manifest: dict[str, Any] | None = None) -> dict[str, Any]:
        """Filter ``records`` in ``run`` (resuming from its sealed parts) and finalize it."""
        run.write_read_part(len(records), read_rejects)
        done, survivors = self.resume_point(run, records)
        for k in range(done, len(self.stages)):
            stage = self.stages[k]
            ctx = FilterContext(stats=Stats(), cache_dir=self.cache_dir, llm_factory=self.llm_factory, progress=self.progress)
            n_in = len(survivors)
            with run.stops_resumably(lambda: n_in, n_in, f"records of the {stage.name} stage"):
                survivors, rejected = run_stage(stage, survivors, ctx)
            run.write_part(k + 1, survivors, rejected, ctx.stats)
            secs = ctx.stats.extra["seconds"][stage.name]
            print(f"{stage.name}: {n_in} in, {len(survivors)} kept, {len(rejected)} rejected ({secs:.1f}s)", file=sys.stderr)
        n = len(self.stages)
        scores: dict[str, Any] = {}
        models: dict[str, Any] = {}
        for i in range(1, n + 1):
            scores.update(run.part_stats(i).get("extra", {}).get("scores", {}))
            models.update(run.part_stats(i).get("extra", {}).get("models", {}))
        extra = Stats()
        extra.extra["scores"] = scores  # parts each hold one stage's; merged they would overwrite
        doc = {"stages": [s.describe() for s in self.stages], "models": models, **(manifest or {})}
        return run.finalize(doc, stats=extra, n_parts=n + 1, records_from=n)


def funnel(stats: dict[str, Any]) -> str:
    """A few lines: each stage's in -> out and its top rejection reasons."""
    lines = []
    for name, s in stats["stages"].items():
        reasons = sorted(s["rejected"].items(), key=lambda kv: (-kv[1], kv[0]))
        why = ", ".join(f"{r} {c}" for r, c in reasons[:4]) + (", ..." if len(reasons) > 4 else "")
        line = f"  {name:<12} {s['in']:>8} -> {s['out']}"
        lines.append(line + (f"  (-{s['rejected_total']}: {why})" if s["rejected_total"] else ""))
    return "\n".join(lines)
