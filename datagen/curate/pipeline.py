"""``datagen filter``: run curation stages in order, each annotating then deciding.

Stage ``k`` (1-based, in the canonical order heuristics, pii, decontaminate, exact, minhash, semantic, quality, of
those selected) receives the survivors of stage ``k-1``. It annotates all of them
(:meth:`~datagen.curate.base.FilterStage.annotate`), then its ``verdict`` splits them: a kept
record goes on, a dropped one becomes a :class:`~datagen.core.record.Rejection` carrying the stage,
the reason code, the evidence and the annotated record. Every input record therefore ends in
exactly one of ``records.jsonl`` (the last stage's survivors) or ``rejected.jsonl``.

Resuming (:mod:`datagen.core.runner`): part 0 holds the records read (checked, as record JSONL)
and the read-stage rejections (bad input rows under ``--on-error skip``); part ``k`` holds stage
``k``'s survivors as its records and its drops as its rejections, sealed once the stage is
finished. A stage reads the part before it from disk: every built-in stage in shards or batches
(:mod:`.shards`); a stage without ``streaming`` (a library caller's own) as a list. On a rerun, the stages with sealed parts are skipped and
the pipeline continues from the last sealed part. ``finalize`` takes ``records.jsonl`` from the
last part only.

``stats.json`` shows the funnel (in, out and rejections per reason, per stage; seconds per stage)
and, under ``extra.scores.<stage>.<score>``, the distribution of every score a stage wrote, over
the records that reached that stage (:func:`datagen.core.summary.distribution`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from datagen.core.runner import Batch, Context, SealedPart, Written, run_step
from datagen.core.record import Record, Rejection
from datagen.core.stats import Stats
from datagen.curate.base import FilterContext, FilterStage
from datagen.core.summary import distribution

if TYPE_CHECKING:
    from datagen.core.source import InputSpec
    from datagen.curate.config import FilterConfig
    from datagen.llm import LLMConfig


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
    """Selected stages, in order, over a :class:`~datagen.core.rundir.RunDir`. The stages that
    stream (all of the built-in ones: :mod:`.shards`) run over the previous part on disk, on
    ``executor`` (the caller's, left open: see :func:`~datagen.core.shards.make_executor`; default:
    this process); a stage that does not gets the previous part's records as a list."""

    def __init__(self, stages: Sequence[FilterStage], cache_dir: Path, llm_factory: Callable[[], Any] | None = None, progress: bool = True,
                 config: FilterConfig | None = None, executor: Any = None, llm: LLMConfig | None = None) -> None:
        from datagen.curate.config import FilterConfig

        self.stages = list(stages)
        self.cache_dir = cache_dir
        self.llm_factory = llm_factory
        self.llm = llm  # the settings llm_factory builds from: what a Ray actor builds its own judge from
        self.progress = progress
        self.config = config or FilterConfig()
        self.executor = executor

    def run(self, run: Any, records: Iterable[Record] | Path, read_rejects: Sequence[Rejection] = (),
            manifest: dict[str, Any] | None = None, n_records: int | None = None) -> dict[str, Any]:
        """Filter ``records`` (or a record-JSONL file of them, moved into the run) in ``run``
        through the runner, one part per stage, resuming after the last sealed stage; finalize it
        with the last stage's survivors as ``records.jsonl``."""
        from datagen.curate.shards import Executor

        n_read = write_input(run, records, read_rejects, n_records)
        executor = self.executor if self.executor is not None else Executor(1)
        step = _StagesStep(self, run, executor)
        try:
            # each stage shows its own progress; a bar over the stages would only draw over it
            return run_step(run, step, total=len(self.stages), read=(n_read, read_rejects), progress=False,
                            pending=step.pending, manifest=manifest, records_from_last=True)
        finally:
            if executor is not self.executor:
                executor.close()


def write_input(run: Any, records: Iterable[Record] | Path, read_rejects: Sequence[Rejection], n_records: int | None = None) -> int:
    """Part 0: the records read (the first stage's input; a file of them holds ``n_records``, counted
    here when not given) and the bad rows skipped. Returns how many records were read."""
    if run.part_done(0):
        if isinstance(records, Path):
            records.unlink(missing_ok=True)
        return run.part_counts(0)[0]
    if not isinstance(records, Path):
        from datagen.core.writing import write_jsonl

        n_records = write_jsonl(run.part_file(0, "input.jsonl"), records)
        records = run.part_file(0, "input.jsonl")
    elif n_records is None:
        with open(records, "rb") as f:
            n_records = sum(1 for _ in f)
    run.write_read_part(n_records, read_rejects, records=records)
    return n_records


