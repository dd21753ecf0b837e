"""``datagen select``: keep a LIMA-style, budgeted, diverse subset of scored records.

The algorithms live in :mod:`datagen.curate.select.algorithms` (pure numpy, the neighbour search in
:mod:`.search`); this module reads the records, gets their embeddings (:mod:`.vectors`) and
writes the run directory:

* ``records.jsonl``: the curated set, in selection order; each record carries
  ``flags["select"] = {"rank", "combined_score", "max_sim_to_selected"}``.
* ``rejected.jsonl``: stage ``select.screen`` (``missing_score``, ``below_min_<s>``,
  ``above_max_<s>``) and stage ``select`` (``too_similar``, ``over_budget``), with evidence.
* ``stats.json``: the funnel (read -> screened -> selected), reason counts, the distribution of
  every score among selected vs. not selected records, and how many embeddings were cached or
  computed.
* ``manifest.json``: budget, tau, strategy, thresholds, the score definition, the embedding model.

Nothing here re-runs a scorer: scores come from ``record.scores`` (written by ``datagen filter``)
and embeddings from the shared embedding cache, looked up without loading a model. Only records
missing from the cache are embedded (counted in stats; ``--no-embed`` refuses instead), so
re-selecting with another budget or tau takes seconds.

Memory is bounded by compact keys (:mod:`datagen.curate.select.pool`): the input is read into a
record file, scanned shard by shard for ids, offsets, scores and embedding keys, and only the
embedding matrix of the screened records (float32) is held whole; the records are read back by
offset when the run directory is written. Reading and scanning run on the executor (local
processes or Ray tasks), the missing embeddings on Ray actors under ``--executor ray``, the
selection itself here.
"""

from __future__ import annotations

import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Sequence, TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import numpy as np

    from datagen.core.source import InputSpec
    from datagen.core.rundir import RunDir
    from datagen.core.runner import Batch, Context, Written
    from datagen.core.record import Rejection
    from datagen.curate.select.algorithms import ScoreDef, Selection, Threshold
    from datagen.curate.select.pool import Pool
    from datagen.core.stats import Stats

SCREEN_STAGE = "select.screen"
SELECT_STAGE = "select"


class Settings(BaseModel):
    """What a selection keeps; ``datagen select``'s flags are derived from these fields
    (:func:`datagen.core.settings.add_flags`), and :func:`run_select` takes them as keywords."""

    model_config = ConfigDict(extra="forbid")

    budget: int = Field(..., ge=1, description="keep at most N records", json_schema_extra={"metavar": "N"})
    strategy: Literal["deita", "kcenter"] = Field("deita", description=(
        "deita: score-first greedy, skipping a record whose cosine to any selected one exceeds tau; "
        "kcenter: farthest-point greedy on cosine distance, seeded with the best-scoring record"))
    tau: float = Field(0.9, ge=-1, le=1, description=(
        "most cosine similarity (all-MiniLM-L6-v2 embeddings of instruction + response) allowed between two selected "
        "records (1 turns the rule off)"))
    mins: list[str] = Field(default_factory=list, description="reject records with SCORE < X (repeatable or comma-separated: --min judge=3.5,complexity=2)",
                            json_schema_extra={"metavar": "SCORE=X"})
    maxs: list[str] = Field(default_factory=list, description="reject records with SCORE > X (e.g. --max ifd=1.0)", json_schema_extra={"metavar": "SCORE=X"})
    score: str = Field("judge=1,complexity=1", description="scores that rank the records, with weights; a bare name weighs 1",
                       json_schema_extra={"metavar": "SCORE=W,..."})
    combine: Literal["product", "sum"] = Field("product", description=(
        "product (DEITA): prod score^weight over raw, positive scores; sum: sum weight * normalised score"))
    norm: Literal["zscore", "minmax", "none"] = Field("zscore", description=(
        "with combine sum: normalise each score over the screened records by z-score, min-max to [0,1], or not at all"))
    search: Literal["exact", "hnsw"] = Field("exact", description=(
        "deita: how a candidate finds its most similar selected record: exact (all of them, in blocked matrix products) "
        "or hnsw (a faiss HNSW graph: approximate, faster only for budgets past ~50,000, and it may let a pair above tau through)"))


