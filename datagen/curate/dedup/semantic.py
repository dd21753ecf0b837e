"""Semantic near-duplicate removal in the style of SemDeDup (Abbas et al., 2023), without its chains.

1. Each record is embedded (:func:`~datagen.score.embeddings.embed_text`, all-MiniLM-L6-v2 by
   default; vectors are L2-normalised and cached on disk, so a rerun embeds nothing).
2. Every pair of records with cosine similarity >= ``threshold`` is found
   (:mod:`~datagen.curate.dedup.neighbors`: all pairs exactly up to 50K records, a faiss IVF
   index above that, ``search``).
3. Records are ranked: the higher ``scores[score_key]`` first (records without the score after
   those with one), then the lower id. Walking that ranking, a record with a pair among the
   records already *kept* is a duplicate of the most similar of them; any other record is kept.
   So every dropped record points at a survivor it is close to, no record goes for a chain
   (A ~ B ~ C with A !~ C keeps C when B goes), and no two survivors are at or above the threshold.

Engines (``engine``):

* ``encoder``: every record goes through the encoder; the decisions above exactly.
* ``cascade``: a static model distilled from the same encoder (:mod:`~datagen.score.static`,
  ~1,000x faster, far less exact) proposes the pairs whose static cosine is >= ``candidate_threshold``
  (vectors centred on the pool's mean, which spreads the static model's crowded cosines); only
  the records in a proposed pair go through the encoder, which decides those pairs at
  ``threshold``. A duplicate pair the static model fails to propose is missed; docs/BENCHMARKS.md
  measures how often, and the speed, against ``encoder`` on the same data.

SemDeDup states its threshold as ``1 - eps`` (eps = 0.05 here gives 0.95).

Off-topic answers (``min_relevance``): the instruction and the answer are also embedded on their
own by the encoder, and their cosine similarity is ``scores["relevance"]``. (The ``cascade``
engine with ``relevance_screen`` below 1 checks only that share of the answers, those the static
model finds least relevant; the others get no relevance score.)
``relevance_screen_tokens`` ranks the answers by the encoder instead, reading only the first word
pieces of instruction and answer (cheap, and far closer to the encoder's own ranking); those it
picks are checked whole.
An answer of at least ``relevance_min_words`` words whose relevance is below ``min_relevance``
answers something else (a misaligned pair, a fluent answer to another question) and is dropped as
``off_topic``. Short answers are not judged: a label such as "Yes" or "Bills" is far from its
question in embedding space however right it is. Off-topic records take no part in
deduplication, so a group's survivor is never one of them.

The result does not depend on the input's order. Flags: ``semantic_duplicate_of`` and ``cosine``
(the duplicates), ``semantic_duplicates`` (how many a survivor stands for), ``off_topic``. The
thresholds are applied while annotating; changing one re-searches the cached vectors without
running the model.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from datagen.core.record import Record
from datagen.core.text import count_words_or_chars
from datagen.curate.base import FilterContext, Verdict
from datagen.curate.dedup.groups import rank_keys, ranked, survivor_walk
from datagen.curate.dedup.neighbors import similar_pairs
from datagen.score.embeddings import DEFAULT_EMBED_MODEL, EmbeddingStore, embed_text

# threshold field -> (score key, "min" | "max", reason code), as the quality stage's
THRESHOLDS: dict[str, tuple[str, str, str]] = {"min_relevance": ("relevance", "min", "off_topic")}
_FLAGS = ("semantic_cluster", "semantic_duplicate_of", "semantic_duplicates", "cosine", "off_topic")


class SemanticConfig(BaseModel):
    """Settings of :class:`SemanticDedup`."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.95, gt=0, le=1, description="cosine similarity at or above which two records are duplicates (SemDeDup's 1 - eps)")
    engine: Literal["encoder", "cascade"] = Field("encoder", description="encoder: every record through the encoder; cascade: a static model proposes pairs, the encoder decides them")
    candidate_threshold: float = Field(0.7, ge=-1, le=1, description="cascade: centred static cosine at or above which a pair goes to the encoder")
    search: Literal["auto", "exact", "ivf"] = Field("auto", description="pair search: exact (all pairs), ivf (faiss index), auto: exact up to 50K records")
    n_clusters: int | None = Field(None, ge=1, description="ivf search: index cells; default ceil(n / cluster_size)")
    cluster_size: int = Field(1000, ge=1, description="ivf search: target records per cell when n_clusters is not set")
    nprobe: int = Field(8, ge=1, description="ivf search: cells each record looks in")
    batch_size: int = Field(64, ge=1, description="texts per embedding batch")
    model: str = Field(DEFAULT_EMBED_MODEL, description="embedding model: all-MiniLM-L6-v2 or a local sentence-transformers folder")
    seed: int = 0
    score_key: str | None = Field("judge", description="record.scores key whose higher value survives a duplicate group; None: lowest id")
    min_relevance: float | None = Field(0.1, ge=-1, le=1, description="instruction-answer cosine below which an answer is off_topic; None: not checked")
    relevance_min_words: int = Field(8, ge=0, description="answers shorter than this (words, CJK characters one each) are not checked for relevance")
    relevance_screen: float = Field(1.0, gt=0, le=1, description="cascade: the share of answers, least relevant by the static model first, whose relevance the encoder checks; 1: every answer")
    relevance_screen_tokens: int | None = Field(None, ge=1, description="relevance_screen below 1: rank the answers by the encoder reading this many word pieces of instruction and answer instead of by the static model")
    device: str | None = None

    @model_validator(mode="after")
    def _screen_needs_the_cascade(self) -> "SemanticConfig":
        if self.relevance_screen < 1 and self.engine != "cascade":
            raise ValueError("relevance_screen below 1 needs engine: cascade (the static model picks the answers to check)")
        if self.relevance_screen_tokens is not None and self.relevance_screen == 1:
            raise ValueError("relevance_screen_tokens ranks the answers for relevance_screen below 1, which is not set")
        return self


class SemanticDedup:
    """Flags semantic near-duplicates (see the module docstring); ``verdict`` drops them."""

    name = "semantic"
    score_names: tuple[str, ...] = ("relevance",)

    def __init__(self, config: SemanticConfig | None = None, **overrides: Any) -> None:
        self.config = SemanticConfig.model_validate({**(config.model_dump() if config else {}), **overrides})
        self.embedded = 0  # texts the last annotate sent through the model (cache misses)
        self._static_model: tuple[tuple[str, str], Any] | None = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump()}

    def annotate(self, records: list[Record], ctx: FilterContext) -> None:
        self.embedded = 0
        for rec in records:
            for key in _FLAGS:
                rec.flags.pop(key, None)
            rec.scores.pop("relevance", None)
        if not records:
            return
        cfg = self.config
        store = EmbeddingStore(ctx.cache_dir, cfg.model, cfg.batch_size, cfg.device)
        off_topic = self._relevance(records, store, ctx) if cfg.min_relevance is not None else 0
        recs = sorted((r for r in records if "off_topic" not in r.flags), key=lambda r: r.id)
        extra = ctx.stats.extra.setdefault("semantic", {})
        extra.update(off_topic=off_topic, engine=cfg.engine)
        if cfg.engine == "cascade":
            a, b, vectors = self._cascade(recs, store, ctx, extra)
        else:
            vectors = store.embed([embed_text(r) for r in recs], progress=ctx.progress)
            a, b, _ = self._pairs(vectors, cfg.threshold, ctx)
        self.embedded += store.computed
        # one cosine for a pair whichever search found it (float64), and the threshold on it
        cos = np.einsum("ij,ij->i", vectors[a].astype(np.float64), vectors[b].astype(np.float64)) if len(a) else np.zeros(0)
        keep = cos >= cfg.threshold
        a, b, cos = a[keep], b[keep], cos[keep]
        place = np.empty(len(recs), dtype=np.int64)  # the walk: quality desc, then id (recs are in id order)
        place[ranked(rank_keys(recs, cfg.score_key), np.arange(len(recs)))] = np.arange(len(recs))
        dups = survivor_walk(place, a, b, cos)
        for j, (keeper, c) in dups.items():
            recs[j].flags["semantic_duplicate_of"] = recs[keeper].id
            recs[j].flags["cosine"] = round(c, 6)
        for keeper, n in Counter(k for k, _ in dups.values()).items():
            recs[keeper].flags["semantic_duplicates"] = n
        extra.update(embedded=self.embedded, pairs=int(len(a)), duplicates=len(dups))

    def _pairs(self, vectors: np.ndarray, threshold: float, ctx: FilterContext, desc: str = "semantic pairs") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cfg = self.config
        lists = cfg.n_clusters or math.ceil(len(vectors) / cfg.cluster_size)
        return similar_pairs(vectors, threshold, cfg.search, lists, cfg.nprobe, cfg.seed, ctx.progress, desc)

    def _static(self, store: EmbeddingStore, ctx: FilterContext) -> Any:
        """The static model, loaded (or distilled) once for both of its uses in a run."""
        from datagen.score.static import static_model

        key = (str(ctx.cache_dir), store.model_id)
        if self._static_model is None or self._static_model[0] != key:
            self._static_model = (key, static_model(ctx.cache_dir, store.model_path(), store.model_id, progress=ctx.progress))
        return self._static_model[1]

    def _cascade(self, recs: list[Record], store: EmbeddingStore, ctx: FilterContext, extra: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pairs the static model proposes, and the encoder's vectors of the records in them
        (zero rows for the others)."""
        cfg = self.config
        vectors = _centred(self._static(store, ctx).encode([embed_text(r) for r in recs]))
        a, b, _ = self._pairs(vectors, cfg.candidate_threshold, ctx, "semantic candidates")
        involved = np.unique(np.concatenate([a, b]))
        extra.update(candidate_pairs=int(len(a)), candidate_records=int(len(involved)))
        encoded = np.zeros((len(recs), 0), dtype=np.float32)
        if len(involved):
            enc = store.embed([embed_text(recs[i]) for i in involved], progress=ctx.progress)
            encoded = np.zeros((len(recs), enc.shape[1]), dtype=np.float32)
            encoded[involved] = enc
        return a, b, encoded

    def _relevance(self, records: list[Record], store: EmbeddingStore, ctx: FilterContext) -> int:
        """Score the instruction-answer cosine of every record (the ``cascade`` engine with
        ``relevance_screen < 1``: of that share of the answers long enough to judge, the least
        relevant by the static model); flag the off-topic ones. Returns how many."""
        cfg = self.config
        judged = [k for k, r in enumerate(records) if count_words_or_chars(r.response) >= cfg.relevance_min_words]
        check: list[int] = list(range(len(records)))
        if cfg.engine == "cascade" and cfg.relevance_screen < 1:
            rel = self._screen(records, judged, store, ctx)
            take = math.ceil(cfg.relevance_screen * len(judged))
            check = sorted(judged[i] for i in np.argsort(rel, kind="stable")[:take])
        ctx.stats.extra.setdefault("semantic", {})["relevance_checked"] = len(check)
        vectors = store.embed([t for k in check for t in (records[k].instruction, records[k].response)], progress=ctx.progress)
        long_enough = set(judged)
        flagged = 0
        for n, k in enumerate(check):
            cos = float(vectors[2 * n] @ vectors[2 * n + 1])
            records[k].scores["relevance"] = round(cos, 6)
            if cos < cfg.min_relevance and k in long_enough:
                records[k].flags["off_topic"] = True
                flagged += 1
        return flagged

    def _screen(self, records: list[Record], judged: list[int], store: EmbeddingStore, ctx: FilterContext) -> np.ndarray:
        """The screen's relevance of each ``judged`` record: the static model's centred cosine, or
        the encoder's over the first ``relevance_screen_tokens`` word pieces."""
        cfg = self.config
        if cfg.relevance_screen_tokens is None:
            static = self._static(store, ctx)
            return np.einsum("ij,ij->i", _centred(static.encode([records[k].instruction for k in judged])),
                             _centred(static.encode([records[k].response for k in judged])))
        cut = store.truncated(cfg.relevance_screen_tokens)
        vectors = cut.embed([t for k in judged for t in (records[k].instruction, records[k].response)], progress=ctx.progress)
        self.embedded += cut.computed if cut is not store else 0
        return np.einsum("ij,ij->i", vectors[0::2], vectors[1::2]) if len(judged) else np.zeros(0)

    def verdict(self, record: Record) -> Verdict:
        if record.flags.get("off_topic"):
            return "off_topic", {"relevance": record.scores.get("relevance"), "min_relevance": self.config.min_relevance}
        dup = record.flags.get("semantic_duplicate_of")
        if dup is None:
            return None
        return "semantic_duplicate", {"duplicate_of": dup, "cosine": record.flags.get("cosine"), "threshold": self.config.threshold}


def _centred(vectors: np.ndarray) -> np.ndarray:
    """Static vectors less their mean, L2-normalised: the direction every static vector shares
    crowds their cosines near 1; without it they spread as the encoder's do."""
    if len(vectors):
        vectors = vectors - vectors.mean(axis=0)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.where(norms > 0, norms, 1.0)
    return vectors
