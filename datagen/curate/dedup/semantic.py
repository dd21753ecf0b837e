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
from typing import Any, Literal, Sequence

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from datagen.core.actors import ActorResources
from datagen.core.record import Record
from datagen.core.text import count_words_or_chars
from datagen.curate.base import FilterContext, Verdict
from datagen.curate.dedup.groups import Fetch, id_hex, rank_keys, ranked, survivor_walk
from datagen.curate.dedup.neighbors import similar_pairs
from datagen.curate.dedup.vectors import CHUNK, Encoder, Texts, digests, static_encode
from datagen.score.embeddings import DEFAULT_EMBED_MODEL, EmbeddingStore

# threshold field -> (score key, "min" | "max", reason code), as the quality stage's
THRESHOLDS: dict[str, tuple[str, str, str]] = {"min_relevance": ("relevance", "min", "off_topic")}
_FLAGS = ("semantic_cluster", "semantic_duplicate_of", "semantic_duplicates", "cosine", "off_topic")


class SemanticConfig(ActorResources):
    """Settings of :class:`SemanticDedup` (``num_cpus``, ``num_gpus``, ``actors``: its encoder
    actors under ``--executor ray``)."""

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
    """Flags semantic near-duplicates (see the module docstring); ``verdict`` drops them.

    A keyed stage (:mod:`datagen.curate.shards`): ``keys`` are each record's rank, the cache keys
    and lengths of the texts it embeds (3 x 40 bytes) and whether its answer is long enough to
    judge; ``decide`` reads back the texts the cache lacks (by byte offset, a chunk at a time),
    has them embedded (here, or by encoder actors on Ray), and holds only the vectors: a
    ``(records, 384)`` float32 matrix for the pair search, never a text. ``annotate`` over a list
    is the same code."""

    name = "semantic"
    streaming = "keys"
    wants_offsets = True  # its decision reads some records again: by byte offset, not by a pass
    uses_context = True  # its decision needs the cache, the progress setting and the executor
    score_names: tuple[str, ...] = ("relevance",)

    def __init__(self, config: SemanticConfig | None = None, **overrides: Any) -> None:
        self.config = SemanticConfig.model_validate({**(config.model_dump() if config else {}), **overrides})
        self.embedded = 0  # texts the last annotate sent through the model (cache misses)
        self._static_model: tuple[tuple[str, str], Any] | None = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.settings()}

    # -- keys, decide, apply: the stage over records on disk, or over a list ------------------
    def keys(self, records: Sequence[Any]) -> dict[str, np.ndarray]:
        instructions = [r.instruction for r in records]
        responses = [r.response for r in records]
        return {
            **rank_keys(records, self.config.score_key),
            "instruction": digests(instructions), "response": digests(responses),
            "text": digests(i + "\n\n" + a for i, a in zip(instructions, responses)),  # embed_text's
            "instruction_len": np.array([len(t) for t in instructions], dtype=np.int64),
            "response_len": np.array([len(t) for t in responses], dtype=np.int64),
            "judged": np.array([count_words_or_chars(t) >= self.config.relevance_min_words for t in responses], dtype=bool),
        }

    def fetch_view(self, record: Any) -> tuple[str, str]:
        return record.instruction, record.response

    def stale(self, record: Any) -> bool:
        """Whether ``record`` holds what an earlier run of this stage wrote (it is rewritten)."""
        return "relevance" in record.scores or any(k in record.flags for k in _FLAGS)

    def apply_decision(self, rec: Record, decision: dict[str, Any] | None) -> None:
        for key in _FLAGS:
            rec.flags.pop(key, None)
        rec.scores.pop("relevance", None)
        for key, value in (decision or {}).items():
            if key == "relevance":
                rec.scores[key] = value
            else:
                rec.flags[key] = value

    def annotate(self, records: list[Record], ctx: FilterContext) -> None:
        if not records:
            return
        decisions = self.decide(self.keys(records), lambda at: {int(i): self.fetch_view(records[i]) for i in at},
                                ctx.stats.extra.setdefault("semantic", {}), ctx=ctx)
        for i, rec in enumerate(records):
            self.apply_decision(rec, decisions.get(i))

    def decide(self, keys: dict[str, np.ndarray], fetch: Fetch, stats: dict[str, Any], ctx: FilterContext) -> dict[int, dict[str, Any]]:
        """What this stage writes into each record, by index (see :meth:`apply_decision`)."""
        cfg = self.config
        store = EmbeddingStore(ctx.cache_dir, cfg.model, cfg.batch_size, cfg.device)
        self.embedded = 0
        encode = Encoder(ctx.executor, store, cfg)
        try:
            out: dict[int, dict[str, Any]] = {}
            off = self._relevance(keys, fetch, store, encode, ctx, out, stats) if cfg.min_relevance is not None else np.zeros(len(keys["id"]), dtype=bool)
            members = np.flatnonzero(~off)
            order = members[np.lexsort((members, keys["id"][members]))]  # by id, as the walk's tie-break (and the cache) expect
            stats.update(off_topic=int(off.sum()), engine=cfg.engine)
            texts = Texts(keys, fetch, order, "text")
            if cfg.engine == "cascade":
                a, b, vectors = self._cascade(texts, store, encode, ctx, stats)
            else:
                store.fill(texts.keys, texts.lengths, texts, ctx.progress, encode)
                vectors = store.vectors(texts.keys)
                a, b, _ = self._pairs(vectors, cfg.threshold, ctx)
        finally:
            encode.close()
        self.embedded += store.computed
        # one cosine for a pair whichever search found it (float64), and the threshold on it
        cos = np.einsum("ij,ij->i", vectors[a].astype(np.float64), vectors[b].astype(np.float64)) if len(a) else np.zeros(0)
        keep = cos >= cfg.threshold
        a, b, cos = a[keep], b[keep], cos[keep]
        rank = {k: keys[k][order] for k in ("has_score", "score", "id")}
        place = np.empty(len(order), dtype=np.int64)  # the walk: quality desc, then id
        place[ranked(rank, np.arange(len(order)))] = np.arange(len(order))
        dups = survivor_walk(place, a, b, cos)
        for j, (keeper, c) in dups.items():
            out.setdefault(int(order[j]), {}).update(semantic_duplicate_of=id_hex(keys, int(order[keeper])), cosine=round(c, 6))
        for keeper, n in Counter(k for k, _ in dups.values()).items():
            out.setdefault(int(order[keeper]), {})["semantic_duplicates"] = n
        stats.update(embedded=self.embedded, pairs=int(len(a)), duplicates=len(dups))
        return out

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

    def _cascade(self, texts: Texts, store: EmbeddingStore, encode: Encoder, ctx: FilterContext,
                 stats: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pairs the static model proposes, and the encoder's vectors of the records in them
        (zero rows for the others)."""
        cfg = self.config
        vectors = _centred(static_encode(self._static(store, ctx), texts))
        a, b, _ = self._pairs(vectors, cfg.candidate_threshold, ctx, "semantic candidates")
        involved = np.unique(np.concatenate([a, b]))
        stats.update(candidate_pairs=int(len(a)), candidate_records=int(len(involved)))
        encoded = np.zeros((len(vectors), 0), dtype=np.float32)
        if len(involved):
            sub = texts.subset(involved)
            store.fill(sub.keys, sub.lengths, sub, ctx.progress, encode)
            enc = store.vectors(sub.keys)
            encoded = np.zeros((len(vectors), enc.shape[1]), dtype=np.float32)
            encoded[involved] = enc
        return a, b, encoded

    def _relevance(self, keys: dict[str, np.ndarray], fetch: Fetch, store: EmbeddingStore, encode: Encoder, ctx: FilterContext,
                   out: dict[int, dict[str, Any]], stats: dict[str, Any]) -> np.ndarray:
        """Score the instruction-answer cosine of every record (the ``cascade`` engine with
        ``relevance_screen < 1``: of that share of the answers long enough to judge, the least
        relevant by the static model) into ``out``; returns which records are off topic."""
        cfg = self.config
        n = len(keys["id"])
        judged = np.flatnonzero(keys["judged"])
        check = np.arange(n)
        if cfg.engine == "cascade" and cfg.relevance_screen < 1:
            rel = self._screen(keys, fetch, judged, store, ctx)
            take = math.ceil(cfg.relevance_screen * len(judged))
            check = np.sort(judged[np.argsort(rel, kind="stable")[:take]])
        stats["relevance_checked"] = len(check)
        pairs = Texts(keys, fetch, np.repeat(check, 2), np.tile(np.array(["instruction", "response"]), len(check)))
        store.fill(pairs.keys, pairs.lengths, pairs, ctx.progress, encode)
        off = np.zeros(n, dtype=bool)
        for start in range(0, len(check), CHUNK):
            vectors = store.vectors(pairs.keys[2 * start : 2 * (start + CHUNK)])
            for m, k in enumerate(check[start : start + CHUNK].tolist()):
                cos = float(vectors[2 * m] @ vectors[2 * m + 1])
                out[k] = {"relevance": round(cos, 6)}
                if cos < cfg.min_relevance and keys["judged"][k]:
                    out[k]["off_topic"] = True
                    off[k] = True
        return off

    def _screen(self, keys: dict[str, np.ndarray], fetch: Fetch, judged: np.ndarray, store: EmbeddingStore, ctx: FilterContext) -> np.ndarray:
        """The screen's relevance of each ``judged`` record: the static model's centred cosine, or
        the encoder's over the first ``relevance_screen_tokens`` word pieces (its own cache)."""
        cfg = self.config
        if cfg.relevance_screen_tokens is None:
            static = self._static(store, ctx)
            return np.einsum("ij,ij->i", _centred(static_encode(static, Texts(keys, fetch, judged, "instruction"))),
                             _centred(static_encode(static, Texts(keys, fetch, judged, "response"))))
        cut = store.truncated(cfg.relevance_screen_tokens)
        pairs = Texts(keys, fetch, np.repeat(judged, 2), np.tile(np.array(["instruction", "response"]), len(judged)))
        encode = Encoder(ctx.executor, cut, cfg)
        try:
            cut.fill(pairs.keys, pairs.lengths, pairs, ctx.progress, encode)
        finally:
            encode.close()
        self.embedded += cut.computed
        rel = np.zeros(len(judged))
        for start in range(0, len(judged), CHUNK):
            vectors = cut.vectors(pairs.keys[2 * start : 2 * (start + CHUNK)])
            rel[start : start + len(vectors) // 2] = np.einsum("ij,ij->i", vectors[0::2], vectors[1::2])
        return rel

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
