"""Curation stages over their input on disk, in shards, without ever holding the pool.

A stage's input is a JSONL file of records (the run's previous part). It is cut into shards,
byte ranges that end on a line break; a shard is read a batch at a time. Three kinds of stage run
this way:

* **per-record** (``streaming = "records"``: heuristics, pii, decontaminate): each shard is annotated, decided and
  written on its own (:func:`filter_shard`);
* **keyed** (``streaming = "keys"``: exact, MinHash): a global decision made from compact keys.
  Each shard gives the stage's keys of its records (:func:`keys_shard`: a digest, band keys, the
  survivor's rank; tens to a few hundred bytes a record); the stage decides over all of them in
  one process (``stage.decide``), fetching what it needs of a few records (MinHash: the shingle
  sets of its candidates, :func:`fetch_shard`); then each shard is written with the decisions (:func:`apply_shard`; a
  record the decision did not touch is copied as it is, not parsed again). The semantic stage is
  one too: its keys add each line's byte offset (``wants_offsets``), so that its decision reads
  the texts it embeds back one line at a time, and its ``decide`` takes the context (``uses_context``);
* **per-record with a model** (``streaming = "batches"``: quality): read here in batches of
  :data:`MODEL_BATCH` records (fewer when they reach :data:`MODEL_BATCH_BYTES`) and scored by one
  model (:class:`ModelWorker`), in this process or on a pool of Ray actors that each load it once
  (:class:`ModelWorkerSpec`).

The shards of a pass run in worker processes (:class:`~datagen.core.shards.Executor`, ``--workers``); their outputs are
joined in shard order, so the part is the same, byte for byte, whatever the number of workers.
The functions a worker runs take only plain data (a :class:`StageSpec`, a :class:`Shard`, paths)
and rebuild the stage from its configuration, so that another executor (Ray) can run the same
functions on other machines.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from datagen.core.record import Record, RecordView, Rejection
from datagen.core.shards import Executor, Shard, lines, split

BATCH = 1024  # records parsed and annotated at a time


@dataclass(frozen=True)
class StageSpec:
    """A stage as plain data: its name and the filter configuration it is built from."""

    name: str
    config: dict[str, Any]
    cache_dir: str = os.devnull  # the on-disk caches a stage may use (not part of what it is)

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, json.dumps(self.config, sort_keys=True))

    def build(self) -> Any:
        key = self.key
        if key not in _BUILT:
            from datagen.curate.config import FilterConfig
            from datagen.curate.registry import build_stage

            _BUILT[key] = build_stage(self.name, FilterConfig.model_validate(self.config))
        return _BUILT[key]


_BUILT: dict[tuple[str, str], Any] = {}  # per process: a worker builds each stage once


@dataclass
class ShardResult:
    """What a shard pass returns to the parent: counts, and the scores for the distributions."""

    n_in: int = 0
    n_kept: int = 0
    reasons: Counter = field(default_factory=Counter)
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # a model stage's stats extras (Stats.merge adds them up)


def read_lines(path: str, offsets: np.ndarray) -> Iterator[bytes]:
    """The lines of ``path`` that start at ``offsets``."""
    with open(path, "rb") as f:
        for o in offsets.tolist():
            f.seek(o)
            yield f.readline()


def batches(shard: Shard, size: int = BATCH, max_bytes: int | None = None) -> Iterator[list[bytes]]:
    """The shard's lines, ``size`` at a time; with ``max_bytes``, a batch also ends once its lines
    reach that many bytes (so that a batch of long records does not hold more than that)."""
    batch: list[bytes] = []
    held = 0
    for line in lines(shard):
        batch.append(line)
        held += len(line)
        if len(batch) == size or (max_bytes is not None and held >= max_bytes):
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


def parse(raw: Sequence[bytes]) -> list[Record]:
    return [Record.model_validate_json(line) for line in raw]


def _outputs(out_dir: str, shard: Shard) -> tuple[Path, Path]:
    return Path(out_dir) / f"{shard.index:06d}.records.jsonl", Path(out_dir) / f"{shard.index:06d}.rejected.jsonl"


def _context(cache_dir: str = os.devnull) -> Any:
    from datagen.core.stats import Stats
    from datagen.curate.base import FilterContext

    return FilterContext(stats=Stats(), cache_dir=Path(cache_dir), progress=False)


def _decide_and_write(stage: Any, recs: Sequence[Record], kept_f: Any, rej_f: Any, res: ShardResult) -> None:
    for rec in recs:
        v = stage.verdict(rec)
        if v is None:
            kept_f.write(rec.to_json() + "\n")
            res.n_kept += 1
        else:
            reason, evidence = v
            res.reasons[reason] += 1
            rej_f.write(Rejection(stage=stage.name, reason=reason, evidence=evidence, record=rec).to_json() + "\n")


# -- what a worker runs -----------------------------------------------------------------------------
def filter_shard(spec: StageSpec, shard: Shard, out_dir: str) -> ShardResult:
    """A per-record stage over one shard: annotate, decide, write the kept and the rejected."""
    stage = spec.build()
    res = ShardResult()
    names = list(getattr(stage, "score_names", ()) or ())
    values: dict[str, list[float]] = {n: [] for n in names}
    kept_path, rej_path = _outputs(out_dir, shard)
    with open(kept_path, "w", encoding="utf-8") as kept_f, open(rej_path, "w", encoding="utf-8") as rej_f:
        for raw in batches(shard):
            recs = parse(raw)
            stage.annotate(recs, _context(spec.cache_dir))
            res.n_in += len(recs)
            for n in names:
                values[n].extend(r.scores[n] for r in recs if n in r.scores)
            _decide_and_write(stage, recs, kept_f, rej_f, res)
    res.scores = {n: np.asarray(v, dtype=np.float64) for n, v in values.items()}
    return res


def keys_shard(spec: StageSpec, shard: Shard) -> tuple[int, dict[str, np.ndarray], np.ndarray]:
    """A keyed stage's keys of one shard's records, and the positions (in the shard) of records
    that hold an earlier run's flag of this stage (they are rewritten without it)."""
    stage = spec.build()
    parts: list[dict[str, np.ndarray]] = []
    stale: list[int] = []
    is_stale = getattr(stage, "stale", None) or (lambda r: stage.name in r.flags)
    n, pos = 0, shard.start
    for raw in batches(shard):
        recs = [RecordView(line) for line in raw]  # the keys need no validated record
        parts.append(stage.keys(recs))
        if getattr(stage, "wants_offsets", False):  # where each line starts, to read it again without a pass
            ends = pos + np.cumsum([len(line) for line in raw], dtype=np.int64)
            parts[-1]["offset"] = ends - np.array([len(line) for line in raw], dtype=np.int64)
            pos = int(ends[-1])
        stale.extend(n + k for k, r in enumerate(recs) if is_stale(r))
        n += len(recs)
    from datagen.curate.dedup.groups import concat_keys

    return n, concat_keys(parts), np.asarray(stale, dtype=np.int64)


