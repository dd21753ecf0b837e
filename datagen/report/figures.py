"""The report's figures, computed from the record index and the runs' own facts: score
histograms with the thresholds the stages applied, the MinHash detection curve, duplicate
clusters with word diffs, breakdowns by source, language and the like, and the embedding map
(read from the embedding cache; no model is loaded)."""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datagen.core.text import detect_language
from datagen.report.index import DEDUP_KINDS, NONE_LABEL, Entry, Index
from datagen.report.runs import Run


# -- score histograms --------------------------------------------------------------------------
@dataclass
class Threshold:
    score: str
    bound: str  # "min" | "max"
    value: float
    origin: str  # e.g. "filter: quality.max_ifd", "select: --min judge"


@dataclass
class Histogram:
    """Equal-width bins over [lo, hi]; ``curated``/``other`` count the records per bin."""

    score: str
    edges: list[float]
    curated: list[int]
    other: list[int]
    thresholds: list[Threshold]

    @property
    def count(self) -> int:
        return sum(self.curated) + sum(self.other)


def _stage_settings(run: Run, name: str) -> dict[str, Any] | None:
    """The ``describe()`` of stage ``name`` in a filter run's manifest, if present."""
    for s in run.manifest.get("stages") or (run.manifest.get("settings") or {}).get("describe") or []:
        if isinstance(s, dict) and s.get("name") == name:
            return s
    return None


def thresholds(runs: Sequence[Run]) -> list[Threshold]:
    """Score thresholds the runs applied: ``datagen filter``'s quality and semantic sections
    (effective values, as the manifest describes them) and ``datagen select``'s ``--min``/``--max``."""
    from datagen.curate.stages import quality
    from datagen.curate.dedup import semantic

    out = []
    for run in runs:
        for stage, fields in (("quality", quality.THRESHOLDS), ("semantic", semantic.THRESHOLDS)):
            q = _stage_settings(run, stage)
            for key, (score, bound, _) in fields.items() if q else ():
                v = q.get(key)
                if isinstance(v, (int, float)) and score in (q.get("scorers") or [score]):
                    out.append(Threshold(score, bound, float(v), f"{run.label}: {stage}.{key}"))
        for t in run.manifest.get("thresholds") or []:
            for bound in ("min", "max"):
                if isinstance(t, dict) and isinstance(t.get(bound), (int, float)):
                    out.append(Threshold(str(t.get("score")), bound, float(t[bound]), f"{run.label}: --{bound} {t.get('score')}"))
    return out


def histogram(index: Index, score: str, limits: Sequence[Threshold] = (), bins: int = 20) -> Histogram | None:
    """Histogram of ``score`` over the records that have it (their latest value), split into
    curated and not; None when no record has the score. Thresholds widen the range so that their
    markers stay on the chart."""
    pairs = [(float(e.scores[score]), index.curated(e)) for e in index
             if isinstance(e.scores.get(score), (int, float)) and math.isfinite(e.scores[score])]
    if not pairs:
        return None
    marks = [t for t in limits if t.score == score]
    values = [v for v, _ in pairs]
    lo, hi = min(values + [t.value for t in marks]), max(values + [t.value for t in marks])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    width = (hi - lo) / bins
    curated, other = [0] * bins, [0] * bins
    for v, cur in pairs:
        i = min(int((v - lo) / width), bins - 1)
        (curated if cur else other)[i] += 1
    edges = [round(lo + i * width, 6) for i in range(bins + 1)]
    return Histogram(score, edges, curated, other, marks)


# -- MinHash detection curve -------------------------------------------------------------------
@dataclass
class DetectionCurve:
    """P(candidate | Jaccard s) = 1 - (1 - s**rows)**bands, sampled on [0, 1]."""

    bands: int
    rows: int
    threshold: float
    points: list[tuple[float, float]]
    observed: list[float]  # verified Jaccards of the near duplicates found

    @property
    def at_threshold(self) -> float:
        from datagen.curate.dedup.lsh import detection_probability

        return float(detection_probability(self.threshold, self.bands, self.rows))


def detection_curve(runs: Sequence[Run], points: int = 101) -> DetectionCurve | None:
    """The curve of the last run with a MinHash stage (bands and rows as stored in its manifest),
    with the Jaccards of the near duplicates it rejected; None when no run used MinHash."""
    for run in reversed(runs):
        m = _stage_settings(run, "minhash")
        if not m or not m.get("bands") or not m.get("rows"):
            continue
        from datagen.curate.dedup.lsh import detection_probability

        b, r, t = int(m["bands"]), int(m["rows"]), float(m.get("threshold", 0.0))
        pts = [(i / (points - 1), float(detection_probability(i / (points - 1), b, r))) for i in range(points)]
        observed = sorted(float(x["evidence"]["jaccard"]) for x in run.rejected
                          if x.get("stage") == "minhash" and isinstance((x.get("evidence") or {}).get("jaccard"), (int, float)))
        return DetectionCurve(b, r, t, pts, observed)
    return None


