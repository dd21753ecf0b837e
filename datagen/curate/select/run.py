"""``datagen select``: keep a LIMA-style, budgeted, diverse subset of scored records.

The algorithms live in :mod:`datagen.curate.select.algorithms` (pure numpy); this module reads the records, gets
their embeddings and writes the run directory:

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

"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Sequence, TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import numpy as np

    from datagen.core.source import InputSpec
    from datagen.core.runner import Batch, Context
    from datagen.core.record import Record, Rejection
    from datagen.curate.select.algorithms import ScoreDef, Selection, Threshold
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


def embeddings_for(records: Sequence[Record], model: str, cache_dir: Path, allow_compute: bool, device: str | None, batch_size: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Embeddings of ``records`` (rows L2-normalised) and a note of how many were cached or
    computed. A full cache hit never loads the model."""
    from datagen.core.errors import UserError
    from datagen.score.embeddings import EmbeddingStore, embed_text

    store = EmbeddingStore(cache_dir, model=model, batch_size=batch_size, device=device)
    texts = [embed_text(r) for r in records]
    emb = store.lookup(texts)
    if emb is None:
        if not allow_compute:
            raise UserError(
                f"some of the {len(texts)} records have no cached {model} embedding under {cache_dir}; "
                "run datagen filter with the same --cache-dir first, or drop --no-embed to compute them"
            )
        print(f"select: embedding the records missing from the cache ({model}, {cache_dir})", file=sys.stderr)
        from datagen.core.progress import progress_enabled

        emb = store.embed(texts, progress=progress_enabled())
        print(f"select: computed {store.computed} of {len(texts)} embeddings", file=sys.stderr)
    note = {"model": model, "model_id": store.model_id, "cache_dir": str(cache_dir), "cached": len(texts) - store.computed, "computed": store.computed}
    return emb, note


@dataclass
class Outcome:
    """What one selection produced: the curated records, every rejection, the stats."""

    kept: list[Record]
    rejected: list[Rejection]
    stats: Stats
    embeddings: dict[str, Any]


EmbedFn = Callable[[Sequence["Record"]], "tuple[np.ndarray, dict[str, Any]]"]


def run_selection(records: Sequence[Record], thresholds: Sequence[Threshold], score_def: ScoreDef, strategy: str,
                  budget: int, tau: float, embed: EmbedFn) -> Outcome:
    """Screen ``records`` (in id order), combine their scores, embed the survivors with
    ``embed`` and select; every record ends up kept or rejected with a reason."""
    import numpy as np

    from datagen.core.record import Rejection
    from datagen.curate.select.algorithms import SELECTORS, Selection, screen
    from datagen.core.stats import Stats

    st = Stats()
    rejected: list[Rejection] = []
    pool, screened_out = screen([r.scores for r in records], thresholds, score_def.names)
    st.seen(SCREEN_STAGE, len(records))
    st.kept(SCREEN_STAGE, len(pool))
    for i, reason, evidence in screened_out:
        st.rejected(SCREEN_STAGE, reason)
        rejected.append(Rejection(stage=SCREEN_STAGE, reason=reason, evidence=evidence, record=records[i]))

    cands = [records[i] for i in pool]
    values = np.array([[r.scores[n] for n in score_def.names] for r in cands], dtype=np.float64)
    combined = score_def.combined(values, ids=[r.id for r in cands])
    note: dict[str, Any] = {"cached": 0, "computed": 0}
    sel = Selection()
    if cands:
        emb, note = embed(cands)
        sel = SELECTORS[strategy](emb, combined, budget, tau)
    kept = _selected_records(cands, combined, sel)
    st.seen(SELECT_STAGE, len(cands))
    st.kept(SELECT_STAGE, len(kept))
    rejected += _selection_rejects(cands, combined, sel, strategy, budget, tau, st)
    _describe_distributions(st, records, [pool[i] for i in sel.order], combined, sel.order)
    st.extra["funnel"] = {"parsed": len(records), "screened": len(cands), "selected": len(kept)}
    st.extra["budget_filled"] = len(kept) >= budget
    st.extra["embeddings"] = note
    return Outcome(kept, rejected, st, note)