def fetch_shard(spec: StageSpec, shard: Shard, wanted: np.ndarray) -> dict[int, Any]:
    """What the stage's decision needs of the records at positions ``wanted`` (sorted, within
    the shard) of one shard: ``stage.fetch_view(record)`` (MinHash: the shingle set)."""
    stage = spec.build()
    out: dict[int, Any] = {}
    want = iter(wanted.tolist())
    nxt = next(want, None)
    for k, line in enumerate(lines(shard)):
        if nxt is None:
            break
        if k == nxt:
            out[k] = stage.fetch_view(RecordView(line))
            nxt = next(want, None)
    return out


def apply_shard(spec: StageSpec, shard: Shard, flags: dict[int, dict[str, Any]], stale: np.ndarray, out_dir: str) -> ShardResult:
    """One shard of a keyed stage written with its decisions (``flags`` by position in the
    shard): a record they do not touch is copied line for line (the scores a stage writes, the
    semantic stage's relevance, are in its decisions: an untouched record holds none)."""
    stage = spec.build()
    res = ShardResult()
    names = list(getattr(stage, "score_names", ()) or ())
    values: dict[str, list[float]] = {n: [] for n in names}
    touched = set(flags) | set(stale.tolist())
    kept_path, rej_path = _outputs(out_dir, shard)
    with open(kept_path, "w", encoding="utf-8") as kept_f, open(rej_path, "w", encoding="utf-8") as rej_f:
        for k, line in enumerate(lines(shard)):
            res.n_in += 1
            if k not in touched:
                kept_f.write(line.decode("utf-8"))
                res.n_kept += 1
                continue
            rec = Record.model_validate_json(line)
            if hasattr(stage, "apply_decision"):  # a stage that writes more than its own flag
                stage.apply_decision(rec, flags.get(k))
            else:
                rec.flags.pop(stage.name, None)
                if k in flags:
                    rec.flags[stage.name] = flags[k]
            for n in names:
                if n in rec.scores:
                    values[n].append(rec.scores[n])
            _decide_and_write(stage, [rec], kept_f, rej_f, res)
    res.scores = {n: np.asarray(v, dtype=np.float64) for n, v in values.items()}
    return res