# -- duplicate clusters ------------------------------------------------------------------------
@dataclass
class Member:
    id: str
    kind: str  # "exact" | "minhash" | "semantic" | "too similar"
    similarity: float | None  # Jaccard (minhash), cosine (semantic, too similar); None for exact


@dataclass
class Cluster:
    """A survivor and the records rejected as its duplicates."""

    survivor: str
    members: list[Member]

    @property
    def size(self) -> int:
        return 1 + len(self.members)

    @property
    def kinds(self) -> list[str]:
        return sorted({m.kind for m in self.members})


def _duplicate_link(stage: str, reason: str, ev: dict[str, Any], flags: dict[str, Any]) -> tuple[str, str, float | None] | None:
    """(survivor id, kind, similarity) of a duplicate rejection, else None."""
    base = stage.split(".")[0]
    if base == "select":
        if reason == "too_similar" and ev.get("most_similar_id"):
            return str(ev["most_similar_id"]), DEDUP_KINDS["select"], ev.get("cosine")
        return None
    if base not in ("exact", "minhash", "semantic"):
        return None
    dup = ev.get("duplicate_of") or (flags.get("semantic_duplicate_of") if base == "semantic" else None)
    if not dup:
        return None
    sim = ev.get("jaccard") if base == "minhash" else ev.get("cosine") if base == "semantic" else None
    return str(dup), DEDUP_KINDS[base], float(sim) if isinstance(sim, (int, float)) else None


def duplicate_clusters(index: Index) -> list[Cluster]:
    """Rejected duplicates grouped by the survivor they point at (``duplicate_of``,
    ``semantic_duplicate_of``, select's ``most_similar_id`` for ``too_similar``), largest first,
    then by survivor id."""
    groups: dict[str, list[Member]] = defaultdict(list)
    for e in index:
        for ev in e.events:
            if ev.status != "rejected":
                continue
            link = _duplicate_link(ev.stage, ev.reason, ev.evidence, e.record.get("flags") or {})
            if link and link[0] != e.id:
                groups[link[0]].append(Member(e.id, link[1], link[2]))
    clusters = [Cluster(s, sorted(ms, key=lambda m: (-(m.similarity or 1.0), m.id))) for s, ms in groups.items()]
    return sorted(clusters, key=lambda c: (-c.size, c.survivor))


_WORD = re.compile(r"\s+|[^\s]+")


def word_diff(a: str, b: str) -> list[tuple[str, str]]:
    """Word-level diff of ``a`` -> ``b`` as ``(op, text)`` pieces, op in ``"="`` (both), ``"-"``
    (only in ``a``), ``"+"`` (only in ``b``). Whitespace is kept, so joining the ``=`` and ``-``
    pieces gives ``a`` back and the ``=`` and ``+`` pieces give ``b``."""
    ta, tb = _WORD.findall(a), _WORD.findall(b)
    out: list[tuple[str, str]] = []
    sm = difflib.SequenceMatcher(None, ta, tb, autojunk=False)
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "equal":
            out.append(("=", "".join(ta[i1:i2])))
            continue
        if i2 > i1:
            out.append(("-", "".join(ta[i1:i2])))
        if j2 > j1:
            out.append(("+", "".join(tb[j1:j2])))
    return out


# -- breakdowns --------------------------------------------------------------------------------
@dataclass
class Group:
    key: str
    total: int = 0
    curated: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # "stage: reason" of the rejected

    @property
    def rejected(self) -> int:
        return sum(self.reasons.values())


LANGUAGE_SAMPLE = 200  # characters of the instruction the language guess looks at


def language(e: Entry) -> str:
    """The language the heuristics stage identified (``flags.language``: en, zh...), else the
    writing system of the instruction's beginning (:func:`datagen.core.text.detect_language`:
    latin, zh, ja, ko, other) for a record that stage never saw."""
    found = (e.record.get("flags") or {}).get("language")
    if isinstance(found, str):
        return found or NONE_LABEL
    return detect_language(e.instruction[:LANGUAGE_SAMPLE]) or NONE_LABEL