class Cluster(BaseModel):
    """Where ``datagen select --executor ray`` embeds the records missing from the cache: Ray actors
    of these resources (the input is read and scanned by Ray tasks; the selection runs here)."""

    model_config = ConfigDict(extra="forbid")

    embed_actors: int | None = Field(None, ge=1, description="embedding actors (default: as many as the cluster's CPUs, or GPUs, hold)",
                                     json_schema_extra={"metavar": "N"})
    embed_num_cpus: float = Field(1.0, gt=0, description="CPUs each embedding actor asks Ray for", json_schema_extra={"metavar": "N"})
    embed_num_gpus: float = Field(0.0, ge=0, description="GPUs each embedding actor asks Ray for (0: embed on CPUs)", json_schema_extra={"metavar": "N"})


@dataclass
class Outcome:
    """What one selection produced, as pool rows: the selected ones with their
    ``flags["select"]``, in selection order; every rejection (row, stage, reason, evidence), made
    when written; the stats."""

    pool: Pool
    picked: list[tuple[int, dict[str, Any]]]
    rejections: Callable[[], Iterator[tuple[int, str, str, dict[str, Any]]]]
    stats: Stats
    embeddings: dict[str, Any]


EmbedFn = Callable[["Pool", "np.ndarray"], "tuple[np.ndarray, dict[str, Any]]"]


def run_selection(pool: Pool, thresholds: Sequence[Threshold], score_def: ScoreDef, strategy: str,
                  budget: int, tau: float, embed: EmbedFn, search: str = "exact") -> Outcome:
    """Screen the records of ``pool`` (in id order), combine their scores, embed the survivors
    with ``embed`` and select; every record ends up kept or rejected with a reason."""
    import numpy as np

    from datagen.curate.select.algorithms import SELECTORS, Selection, screen
    from datagen.core.stats import Stats

    st = Stats()
    order = pool.id_order()
    passed, screened_out = screen(pool.score_dicts(order), thresholds, score_def.names)
    st.seen(SCREEN_STAGE, len(order))
    st.kept(SCREEN_STAGE, len(passed))
    for _, reason, _ in screened_out:
        st.rejected(SCREEN_STAGE, reason)
    screen_rejects = [(int(order[i]), reason, evidence) for i, reason, evidence in screened_out]
    del screened_out

    rows = order[np.asarray(passed, dtype=np.int64)]
    values = np.stack([pool.column(n, rows) for n in score_def.names], axis=1) if len(rows) else np.zeros((0, len(score_def.names)))
    combined = score_def.combined(values, ids=_Ids(pool, rows))
    note: dict[str, Any] = {"cached": 0, "computed": 0}
    sel = Selection()
    if len(rows):
        emb, note = embed(pool, rows)
        sel = SELECTORS[strategy](emb, combined, budget, tau, **({"search": search} if strategy == "deita" else {}))
        del emb
    picked = []
    for rank, (i, sim) in enumerate(zip(sel.order, sel.sim_at_pick), start=1):
        picked.append((int(rows[i]), {"rank": rank, "combined_score": round(float(combined[i]), 6),
                                      "max_sim_to_selected": None if sim is None else round(sim, 6)}))
    st.seen(SELECT_STAGE, len(rows))
    st.kept(SELECT_STAGE, len(picked))
    for reason, idx in (("too_similar", sel.too_similar), ("over_budget", sel.over_budget)):
        if idx:
            st.rejected(SELECT_STAGE, reason, len(idx))
    _describe_distributions(st, pool, order, rows, combined, sel.order)
    st.extra["funnel"] = {"parsed": len(order), "screened": len(rows), "selected": len(picked)}
    st.extra["budget_filled"] = len(picked) >= budget
    st.extra["embeddings"] = note

    def rejections() -> Iterator[tuple[int, str, str, dict[str, Any]]]:
        for row, reason, evidence in screen_rejects:
            yield row, SCREEN_STAGE, reason, evidence
        for i, reason, evidence in _selection_rejects(pool, rows, combined, sel, strategy, budget, tau):
            yield int(rows[i]), SELECT_STAGE, reason, evidence

    return Outcome(pool, picked, rejections, st, note)


class _Ids:
    """The ids of ``rows`` of ``pool``, decoded when asked for (an error names one)."""

    def __init__(self, pool: Pool, rows: np.ndarray) -> None:
        self.pool, self.rows = pool, rows

    def __getitem__(self, k: int) -> str:
        return self.pool.id(int(self.rows[k]))