def run_select(source: InputSpec, out: str | Path, *, budget: int, score: str = "judge=1,complexity=1", tau: float = 0.9,
               strategy: str = "deita", mins: Sequence[str] = (), maxs: Sequence[str] = (), combine: str = "product",
               norm: str = "zscore", embed_model: str | None = None, cache_dir: str | Path | None = None, no_embed: bool = False,
               device: str | None = None, batch_size: int = 64, force: bool = False) -> dict[str, Any]:
    """``datagen select`` as a function: the best and most varied ``budget`` records of ``source``
    into the run directory ``out`` (arguments as the command's flags). Returns the final stats;
    raises :class:`~datagen.core.rundir.AlreadyComplete` when ``out`` already holds this run."""
    from functools import partial

    from datagen.core.kvcache import default_cache_dir
    from datagen.core.runner import run_step
    from datagen.core.errors import UserError
    from datagen.score.embeddings import DEFAULT_EMBED_MODEL
    from datagen.core.rundir import RunDir
    from datagen.curate.select.algorithms import ScoreDef, thresholds_from

    t0 = time.time()
    if budget < 1:
        raise UserError("--budget must be >= 1")
    if not -1.0 <= tau <= 1.0:
        raise UserError("--tau is a cosine similarity: between -1 and 1")
    thresholds = thresholds_from(list(mins), list(maxs))
    score_def = ScoreDef.parse(score, combine, norm)
    model = embed_model or DEFAULT_EMBED_MODEL
    cache = Path(cache_dir) if cache_dir else default_cache_dir()

    read_rejects: list[Rejection] = []
    # id order (then full content, for repeated conversations): the input's order never matters
    records = sorted(source.read(read_rejects.append), key=lambda r: (r.id, r.to_json()))
    _check_score_names(records, score_def.names + [t.score for t in thresholds])
    embed = partial(embeddings_for, model=model, cache_dir=cache, allow_compute=not no_embed, device=device, batch_size=batch_size)
    outcome = run_selection(records, thresholds, score_def, strategy, budget, tau, embed)
    outcome.stats.extra["funnel"] = {"read": len(records) + len(read_rejects), **outcome.stats.extra["funnel"]}
    outcome.stats.extra["seconds"] = round(time.time() - t0, 3)

    # Everything is computed before the run directory is touched: a mistake leaves no output.
    settings = {
        **source.settings(), "budget": budget, "tau": tau,
        "strategy": strategy, "thresholds": [t.describe() for t in thresholds],
        "score": score_def.describe(), "embed_model": model,
    }
    run = RunDir(out, "select", settings, force=force)
    manifest = {
        "budget": budget, "tau": tau, "strategy": strategy,
        "thresholds": [t.describe() for t in thresholds], "score": score_def.describe(),
        "models": {"embeddings": outcome.embeddings.get("model_id", model)}, "embeddings": outcome.embeddings,
    }
    return run_step(run, _Selected(outcome), total=1, read=(len(records), read_rejects), manifest=manifest)


@dataclass
class _Selected:
    """A finished selection as the runner's one batch. Selection is global (every record against
    every other), so it is computed before the run directory exists: a mistake leaves nothing."""

    outcome: Outcome
    name: str = "select"
    unit: str = "selection"

    def batches(self) -> Iterator[Batch]:
        from datagen.core.runner import Batch

        yield Batch(self.outcome, 1)

    def process(self, batch: Batch, ctx: Context) -> list[Record]:
        ctx.stats = batch.items.stats
        ctx.add_rejections(batch.items.rejected)
        return batch.items.kept


def _describe_distributions(st: Stats, records: Sequence[Record], picked: Sequence[int], combined: np.ndarray, order: Sequence[int]) -> None:
    """Every score's distribution among the selected records vs. all the others (stats.json)."""
    from datagen.core.summary import summarize

    chosen, taken = set(picked), set(order)
    sel = [records[j] for j in picked]
    rest = [r for j, r in enumerate(records) if j not in chosen]
    st.extra["score_distributions"] = {
        n: {"selected": summarize([r.scores.get(n) for r in sel]), "not_selected": summarize([r.scores.get(n) for r in rest])}
        for n in sorted({n for r in records for n in r.scores})
    }
    st.extra["combined_score"] = {
        "selected": summarize([float(combined[i]) for i in order]),
        "not_selected_screened": summarize([float(combined[i]) for i in range(len(combined)) if i not in taken]),
    }


def _check_score_names(records: Sequence[Record], names: Sequence[str]) -> None:
    """A score that no record has is a typo or a scorer that never ran: say so, instead of
    rejecting every record as ``missing_score``."""
    from datagen.core.errors import UserError

    if not records:
        return
    present = {n for r in records for n in r.scores}
    absent = [n for n in dict.fromkeys(names) if n not in present]
    if absent:
        have = ", ".join(sorted(present)) or "none: run datagen filter first"
        raise UserError(f"score {', '.join(map(repr, absent))} appears in no input record (scores present: {have}); "
                        "check --score/--min/--max")


def _selected_records(cands: Sequence[Record], combined: np.ndarray, sel: Selection) -> list[Record]:
    out = []
    for rank, (i, sim) in enumerate(zip(sel.order, sel.sim_at_pick), start=1):
        rec = cands[i]
        info = {"rank": rank, "combined_score": round(float(combined[i]), 6), "max_sim_to_selected": None if sim is None else round(sim, 6)}
        out.append(rec.model_copy(update={"flags": {**rec.flags, "select": info}}))
    return out


def _selection_rejects(cands: Sequence[Record], combined: np.ndarray, sel: Selection, strategy: str, budget: int, tau: float, st: Stats) -> list[Rejection]:
    """``too_similar`` and ``over_budget``, each with the most similar selected record and its
    cosine (to the final selected set)."""
    from datagen.core.record import Rejection

    out = []
    cutoff = float(combined[sel.order[-1]]) if sel.order else None
    for reason, idx in (("too_similar", sel.too_similar), ("over_budget", sel.over_budget)):
        for i in idx:
            near = int(sel.nearest[i])
            ev: dict[str, Any] = {
                "combined_score": round(float(combined[i]), 6),
                "most_similar_id": cands[near].id if near >= 0 else None,
                "cosine": round(float(sel.max_sim[i]), 6) if near >= 0 else None,
            }
            if reason == "too_similar":
                ev["tau"] = tau
            else:
                ev["budget"] = budget
                if strategy == "deita":
                    ev["last_selected_score"] = round(cutoff, 6) if cutoff is not None else None
            st.rejected(SELECT_STAGE, reason)
            out.append(Rejection(stage=SELECT_STAGE, reason=reason, evidence=ev, record=cands[i]))
    return out