def dimensions(e: Entry) -> dict[str, str]:
    """The keys a record is broken down by: source, evolution operation and round, language."""
    meta = e.meta
    op = meta.get("operation")
    rnd = meta.get("round")
    return {"source": e.source, "operation": str(op) if op else NONE_LABEL,
            "round": str(rnd) if rnd is not None else NONE_LABEL, "language": language(e)}


def breakdowns(index: Index, dims: dict[str, dict[str, str]] | None = None) -> dict[str, list[Group]]:
    """For each dimension, one :class:`Group` per value (most records first): records, curated,
    and rejections per ``stage: reason``. ``dims`` (id -> dimensions) saves recomputing them."""
    out: dict[str, dict[str, Group]] = defaultdict(dict)
    for e in index:
        d = dims[e.id] if dims is not None else dimensions(e)
        cur = index.curated(e)
        fate = e.fate
        for name, key in d.items():
            g = out[name].setdefault(key, Group(key))
            g.total += 1
            g.curated += cur
            if fate.status == "rejected":
                g.reasons[f"{fate.stage}: {fate.reason}"] += 1
    return {name: sorted(groups.values(), key=lambda g: (-g.total, g.key)) for name, groups in out.items()}


# -- embedding map -----------------------------------------------------------------------------
PCA_FIT_ROWS = 10_000  # rows the principal axes are fitted on (every row is projected)
@dataclass
class EmbeddingMap:
    """2-D PCA projection of the cached embeddings; ``ids[i]`` sits at ``xy[i]``."""

    ids: list[str]
    xy: list[tuple[float, float]]
    explained: tuple[float, float]  # variance ratio of the two components
    total: int  # records with an answer (the ones that could have an embedding)
    model: str


def embedding_settings(runs: Sequence[Run]) -> tuple[str, str | None]:
    """(embedding model, cache dir) named by the runs' manifests (select's ``embeddings`` note,
    filter's semantic stage), defaulting to the embedded model and the default cache."""
    from datagen.score.embeddings import DEFAULT_EMBED_MODEL

    for run in reversed(runs):
        emb = run.manifest.get("embeddings")
        if isinstance(emb, dict) and emb.get("model"):
            return str(emb["model"]), emb.get("cache_dir")
        sem = _stage_settings(run, "semantic")
        if sem and sem.get("model"):
            return str(sem["model"]), None
    return DEFAULT_EMBED_MODEL, None


def embedding_map(index: Index, cache_dir: Path, model: str) -> tuple[EmbeddingMap | None, str]:
    """PCA of the vectors the embedding cache holds for the records (never loads a model).
    Returns (map, note); the map is None, with the note saying why, when nothing is cached."""
    import numpy as np

    from datagen.score.embeddings import EmbeddingStore

    entries = [e for e in index if e.response]
    if not entries:
        return None, "no record has an answer to embed"
    store = EmbeddingStore.open_cached(cache_dir, model)
    if store is None:
        return None, f"no {model} embedding cache under {cache_dir}; run datagen filter (semantic) or datagen select to compute embeddings"
    # the text datagen.score.embeddings.embed_text embeds: last instruction, blank line, answer
    texts = [e.instruction + "\n\n" + e.response for e in entries]
    found, vectors = store.lookup_some(texts)
    if len(found) < 3:
        return None, f"{len(found)} of {len(entries)} records have a cached {model} embedding under {cache_dir}; run datagen filter (semantic) or datagen select to compute them"
    x = vectors.astype(np.float64)
    # Principal axes from at most PCA_FIT_ROWS evenly spaced rows (plenty for a 2-D picture), then
    # every row projected. The SVD of the d x d scatter matrix X'X gives X's right singular vectors
    # and squared singular values: the same axes as svd(X), without an (n x d) decomposition.
    fit = x[:: max(1, len(x) // PCA_FIT_ROWS)]
    mean = fit.mean(axis=0, keepdims=True)
    centred = fit - mean
    _, var, vt = np.linalg.svd(centred.T @ centred)
    xy = (x - mean) @ vt[:2].T
    if xy.shape[1] < 2:
        xy = np.c_[xy, np.zeros(len(xy))]
    total = float(var.sum()) or 1.0
    explained = tuple(float(var[i] / total) if i < len(var) else 0.0 for i in range(2))
    pts = [(a, b) for a, b in np.round(xy, 5).tolist()]
    missing = len(entries) - len(found)
    note = f"{missing} of {len(entries)} records have no cached embedding and are not shown" if missing else ""
    return EmbeddingMap([entries[i].id for i in found], pts, (explained[0], explained[1]), len(entries), store.model_id), note