def run_select(source: InputSpec, out: str | Path, *, budget: int, score: str = "judge=1,complexity=1", tau: float = 0.9,
               strategy: str = "deita", mins: Sequence[str] = (), maxs: Sequence[str] = (), combine: str = "product",
               norm: str = "zscore", search: str = "exact", embed_model: str | None = None, cache_dir: str | Path | None = None, no_embed: bool = False,
               device: str | None = None, batch_size: int = 64, force: bool = False, executor: str = "local",
               workers: int | None = None, ray_address: str | None = None, cluster: Cluster | None = None) -> dict[str, Any]:
    """``datagen select`` as a function: the best and most varied ``budget`` records of ``source``
    into the run directory ``out`` (arguments as the command's flags). Returns the final stats;
    raises :class:`~datagen.core.rundir.AlreadyComplete` when ``out`` already holds this run.

    The input is read into a record file beside ``out`` and scanned for its keys (:mod:`.pool`)
    by ``workers`` processes (default 1), or by Ray tasks with ``executor="ray"`` (on the cluster
    at ``ray_address``, default a local one; the missing embeddings then on Ray actors as
    ``cluster`` says); the selection runs in this process. Neither is part of the run's
    settings: the output is the same."""
    from functools import partial

    from datagen.core.kvcache import default_cache_dir
    from datagen.core.runner import run_step
    from datagen.core.errors import UserError
    from datagen.core.shards import make_executor
    from datagen.score.embeddings import DEFAULT_EMBED_MODEL
    from datagen.core.rundir import RunDir
    from datagen.curate.pipeline import read_to_file
    from datagen.curate.select.algorithms import ScoreDef, thresholds_from
    from datagen.curate.select.pool import read_pool
    from datagen.curate.select.vectors import embeddings_for

    t0 = time.time()
    if budget < 1:
        raise UserError("--budget must be >= 1")
    if not -1.0 <= tau <= 1.0:
        raise UserError("--tau is a cosine similarity: between -1 and 1")
    if search != "exact" and strategy != "deita":
        raise UserError(f"--search {search} is for --strategy deita (kcenter updates every record's distance exactly)")
    thresholds = thresholds_from(list(mins), list(maxs))
    score_def = ScoreDef.parse(score, combine, norm)
    model = embed_model or DEFAULT_EMBED_MODEL
    cache = Path(cache_dir) if cache_dir else default_cache_dir()

    pool_ex = make_executor(executor, workers, ray_address)
    try:
        read_rejects: list[Rejection] = []
        spool, _ = read_to_file(source, Path(out), read_rejects, pool_ex)
        try:
            pool = read_pool(str(spool), pool_ex)
            _check_score_names(pool, score_def.names + [t.score for t in thresholds])
            encoder = partial(_actors, pool_ex, cluster or Cluster()) if executor == "ray" else None
            embed = partial(embeddings_for, model=model, cache_dir=cache, allow_compute=not no_embed, device=device, batch_size=batch_size,
                            encoder=encoder)
            outcome = run_selection(pool, thresholds, score_def, strategy, budget, tau, embed, search)
            outcome.stats.extra["funnel"] = {"read": len(pool) + len(read_rejects), **outcome.stats.extra["funnel"]}
            outcome.stats.extra["seconds"] = round(time.time() - t0, 3)

            # Everything is computed before the run directory is touched: a mistake leaves no output.
            settings = {
                **source.settings(), "budget": budget, "tau": tau,
                "strategy": strategy, "thresholds": [t.describe() for t in thresholds],
                "score": score_def.describe(), "embed_model": model, **({"search": search} if search != "exact" else {}),
            }
            run = RunDir(out, "select", settings, force=force)
            manifest = {
                "budget": budget, "tau": tau, "strategy": strategy, "search": search,
                "thresholds": [t.describe() for t in thresholds], "score": score_def.describe(),
                "models": {"embeddings": outcome.embeddings.get("model_id", model)}, "embeddings": outcome.embeddings,
            }
            return run_step(run, _Selected(outcome, run), total=1, read=(len(pool), read_rejects), manifest=manifest)
        finally:
            spool.unlink(missing_ok=True)
    finally:
        pool_ex.close()


def _actors(executor: Any, cluster: Cluster, store: Any) -> Any:
    """The store's encoder on a pool of Ray actors (:class:`datagen.core.actors.ActorPool`), each
    loading the model once; the store still cuts the batches, so the vectors are this process's."""
    from datagen.core.actors import ActorResources
    from datagen.curate.dedup.vectors import Encoder

    resources = ActorResources(num_cpus=cluster.embed_num_cpus, num_gpus=cluster.embed_num_gpus, actors=cluster.embed_actors)
    return Encoder(executor, store, resources, what="select")


