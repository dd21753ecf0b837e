"""What the semantic stage embeds, without holding it: texts named by record index and read back
on demand (:class:`Texts`), their embedding-cache keys as raw bytes (:func:`digests`), the static
model over them a chunk at a time, and where the encoder runs (:class:`Encoder`: this process, or
a pool of Ray actors that each load it once)."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from datagen.core.actors import ActorResources, on_ray
from datagen.core.kvcache import sha_key
from datagen.curate.dedup.groups import Fetch
from datagen.score.embeddings import EmbeddingStore

CHUNK = 4096  # records whose texts or vectors are read back at a time


def digests(texts: Iterable[str]) -> np.ndarray:
    """The embedding cache's keys (:func:`sha_key`) of ``texts``, as rows of 32 bytes."""
    return np.frombuffer(b"".join(bytes.fromhex(sha_key(t)) for t in texts), dtype=np.uint8).reshape(-1, 32)


class Texts:
    """Texts of records named by index (``rows``), of one kind each (``instruction``,
    ``response``, ``text``: embed_text's), with their cache keys and lengths; called with
    positions among them, it fetches those records' texts (the embedding's ``fill`` asks a chunk
    at a time)."""

    def __init__(self, keys: dict[str, np.ndarray], fetch: Fetch, rows: np.ndarray, kinds: str | np.ndarray) -> None:
        self.source, self.fetch, self.rows = keys, fetch, np.asarray(rows, dtype=np.int64)
        self.kinds = np.broadcast_to(np.asarray(kinds), self.rows.shape)
        self.keys = [keys[k][r].tobytes().hex() for r, k in zip(self.rows.tolist(), self.kinds.tolist())]
        il, rl = keys["instruction_len"][self.rows], keys["response_len"][self.rows]
        self.lengths = np.where(self.kinds == "instruction", il, np.where(self.kinds == "response", rl, il + rl + 2)).tolist()

    def subset(self, positions: np.ndarray) -> Texts:
        return Texts(self.source, self.fetch, self.rows[positions], self.kinds[positions])

    def __len__(self) -> int:
        return len(self.rows)

    def __call__(self, positions: Sequence[int]) -> list[str]:
        rows = self.rows[list(positions)]
        got = self.fetch(np.unique(rows))
        out = []
        for r, kind in zip(rows.tolist(), self.kinds[list(positions)].tolist()):
            instruction, response = got[r]
            out.append(instruction if kind == "instruction" else response if kind == "response" else instruction + "\n\n" + response)
        return out


def static_encode(static: Any, texts: Texts) -> np.ndarray:
    """The static model's vectors of ``texts``, read a chunk at a time."""
    out = np.zeros((len(texts), static.dims), dtype=np.float32)
    for start in range(0, len(texts), CHUNK):
        out[start : start + CHUNK] = static.encode(texts(range(start, min(start + CHUNK, len(texts)))))
    return out


class Encoder:
    """Where the encoder runs: in this process (None: the store's own), or, on a Ray executor, in
    a pool of actors that each load it once (started at the first batch: a run whose vectors are
    all cached starts none)."""

    def __init__(self, executor: Any, store: EmbeddingStore, resources: ActorResources, what: str = "semantic") -> None:
        self.pool = resources.pool(executor, store.spec().build, what) if on_ray(executor) else None

    def __bool__(self) -> bool:
        return self.pool is not None

    def __call__(self, batches: list[list[str]]) -> list[np.ndarray]:
        return list(self.pool.map(_encode_batch, batches))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


def _encode_batch(encoder: EmbeddingStore, texts: list[str]) -> np.ndarray:
    return encoder.encode_batch(texts)