class _StagesStep:
    """The filter as a runner step: a batch is one stage, over the part the stage before wrote."""

    name, unit = "filter", "stage"

    def __init__(self, pipeline: FilterPipeline, run: Any, executor: Any) -> None:
        self.pipeline = pipeline
        self.run = run
        self.executor = executor
        self.current: tuple[int, str] = (0, "")  # the running stage's input size and name
        self.scores: dict[str, Any] = {}
        self.models: dict[str, Any] = {}

    def batches(self) -> Iterator[Batch]:
        return (Batch((k, stage), 1, {"stage": stage.name}) for k, stage in enumerate(self.pipeline.stages, 1))

    def _collect(self, stats: dict[str, Any]) -> None:
        self.scores.update(stats.get("extra", {}).get("scores", {}))
        self.models.update(stats.get("extra", {}).get("models", {}))

    def process(self, batch: Batch, ctx: Context) -> list[Record] | Written:
        (k, stage), p = batch.items, self.pipeline
        n_in = self.run.part_counts(k - 1)[0]
        self.current = (n_in, stage.name)
        t0 = time.time()
        if getattr(stage, "streaming", None):
            result: list[Record] | Written = self._stream(k, stage, ctx)
            n_kept = result.records
        else:
            fctx = FilterContext(stats=ctx.stats, cache_dir=p.cache_dir, llm_factory=p.llm_factory, progress=p.progress)
            result, rejected = run_stage(stage, list(self.run.part_records(k - 1)), fctx)
            ctx.add_rejections(rejected)
            n_kept = len(result)
        secs = round(time.time() - t0, 3)
        ctx.stats.extra["seconds"] = {stage.name: secs}
        print(f"{stage.name}: {n_in} in, {n_kept} kept, {n_in - n_kept} rejected ({secs:.1f}s)", file=sys.stderr)
        self._collect(ctx.stats.to_dict())
        return result

    def _stream(self, k: int, stage: FilterStage, ctx: Context) -> Written:
        from datagen.curate.shards import ModelWorkerSpec, StageRun, StageSpec

        st, name, p = ctx.stats, stage.name, self.pipeline
        spec = StageSpec(name, p.config.model_dump(mode="json"), str(p.cache_dir))
        fctx = FilterContext(stats=Stats(), cache_dir=p.cache_dir, llm_factory=p.llm_factory, progress=p.progress, executor=self.executor)
        worker = ModelWorkerSpec(spec, str(p.cache_dir), p.llm.model_dump(mode="json") if p.llm is not None else None)
        sr = StageRun(stage, spec, self.executor, p.progress, context=fctx, worker=worker)
        res = sr.run(self.run.part_file(k - 1, "records.jsonl"), self.run.part_file(k, "records.jsonl"),
                     self.run.part_file(k, "rejected.jsonl"), self.run.part_file(k, "shards"), self.current[0])
        st.seen(name, res.n_in)
        st.kept(name, res.n_kept)
        for reason, n in sorted(res.reasons.items()):
            st.rejected(name, reason, n)
        if sr.extra:
            st.extra.setdefault(name, {}).update(sr.extra)
        st.merge({"extra": res.extra})  # a model stage's own facts (the quality stage's failures, its LLM's usage, its models)
        st.extra["scores"] = {name: {s: distribution(v.tolist()) for s, v in res.scores.items()}}
        return Written(res.n_kept, sum(res.reasons.values()))

    def restore(self, batch: Batch, part: SealedPart) -> None:
        self._collect(part.stats())

    def pending(self) -> tuple[int, int, str]:
        """When a stage stops the run: its input is what is left."""
        n, name = self.current
        return n, n, f"records of the {name} stage"

    def final_stats(self) -> Stats:
        extra = Stats()
        extra.extra["scores"] = self.scores  # parts each hold one stage's; merged they would overwrite
        return extra

    def manifest(self) -> dict[str, Any]:
        return {"stages": [s.describe() for s in self.pipeline.stages], "models": self.models}


def funnel(stats: dict[str, Any]) -> str:
    """A few lines: each stage's in -> out and its top rejection reasons."""
    lines = []
    for name, s in stats["stages"].items():
        reasons = sorted(s["rejected"].items(), key=lambda kv: (-kv[1], kv[0]))
        why = ", ".join(f"{r} {c}" for r, c in reasons[:4]) + (", ..." if len(reasons) > 4 else "")
        line = f"  {name:<13} {s['in']:>8} -> {s['out']}"
        lines.append(line + (f"  (-{s['rejected_total']}: {why})" if s["rejected_total"] else ""))
    return "\n".join(lines)