@dataclass
class _Selected:
    """A finished selection as the runner's one batch. Selection is global (every record against
    every other), so it is computed before the run directory exists: a mistake leaves nothing.
    The records are read back from the pool's file by offset and written as they are read."""

    outcome: Outcome
    run: RunDir
    name: str = "select"
    unit: str = "selection"

    def batches(self) -> Iterator[Batch]:
        from datagen.core.runner import Batch

        yield Batch(self.outcome, 1)

    def process(self, batch: Batch, ctx: Context) -> Written:
        """The selected records with their ``flags["select"]``, and every rejection, written as
        ``Record.to_json`` and ``Rejection.to_json`` write them, from the JSON of the pool's lines
        (no second validation of each record)."""
        from datagen.core.record import dumps_strict
        from datagen.core.runner import Written
        from datagen.core.writing import atomic_open

        o: Outcome = batch.items
        ctx.stats = o.stats
        n_rejected = 0
        with open(o.pool.path, "rb") as f:
            with atomic_open(self.run.part_file(1, "records.jsonl")) as out:
                for row, info in o.picked:
                    rec = o.pool.row(f, row)
                    rec["flags"] = {**rec["flags"], "select": info}
                    out.write(dumps_strict(rec) + "\n")
            with atomic_open(self.run.part_file(1, "rejected.jsonl")) as out:
                for row, stage, reason, evidence in o.rejections():
                    rec = {k: v for k, v in o.pool.row(f, row).items() if v is not None}  # Rejection.to_json: exclude_none
                    out.write(dumps_strict({"stage": stage, "reason": reason, "evidence": evidence, "record": rec}) + "\n")
                    n_rejected += 1
        return Written(len(o.picked), n_rejected)


def _describe_distributions(st: Stats, pool: Pool, order: np.ndarray, rows: np.ndarray, combined: np.ndarray, picked: Sequence[int]) -> None:
    """Every score's distribution among the selected records vs. all the others (stats.json):
    the selected in selection order, the others in id order."""
    import numpy as np

    from datagen.core.summary import summarize

    chosen = rows[np.asarray(picked, dtype=np.int64)]
    rest = order[~np.isin(order, chosen)]
    st.extra["score_distributions"] = {
        n: {"selected": summarize(pool.column(n, chosen).tolist()), "not_selected": summarize(pool.column(n, rest).tolist())}
        for n in pool.present()
    }
    taken = np.zeros(len(combined), dtype=bool)
    taken[np.asarray(picked, dtype=np.int64)] = True
    st.extra["combined_score"] = {
        "selected": summarize(combined[np.asarray(picked, dtype=np.int64)].tolist()),
        "not_selected_screened": summarize(combined[~taken].tolist()),
    }


def _check_score_names(pool: Pool, names: Sequence[str]) -> None:
    """A score that no record has is a typo or a scorer that never ran: say so, instead of
    rejecting every record as ``missing_score``."""
    from datagen.core.errors import UserError

    if not len(pool):
        return
    present = set(pool.present())
    absent = [n for n in dict.fromkeys(names) if n not in present]
    if absent:
        have = ", ".join(sorted(present)) or "none: run datagen filter first"
        raise UserError(f"score {', '.join(map(repr, absent))} appears in no input record (scores present: {have}); "
                        "check --score/--min/--max")


def _selection_rejects(pool: Pool, rows: np.ndarray, combined: np.ndarray, sel: Selection, strategy: str, budget: int,
                       tau: float) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """``too_similar`` and ``over_budget`` (candidate index, reason, evidence), each with the most
    similar selected record and its cosine (to the final selected set)."""
    cutoff = float(combined[sel.order[-1]]) if sel.order else None
    for reason, idx in (("too_similar", sel.too_similar), ("over_budget", sel.over_budget)):
        for i in idx:
            near = int(sel.nearest[i])
            ev: dict[str, Any] = {
                "combined_score": round(float(combined[i]), 6),
                "most_similar_id": pool.id(int(rows[near])) if near >= 0 else None,
                "cosine": round(float(sel.max_sim[i]), 6) if near >= 0 else None,
            }
            if reason == "too_similar":
                ev["tau"] = tau
            else:
                ev["budget"] = budget
                if strategy == "deita":
                    ev["last_selected_score"] = round(cutoff, 6) if cutoff is not None else None
            yield i, reason, ev
