"""Semantic near-duplicate removal in the style of SemDeDup (Abbas et al., 2023).

1. Each record is embedded (:func:`~datagen.score.embeddings.embed_text`, all-MiniLM-L6-v2 by
   default; vectors are L2-normalised and cached on disk, so a rerun embeds nothing).
2. The vectors are partitioned by k-means (scikit-learn ``MiniBatchKMeans``, seeded). Only pairs
   inside one cluster are compared, which turns the all-pairs cost into about ``n * cluster size``.
   A near-duplicate pair split across two clusters is missed; SemDeDup accepts the same trade.
3. Inside a cluster, records are ranked by priority: the higher ``scores[score_key]`` first
   (records without the score come after those with one), then, as in SemDeDup's
   ``keep_hard=True``, the lower cosine similarity to the cluster centroid (the less prototypical
   record), then the lower id. Walking that ranking, a record whose cosine similarity to an
   already *kept* record is at least ``threshold`` is a duplicate of the most similar kept one.

SemDeDup states its threshold as ``1 - eps`` (eps = 0.05 here gives 0.95). It removes a record when
it is close to *any* higher-ranked record, even one removed itself; we compare with kept records
only, so every dropped record points at a survivor it is close to, and the survivors have no pair
at or above the threshold either way.

Off-topic answers (``min_relevance``): the instruction and the answer are also embedded on their
own, and their cosine similarity is ``scores["relevance"]``. An answer of at least
``relevance_min_words`` words whose relevance is below ``min_relevance`` answers something else
(a misaligned pair, a fluent answer to another question) and is dropped as ``off_topic``. Short
answers are not judged: a label such as "Yes" or "Bills" is far from its question in embedding
space however right it is. Off-topic records take no part in deduplication, so a group's survivor
is never one of them.

Records are processed in id order whatever the input order, so the result does not depend on how
the input was shuffled. Flags: ``semantic_cluster`` (every deduplicated record),
``semantic_duplicate_of`` and ``cosine`` (the duplicates), ``off_topic`` (the off-topic ones). The
thresholds are applied while annotating; changing one re-clusters from the cached vectors without
running the model.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from datagen.core.record import Record
from datagen.core.text import count_words_or_chars
from datagen.curate.base import FilterContext, Verdict
from datagen.score.embeddings import DEFAULT_EMBED_MODEL, EmbeddingStore, embed_text

# threshold field -> (score key, "min" | "max", reason code), as the quality stage's
THRESHOLDS: dict[str, tuple[str, str, str]] = {"min_relevance": ("relevance", "min", "off_topic")}
_FLAGS = ("semantic_cluster", "semantic_duplicate_of", "cosine", "off_topic")
_BLOCK = 1024  # rows of a cluster compared at once: bounds memory for very large clusters


class SemanticConfig(BaseModel):
    """Settings of :class:`SemanticDedup`."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.95, gt=0, le=1, description="cosine similarity at or above which two records are duplicates (SemDeDup's 1 - eps)")
    n_clusters: int | None = Field(None, ge=1, description="k-means clusters; default ceil(n / cluster_size)")
    cluster_size: int = Field(1000, ge=1, description="target records per cluster when n_clusters is not set")
    batch_size: int = Field(64, ge=1, description="texts per embedding batch")
    model: str = Field(DEFAULT_EMBED_MODEL, description="embedding model: all-MiniLM-L6-v2 or a local sentence-transformers folder")
    seed: int = 0
    score_key: str | None = Field("judge", description="record.scores key whose higher value survives a duplicate group; None: centroid rule only")
    min_relevance: float | None = Field(0.1, ge=-1, le=1, description="instruction-answer cosine below which an answer is off_topic; None: not checked")
    relevance_min_words: int = Field(8, ge=0, description="answers shorter than this (words, CJK characters one each) are not checked for relevance")
    device: str | None = None


class SemanticDedup:
    """Flags semantic near-duplicates (see the module docstring); ``verdict`` drops them."""

    name = "semantic"
    score_names: tuple[str, ...] = ("relevance",)

    def __init__(self, config: SemanticConfig | None = None, **overrides: Any) -> None:
        self.config = SemanticConfig.model_validate({**(config.model_dump() if config else {}), **overrides})
        self.embedded = 0  # texts the last annotate sent through the model (cache misses)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump()}

    def annotate(self, records: list[Record], ctx: FilterContext) -> None:
        for rec in records:
            for key in _FLAGS:
                rec.flags.pop(key, None)
            rec.scores.pop("relevance", None)
        if not records:
            return
        cfg = self.config
        store = EmbeddingStore(ctx.cache_dir, cfg.model, cfg.batch_size, cfg.device)
        off_topic = self._relevance(records, store, ctx) if cfg.min_relevance is not None else 0
        order = sorted((i for i in range(len(records)) if "off_topic" not in records[i].flags), key=lambda i: records[i].id)
        recs = [records[i] for i in order]
        extra = ctx.stats.extra.setdefault("semantic", {})
        extra.update(off_topic=off_topic)
        if not recs:
            self.embedded = store.computed
            return
        vectors = store.embed([embed_text(r) for r in recs], progress=ctx.progress)
        self.embedded = store.computed
        labels, centroids = _cluster(vectors, self._n_clusters(len(recs)), cfg.seed)
        duplicates = 0
        for c in range(centroids.shape[0]):
            members = np.flatnonzero(labels == c)
            for i in members:
                recs[i].flags["semantic_cluster"] = int(c)
            ranked = self._rank([recs[i] for i in members], vectors[members] @ centroids[c])
            for j, (keeper, cos) in _greedy_dedup(vectors[members[ranked]], cfg.threshold).items():
                dup, kept = recs[members[ranked[j]]], recs[members[ranked[keeper]]]
                dup.flags["semantic_duplicate_of"] = kept.id
                dup.flags["cosine"] = round(cos, 6)
                duplicates += 1
        extra.update(embedded=store.computed, clusters=int(centroids.shape[0]), duplicates=duplicates)

    def _relevance(self, records: list[Record], store: EmbeddingStore, ctx: FilterContext) -> int:
        """Score every record's instruction-answer cosine; flag the off-topic ones. Returns how many."""
        cfg = self.config
        texts = [t for r in records for t in (r.instruction, r.response)]
        vectors = store.embed(texts, progress=ctx.progress)
        flagged = 0
        for k, rec in enumerate(records):
            cos = float(vectors[2 * k] @ vectors[2 * k + 1])
            rec.scores["relevance"] = round(cos, 6)
            if cos < cfg.min_relevance and count_words_or_chars(rec.response) >= cfg.relevance_min_words:
                rec.flags["off_topic"] = True
                flagged += 1
        return flagged

    def verdict(self, record: Record) -> Verdict:
        if record.flags.get("off_topic"):
            return "off_topic", {"relevance": record.scores.get("relevance"), "min_relevance": self.config.min_relevance}
        dup = record.flags.get("semantic_duplicate_of")
        if dup is None:
            return None
        return "semantic_duplicate", {"duplicate_of": dup, "cosine": record.flags.get("cosine"), "threshold": self.config.threshold}

    def _n_clusters(self, n: int) -> int:
        k = self.config.n_clusters or math.ceil(n / self.config.cluster_size)
        return max(1, min(k, n))

    def _rank(self, members: list[Record], centroid_sim: np.ndarray) -> np.ndarray:
        """Member positions, survivors-to-be first: quality desc, centroid similarity asc, id asc."""
        key = self.config.score_key

        def priority(i: int) -> tuple[Any, ...]:
            score = members[i].scores.get(key) if key else None
            has = score is not None and not math.isnan(score)
            return (not has, -score if has else 0.0, round(float(centroid_sim[i]), 6), members[i].id)

        return np.array(sorted(range(len(members)), key=priority), dtype=np.int64)


def _cluster(vectors: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(label per row, L2-normalised centroids). One cluster needs no k-means."""
    if k == 1:
        centroids = vectors.mean(axis=0, keepdims=True)
        labels = np.zeros(len(vectors), dtype=np.int64)
    else:
        from sklearn.cluster import MiniBatchKMeans

        km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096)
        labels = km.fit_predict(vectors)
        centroids = km.cluster_centers_.astype(np.float32)
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    return labels, centroids / np.where(norms > 0, norms, 1.0)


def _greedy_dedup(vectors: np.ndarray, threshold: float) -> dict[int, tuple[int, float]]:
    """Walk rows in order; a row whose cosine with an earlier *kept* row is >= ``threshold`` is a
    duplicate. Returns ``{duplicate row: (most similar kept row, cosine)}``. Works in blocks of
    rows, so memory stays at ``block x (kept + block)`` similarities."""
    kept: list[int] = []
    dups: dict[int, tuple[int, float]] = {}
    for start in range(0, len(vectors), _BLOCK):
        block = vectors[start : start + _BLOCK]
        prior = np.asarray(kept, dtype=np.int64)
        to_prior = block @ vectors[prior].T if len(prior) else np.zeros((len(block), 0), np.float32)
        within = block @ block.T
        kept_here: list[int] = []
        for r in range(len(block)):
            best, best_cos = -1, -np.inf
            if to_prior.shape[1]:
                j = int(np.argmax(to_prior[r]))
                best, best_cos = int(prior[j]), float(to_prior[r, j])
            if kept_here:
                sims = within[r, kept_here]
                j = int(np.argmax(sims))
                if sims[j] > best_cos:
                    best, best_cos = start + kept_here[j], float(sims[j])
            if best >= 0 and best_cos >= threshold:
                dups[start + r] = (best, best_cos)
            else:
                kept_here.append(r)
        kept.extend(start + r for r in kept_here)
    return dups