def run_filter(source: InputSpec, out: str | Path, *, stages: str | None = None, config: str | None = None, sets: Sequence[str] = (),
               cache_dir: str | Path | None = None, force: bool = False, llm: LLMConfig | None = None,
               minhash_engine: str | None = None, workers: int | None = None, executor: str = "local",
               ray_address: str | None = None, decontaminate: Sequence[str] = (), pii: str | None = None) -> dict[str, Any]:
    """``datagen filter`` as a function: the records of ``source`` through ``stages`` (a
    comma-separated list, default all) configured by the YAML file ``config``, into the run
    directory ``out``; ``llm`` is the quality stage's judge (default: the embedded model). Returns
    the final stats; raises :class:`~datagen.core.rundir.AlreadyComplete` when ``out`` already holds
    this run. ``workers``: processes for the streaming stages and the reading of a JSONL input
    (default 1; ``datagen filter`` gives every core); the output is the same for any number. A
    script that asks for more than one must guard its entry point with ``if __name__ ==
    "__main__":``, as every program that starts processes with ``spawn`` must. ``executor="ray"``
    runs the same work as Ray tasks on the cluster at ``ray_address`` (default: the one this
    process is connected to, else a local one), ``workers`` defaulting to its CPUs; the output is
    the same bytes (:class:`~datagen.core.shards.RayExecutor`). ``decontaminate``: benchmark files
    added to ``decontaminate.files``, and the stage added to ``stages`` (a config file with
    ``decontaminate.files`` adds it too when ``stages`` is not given). ``pii``: the pii stage's
    action (``flag``, ``drop``, ``redact``), the stage added to ``stages``. Neither ``workers`` nor
    ``executor`` is part of the run's settings: a run started with one resumes with another.

    The input is read (and checked: a bad row stops here, before anything is written) into a
    record file beside ``out``, which becomes the run's part 0; no stage holds the whole pool (the
    semantic stage holds a vector per record). On Ray, the model stages' models run on actors
    (:mod:`datagen.core.actors`)."""
    from datagen.core.shards import make_executor
    from datagen.curate.config import load_config
    from datagen.curate.registry import build_stages, parse_stages

    names = parse_stages(stages)
    cfg = load_config(config, sets)
    if decontaminate:
        listed = cfg.decontaminate.get("files") or []
        cfg.decontaminate["files"] = (listed if isinstance(listed, list) else [listed]) + [str(f) for f in decontaminate]
    if decontaminate or (stages is None and cfg.decontaminate.get("files")):
        names = parse_stages(",".join(names + ["decontaminate"]))
    if pii:
        cfg.pii.action = pii
        names = parse_stages(",".join(names + ["pii"]))
    if minhash_engine:
        cfg.minhash.engine = minhash_engine
    built_stages = build_stages(names, cfg, source=config or "config")
    pool = make_executor(executor, workers, ray_address)  # one for the read and every stage: a cluster is joined once
    try:
        read_rejects: list[Rejection] = []
        records, n_records = read_to_file(source, Path(out), read_rejects, pool)
        try:
            return _filter_run(source, out, names, cfg, built_stages, records, n_records, read_rejects, config, cache_dir, force, llm, pool)
        finally:
            records.unlink(missing_ok=True)  # moved into the run unless it stopped first
    finally:
        pool.close()


def _filter_run(source: InputSpec, out: str | Path, names: list[str], cfg: FilterConfig, built_stages: list[FilterStage], records: Path, n_records: int,
                read_rejects: list[Rejection], config: str | None, cache_dir: str | Path | None, force: bool, llm: LLMConfig | None,
                executor: Any) -> dict[str, Any]:
    from datagen.core.kvcache import default_cache_dir
    from datagen.core.rundir import RunDir
    from datagen.llm import LLMConfig, make_llm

    settings: dict[str, Any] = {
        **source.settings(), "stages": names,
        "config": cfg.model_dump(mode="json"), "describe": [s.describe() for s in built_stages],
    }
    llm_factory: Callable[[], Any] | None = None
    if "quality" in names:
        llm_cfg = llm or LLMConfig()
        settings["llm"] = {"backend": llm_cfg.backend, "model": llm_cfg.model, "base_url": llm_cfg.base_url}
        # a server is asked now which models it serves, before the run directory is made; the
        # embedded model is loaded only if the quality stage runs
        built = make_llm(llm_cfg) if llm_cfg.backend == "openai" else None

        def judge() -> Any:
            return built if built is not None else make_llm(llm_cfg)

        llm_factory = judge

    run = RunDir(out, "filter", settings, force=force)
    pipeline = FilterPipeline(built_stages, Path(cache_dir) if cache_dir else default_cache_dir(), llm_factory=llm_factory, config=cfg,
                              executor=executor, llm=llm_cfg if "quality" in names else None)
    return pipeline.run(run, records, read_rejects, manifest={"config": settings["config"], "config_file": config}, n_records=n_records)


def read_to_file(source: InputSpec, out: Path, rejects: list[Rejection], executor: Any) -> tuple[Path, int]:
    """The records of ``source``, read and checked (on ``executor`` for a large JSONL file), into
    a record file beside ``out`` (the same file system, so that the run can move it in), and how
    many; nothing is left behind when a row is bad."""
    import tempfile

    where = out.resolve().parent
    while not where.is_dir():
        where = where.parent
    fd, name = tempfile.mkstemp(prefix=".datagen-input-", suffix=".jsonl", dir=where)
    os.close(fd)
    try:
        n = source.write_records(name, rejects.append, executor=executor)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name), n