# -- the parent's side ---------------------------------------------------------------------------------
@dataclass
class StageRun:
    """One stage over one input file (see the module docstring); :meth:`run` writes the kept
    records to ``records`` and the rejections to ``rejected``."""

    stage: Any
    spec: StageSpec
    executor: Executor
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # the stage's facts for stats.json
    context: Any = None  # the FilterContext of a stage that needs one (the model stages: cache, LLM, executor)
    worker: Any = None  # a model stage's ModelWorkerSpec: what an actor builds (on Ray)

    def run(self, source: Path, records: Path, rejected: Path, scratch: Path, total: int) -> ShardResult:
        """``total``: the records in ``source`` (for the progress bar)."""
        from datagen.core.progress import bar as progress_bar
        from datagen.core.writing import concat_files

        _BUILT[self.spec.key] = self.stage  # in this process, the stage itself (a worker builds its own)
        shards = split(source, self.executor.workers)
        scratch.mkdir(parents=True, exist_ok=True)
        mode = self.stage.streaming
        if mode == "batches":
            shards = [Shard(str(source), 0, os.path.getsize(source), 0)]  # one reader: the batches are the same on any executor
        passes = 1 if mode != "keys" else 2
        with progress_bar(total * passes, self.stage.name, "record", show=self.progress, leave=False) as bar:
            tick = lambda i, r: bar.update(r.n_in if isinstance(r, ShardResult) else r[0])  # noqa: E731
            if mode == "records":
                results = self.executor.map(filter_shard, [(self.spec, s, str(scratch)) for s in shards], tick)
            elif mode == "batches":
                results = [self._batches(shards[0], scratch, tick)]
            else:
                results = self._keyed(shards, scratch, tick)
        out = ShardResult()
        for r in results:
            out.n_in += r.n_in
            out.n_kept += r.n_kept
            out.reasons.update(r.reasons)
        names = list(getattr(self.stage, "score_names", ()) or ())
        out.scores = {n: np.concatenate([r.scores.get(n, np.zeros(0)) for r in results]) for n in names}
        out.extra = results[0].extra if mode == "batches" else {}
        for target, pick in ((records, 0), (rejected, 1)):
            concat_files(target, [_outputs(str(scratch), s)[pick] for s in shards], remove=True)
        return out

    def _keyed(self, shards: list[Shard], scratch: Path, tick: Callable[[int, Any], None]) -> list[ShardResult]:
        from datagen.curate.dedup.groups import concat_keys

        t0 = time.time()
        got = self.executor.map(keys_shard, [(self.spec, s) for s in shards], tick)
        starts = np.cumsum([0] + [n for n, _, _ in got])
        keys = concat_keys([k for _, k, _ in got])
        self.extra["seconds_keys"] = round(time.time() - t0, 3)

        def fetch_by_pass(indices: np.ndarray) -> dict[int, Any]:
            which = np.searchsorted(starts, indices, side="right") - 1
            tasks = [(self.spec, shards[k], indices[which == k] - starts[k]) for k in np.unique(which)]
            found = self.executor.map(fetch_shard, tasks)
            return {int(starts[s.index] + k): view for (_, s, _), part in zip(tasks, found) for k, view in part.items()}

        def fetch_by_offset(indices: np.ndarray) -> dict[int, Any]:  # here, line by line
            return {int(i): self.stage.fetch_view(RecordView(line)) for i, line in zip(indices, read_lines(shards[0].path, offsets[indices]))}

        offsets = keys.pop("offset", None)
        fetch = fetch_by_pass if offsets is None else fetch_by_offset
        kw = {"ctx": self.context} if getattr(self.stage, "uses_context", False) else {}
        flags = self.stage.decide(keys, fetch, self.extra, **kw) if starts[-1] else {}  # nothing reached the stage: nothing to decide
        del keys
        per_shard: list[dict[int, dict[str, Any]]] = [{} for _ in shards]
        for i, f in flags.items():
            k = int(np.searchsorted(starts, i, side="right") - 1)
            per_shard[k][i - int(starts[k])] = f
        return self.executor.map(apply_shard, [(self.spec, s, per_shard[s.index], got[s.index][2], str(scratch)) for s in shards], tick)

    def _batches(self, shard: Shard, scratch: Path, tick: Callable[[int, Any], None]) -> ShardResult:
        """A per-record model stage (``streaming = "batches"``: quality): read here, :data:`MODEL_BATCH`
        records at a time, scored by this process's model, or on Ray by a pool of actors that each
        load it once (:class:`ModelWorkerSpec`); written here, in order."""
        from datagen.core.actors import on_ray
        from datagen.core.stats import Stats

        pool = None
        if on_ray(self.executor) and self.worker is not None:
            pool = self.stage.config.pool(self.executor, self.worker.build, self.stage.name)
            done: Iterator[tuple[str, str, ShardResult]] = pool.map(_run_worker, batches(shard, MODEL_BATCH, MODEL_BATCH_BYTES))
        else:
            done = map(ModelWorker(self.stage, self.context), batches(shard, MODEL_BATCH, MODEL_BATCH_BYTES))
        out, stats = ShardResult(), Stats()
        values: dict[str, list[np.ndarray]] = {}
        kept_path, rej_path = _outputs(str(scratch), shard)
        try:
            with open(kept_path, "w", encoding="utf-8") as kept_f, open(rej_path, "w", encoding="utf-8") as rej_f:
                for i, (kept, rejected, res) in enumerate(done):
                    kept_f.write(kept)
                    rej_f.write(rejected)
                    out.n_in += res.n_in
                    out.n_kept += res.n_kept
                    out.reasons.update(res.reasons)
                    for n, v in res.scores.items():
                        values.setdefault(n, []).append(v)
                    stats.merge({"extra": res.extra})
                    tick(i, res)
        finally:
            if pool is not None:
                pool.close()
        if "cost" in stats.extra.get("llm", {}):
            stats.extra["llm"]["cost"] = round(stats.extra["llm"]["cost"], 6)
        out.scores = {n: np.concatenate(v) for n, v in values.items()}
        out.extra = stats.extra
        return out


