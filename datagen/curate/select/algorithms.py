"""LIMA-style budgeted, diversity-aware selection: the core, pure numpy, no model.

``datagen select`` (:mod:`datagen.curate.select.run`) reads records whose ``scores`` were written by
``datagen filter``, and keeps at most ``budget`` of them. Three steps, each with its own reason
codes in ``rejected.jsonl``:

1. **Screen** (:func:`screen`). A record lacking a score that a threshold or the combined score
   needs (or holding a non-finite one) is rejected as ``missing_score``: no default is ever
   substituted. Thresholds (``--min judge=3.5``, ``--max ifd=1.0``) reject as
   ``below_min_<score>`` / ``above_max_<score>``, with the value, the bound and every other failed
   threshold as evidence.
2. **Combine** (:class:`ScoreDef`). ``product`` (the default, DEITA's quality x complexity):
   ``prod_i s_i ** w_i`` over the raw scores, which must be positive (a negative weight divides,
   e.g. ``ifd=-1`` for "lower is better"). ``sum``: ``sum_i w_i * norm(s_i)``, where ``norm`` is
   ``zscore`` ((s - mean) / std) or ``minmax`` ((s - min) / (max - min)) computed over the records
   that passed the screen (a constant score normalises to 0), or ``none`` (raw values).
3. **Select** from the screened pool, in one of two strategies. Both keep every pair of selected
   records at cosine similarity <= ``tau``.

   * ``deita`` (:func:`greedy_diverse`, DEITA's score-first greedy): walk the pool by combined
     score, highest first, and keep a record only if its cosine similarity to *every* record
     already selected is <= ``tau``, until ``budget`` are kept. Skipped records are
     ``too_similar`` (evidence: the most similar selected record and the cosine); those never
     reached are ``over_budget``.
   * ``kcenter`` (:func:`k_center`): farthest-point greedy on cosine distance. Start from the
     highest-scoring record, then repeatedly add the record least similar to everything selected
     (its maximum similarity to the selected set is smallest). It stops at the budget, or when even
     that record is more similar than ``tau`` (the rest are then ``too_similar``).

``kcenter`` keeps a running vector ``max_sim[j]`` = max cosine of record j to the selected set,
updated with one matrix-vector product per selected record: O(N x budget x d), no Python double
loop. ``deita`` needs only the walked candidate's similarity to the records selected before it: it
compares a block of the next candidates with the selected set in one matrix product (an exact flat
inner-product search; or asks an HNSW graph of the selected set, ``search="hnsw"``:
:mod:`.search`), then walks the block, adding the cosines to the records it selected inside
it; each candidate's final nearest selected record is one more blocked product at the end. The
same answers as a record-by-record walk, with BLAS doing the work.

Determinism: the selection functions break every tie by the lowest index, and the command puts
records in id order first, so ties go to the lowest id and a shuffled input selects the same
records in the same order.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from datagen.core.errors import UserError
from datagen.curate.select.search import HNSW, exact_nearest

STRATEGIES = ("deita", "kcenter")
COMBINES = ("product", "sum")
NORMS = ("zscore", "minmax", "none")
DEFAULT_SCORE = "judge=1,complexity=1"
DEFAULT_TAU = 0.9
_NAME = re.compile(r"^[A-Za-z_][\w.\-]*$")


# -- parsing the score flags ---------------------------------------------------------------------
def parse_assignments(specs: Sequence[str], flag: str, default_value: float | None = None) -> list[tuple[str, float]]:
    """``["judge=3.5,complexity=2", "ifd=1"]`` -> ``[("judge", 3.5), ("complexity", 2.0), ("ifd", 1.0)]``.
    With ``default_value``, a bare name (``judge``) takes it. A repeated name is an error."""
    out: dict[str, float] = {}
    for spec in specs:
        for item in (s.strip() for s in spec.split(",")):
            if not item:
                continue
            name, eq, value = (x.strip() for x in item.partition("="))
            if not _NAME.match(name):
                raise UserError(f"{flag} {item!r}: expected NAME=NUMBER with a score name such as judge, ifd, complexity")
            if not eq:
                if default_value is None:
                    raise UserError(f"{flag} {item!r}: expected NAME=NUMBER, e.g. {flag} {name}=3")
                num = default_value
            else:
                try:
                    num = float(value)
                except ValueError:
                    raise UserError(f"{flag} {item!r}: {value!r} is not a number") from None
                if not math.isfinite(num):
                    raise UserError(f"{flag} {item!r}: the number must be finite")
            if name in out:
                raise UserError(f"{flag}: score {name!r} given twice")
            out[name] = num
    return list(out.items())


@dataclass(frozen=True)
class Threshold:
    """``score >= value`` (bound "min") or ``score <= value`` (bound "max")."""

    score: str
    bound: Literal["min", "max"]
    value: float

    @property
    def reason(self) -> str:
        return f"below_min_{self.score}" if self.bound == "min" else f"above_max_{self.score}"

    def fails(self, v: float) -> bool:
        return v < self.value if self.bound == "min" else v > self.value

    def describe(self) -> dict[str, Any]:
        return {"score": self.score, self.bound: self.value}


def thresholds_from(mins: Sequence[str], maxs: Sequence[str]) -> list[Threshold]:
    out = [Threshold(n, "min", v) for n, v in parse_assignments(mins, "--min")]
    out += [Threshold(n, "max", v) for n, v in parse_assignments(maxs, "--max")]
    return out


@dataclass(frozen=True)
class ScoreDef:
    """How the per-record scores become one combined score (see the module docstring)."""

    weights: tuple[tuple[str, float], ...]
    combine: str = "product"
    norm: str = "zscore"

    def __post_init__(self) -> None:
        if not self.weights:
            raise UserError("--score: name at least one score, e.g. --score judge=1,complexity=1")
        if self.combine not in COMBINES:
            raise UserError(f"--combine: expected one of {', '.join(COMBINES)}")
        if self.norm not in NORMS:
            raise UserError(f"--norm: expected one of {', '.join(NORMS)}")

    @classmethod
    def parse(cls, spec: str, combine: str = "product", norm: str = "zscore") -> "ScoreDef":
        return cls(tuple(parse_assignments([spec], "--score", default_value=1.0)), combine, norm)

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.weights]

    def describe(self) -> dict[str, Any]:
        w = dict(self.weights)
        if self.combine == "product":
            formula = " * ".join(n if x == 1 else f"{n}^{x:g}" for n, x in self.weights)
            return {"combine": "product", "weights": w, "formula": formula + " (raw scores)"}
        terms = " + ".join(f"{x:g}*{self.norm}({n})" for n, x in self.weights)
        return {"combine": "sum", "norm": self.norm, "weights": w, "formula": terms}

    def combined(self, values: np.ndarray, ids: Sequence[str] | None = None) -> np.ndarray:
        """Combined score of each row of ``values`` (n records x len(weights) scores, in the order
        of ``weights``). Normalisation statistics come from these rows."""
        v = np.asarray(values, dtype=np.float64).reshape(len(values), len(self.weights))
        w = np.array([x for _, x in self.weights], dtype=np.float64)
        if len(v) == 0:
            return np.zeros(0)
        if self.combine == "product":
            bad = np.argwhere(v <= 0)
            if len(bad):
                r, c = bad[0]
                who = f"record {ids[r]}" if ids is not None else f"row {r}"
                raise UserError(
                    f"--combine product needs positive scores, but {who} has {self.names[c]}={v[r, c]:g}; "
                    "use --combine sum (with --norm zscore or minmax) for scores that can be zero or negative"
                )
            return np.exp(np.log(v) @ w)
        return normalise(v, self.norm) @ w


def normalise(v: np.ndarray, norm: str) -> np.ndarray:
    """Column-wise ``zscore`` / ``minmax`` / ``none``; a constant column becomes 0."""
    if norm == "none":
        return v
    if norm == "zscore":
        center, scale = v.mean(axis=0), v.std(axis=0)
    else:
        center, scale = v.min(axis=0), v.max(axis=0) - v.min(axis=0)
    safe = np.where(scale > 0, scale, 1.0)
    return np.where(scale > 0, (v - center) / safe, 0.0)


# -- screening -----------------------------------------------------------------------------------
Rejected = tuple[int, str, dict[str, Any]]  # (record index, reason, evidence)


def screen(scores: Sequence[Mapping[str, float]], thresholds: Sequence[Threshold], needed: Sequence[str]) -> tuple[list[int], list[Rejected]]:
    """Indices that pass, and (index, reason, evidence) for those that do not. ``needed``: the
    scores the combined score uses; a record lacking one of those or of a thresholded score (or
    holding NaN/inf) is ``missing_score``, checked before any threshold."""
    required = list(dict.fromkeys([*needed, *(t.score for t in thresholds)]))
    kept: list[int] = []
    rejected: list[Rejected] = []
    for i, s in enumerate(scores):
        missing = [n for n in required if not _finite(s.get(n))]
        if missing:
            ev: dict[str, Any] = {"missing": missing, "present": sorted(n for n, v in s.items() if _finite(v))}
            non_finite = [n for n in missing if n in s]
            if non_finite:
                ev["non_finite"] = non_finite
            rejected.append((i, "missing_score", ev))
            continue
        failed = [t for t in thresholds if t.fails(float(s[t.score]))]
        if failed:
            first = failed[0]
            ev = {"score": first.score, "value": s[first.score], first.bound: first.value}
            if len(failed) > 1:
                ev["also_failed"] = [t.reason for t in failed[1:]]
            rejected.append((i, first.reason, ev))
            continue
        kept.append(i)
    return kept, rejected


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# -- selection -----------------------------------------------------------------------------------
@dataclass
class Selection:
    """The outcome over a pool of n candidates (indices into the arrays given).

    ``order``: selected indices in selection order; ``sim_at_pick[k]``: the max cosine of
    ``order[k]`` to the records selected before it (None for the first). ``too_similar`` /
    ``over_budget``: the others. ``max_sim`` / ``nearest``: each candidate's final max cosine to
    the selected set and the selected index achieving it (-1 when nothing was selected)."""

    order: list[int] = field(default_factory=list)
    sim_at_pick: list[float | None] = field(default_factory=list)
    too_similar: list[int] = field(default_factory=list)
    over_budget: list[int] = field(default_factory=list)
    max_sim: np.ndarray = field(default_factory=lambda: np.zeros(0))
    nearest: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def score_order(combined: np.ndarray) -> np.ndarray:
    """Indices by combined score, highest first; ties to the lowest index."""
    return np.argsort(-np.asarray(combined, dtype=np.float64), kind="stable")


class _MaxSim:
    """Running max cosine of every candidate to the selected set, and which selected record."""

    def __init__(self, emb: np.ndarray) -> None:
        self.emb = emb
        self.value = np.full(len(emb), -np.inf, dtype=np.float64)
        self.nearest = np.full(len(emb), -1, dtype=np.int64)

    def add(self, i: int) -> None:
        sims = (self.emb @ self.emb[i]).astype(np.float64)
        closer = sims > self.value  # strict: on a tie the earlier-selected record stays nearest
        self.value[closer] = sims[closer]
        self.nearest[closer] = i


def _limit(tau: float) -> float:
    """tau >= 1 turns the similarity rule off (rounding can put a cosine a hair above 1)."""
    return math.inf if tau >= 1.0 else float(tau)


def _check(emb: np.ndarray, combined: np.ndarray, budget: int) -> np.ndarray:
    e = np.asarray(emb)
    if e.ndim != 2 or len(e) != len(combined):
        raise ValueError(f"embeddings {e.shape} do not match {len(combined)} scores")
    if budget < 1:
        raise ValueError("budget must be >= 1")
    return e


_BLOCK = 1024  # candidates compared with the selected set in one product


def greedy_diverse(emb: np.ndarray, combined: np.ndarray, budget: int, tau: float, search: str = "exact") -> Selection:
    """DEITA's score-first greedy (rows of ``emb`` L2-normalised); cosines in the dtype of ``emb``.
    ``search``: how a block of candidates finds its nearest selected records: ``exact`` (a flat
    product with every selected row) or ``hnsw`` (:class:`~.search.HNSW`, approximate). Under ``hnsw`` the
    final ``max_sim``/``nearest`` come from the graph too, except that a ``too_similar`` record
    keeps the match it was skipped for when the graph's final answer is less similar (so its
    evidence always shows a cosine above tau); an ``over_budget`` record's nearest is the graph's."""
    e, tau = _check(emb, combined, budget), _limit(tau)
    out = Selection()
    order = score_order(combined)
    picked = np.empty((min(budget, len(e)), e.shape[1] if e.ndim == 2 else 0), dtype=e.dtype)  # selected rows, in order
    index = HNSW(picked.shape[1]) if search == "hnsw" else None
    nearest = index.nearest if index is not None else exact_nearest
    skipped: dict[int, tuple[float, int]] = {}  # hnsw: each too_similar record's match when it was skipped
    pos = 0
    while pos < len(order) and len(out.order) < budget:
        idx = order[pos:pos + _BLOCK]
        x = e[idx]
        before = len(out.order)
        value, near = nearest(x, picked[:before])
        for p, i in enumerate(idx.tolist()):
            if len(out.order) >= budget:
                break
            pos += 1
            if value[p] > tau:
                out.too_similar.append(i)
                if index is not None:
                    skipped[i] = (float(value[p]), int(near[p]))
                continue
            out.sim_at_pick.append(float(value[p]) if out.order else None)
            picked[len(out.order)] = x[p]
            out.order.append(i)
            if p + 1 < len(idx):  # the rest of the block against the record just selected
                sims = (x[p + 1:] @ x[p]).astype(np.float64)
                closer = sims > value[p + 1:]
                value[p + 1:][closer] = sims[closer]
                near[p + 1:][closer] = len(out.order) - 1
        if index is not None:
            index.add(picked[before:len(out.order)])
    out.over_budget = order[pos:].tolist()
    out.max_sim, rank = nearest(e, picked[:len(out.order)])
    for i, (v, r) in skipped.items():  # the graph's final answer may miss the record a skip was for
        if v > out.max_sim[i]:
            out.max_sim[i], rank[i] = v, r
    out.nearest = np.where(rank >= 0, np.asarray(out.order + [-1], dtype=np.int64)[rank], -1)
    return out


def k_center(emb: np.ndarray, combined: np.ndarray, budget: int, tau: float = 1.0) -> Selection:
    """Farthest-point (k-center) greedy on cosine distance, seeded with the highest-scoring
    record; ties go to the higher combined score, then the lower index."""
    e, tau = _check(emb, combined, budget), _limit(tau)
    ms = _MaxSim(e)
    out = Selection()
    order = score_order(combined)
    if len(order):
        first = int(order[0])
        out.order.append(first)
        out.sim_at_pick.append(None)
        ms.add(first)
    # Work in score order so that np.argmin's first-minimum rule breaks ties by score, then index.
    taken = np.zeros(len(order), dtype=bool)
    if len(order):
        taken[0] = True
    while len(out.order) < budget and not taken.all():
        cand = np.where(taken, np.inf, ms.value[order])
        k = int(np.argmin(cand))
        if cand[k] > tau:
            break
        i = int(order[k])
        taken[k] = True
        out.order.append(i)
        out.sim_at_pick.append(float(ms.value[i]))
        ms.add(i)
    rest = order[~taken].tolist()
    if len(out.order) >= budget:
        out.over_budget = rest
    else:
        out.too_similar = rest
    out.max_sim, out.nearest = ms.value, ms.nearest
    return out


SELECTORS = {"deita": greedy_diverse, "kcenter": k_center}