# -- the per-record model stages (quality) ---------------------------------------------------------------
MODEL_BATCH = 256  # records a model stage scores at a time (on Ray: one actor call)
MODEL_BATCH_BYTES = 8 << 20  # ... or fewer, once their lines reach this many bytes: memory does not grow with record length


class ModelWorker:
    """Annotates, decides and writes (as text) one batch of a per-record model stage, with the
    stage and context it holds (its model loaded once); a batch's stats are its own, the LLM's
    usage included (an LLM counts from its start: a batch reports what it added)."""

    def __init__(self, stage: Any, ctx: Any) -> None:
        self.stage, self.ctx = stage, ctx
        self._spent: dict[str, float] = {}

    def __call__(self, raw: Sequence[bytes]) -> tuple[str, str, ShardResult]:
        import dataclasses
        import io

        from datagen.core.stats import Stats

        ctx = dataclasses.replace(self.ctx, stats=Stats())
        recs = parse(raw)
        self.stage.annotate(recs, ctx)
        kept, rejected = io.StringIO(), io.StringIO()
        res = ShardResult(n_in=len(recs))
        _decide_and_write(self.stage, recs, kept, rejected, res)
        names = list(getattr(self.stage, "score_names", ()) or ())
        res.scores = {n: np.asarray([r.scores[n] for r in recs if n in r.scores], dtype=np.float64) for n in names}
        extra = ctx.stats.extra
        if "llm" in extra:
            now = extra["llm"]
            extra["llm"] = {k: v - self._spent.get(k, 0) for k, v in now.items()}
            self._spent = dict(now)
        res.extra = extra
        return kept.getvalue(), rejected.getvalue(), res


@dataclass(frozen=True)
class ModelWorkerSpec:
    """A :class:`ModelWorker` as plain data, for a Ray actor to build: the stage, the cache folder
    (IFD's losses; on a cluster of several machines, a shared path), the judge LLM's settings."""

    spec: StageSpec
    cache_dir: str
    llm: dict[str, Any] | None = None

    def build(self) -> ModelWorker:
        from datagen.core.stats import Stats
        from datagen.curate.base import FilterContext

        llm = self.llm

        def judge() -> Any:
            from datagen.llm import LLMConfig, make_llm

            return make_llm(LLMConfig.model_validate(llm))

        return ModelWorker(self.spec.build(), FilterContext(stats=Stats(), cache_dir=Path(self.cache_dir), llm_factory=judge if llm is not None else None,
                                                            progress=False))


def _run_worker(worker: ModelWorker, raw: Sequence[bytes]) -> tuple[str, str, ShardResult]:
    return worker(raw)
