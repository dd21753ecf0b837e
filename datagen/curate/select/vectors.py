"""The embedding matrix ``datagen select`` selects over: every screened record's vector from the
shared embedding cache (looked up without loading a model), and those the cache lacks embedded
from the texts read back out of the pool's file, by this process or by Ray actors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    from datagen.curate.select.pool import Pool

_LOOKUP = 50_000  # cache keys looked up at once
_MISSES = 64 * 1024  # texts read back and embedded at once (up to it: the batches of one embed() call)


def embeddings_for(pool: Pool, rows: np.ndarray, model: str, cache_dir: Path, allow_compute: bool, device: str | None, batch_size: int,
                   encoder: Callable[[Any], Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Embeddings of the records at ``rows`` of ``pool`` (float32, L2-normalised) and a note of
    how many were cached or computed. A full cache hit never loads the model; the texts of the
    others are read back from the pool's file, a chunk at a time, and embedded by this process or
    by ``encoder(store)`` (an ``encode`` for :meth:`EmbeddingStore.fill`: a pool of Ray actors)."""
    from datagen.core.errors import UserError
    from datagen.score.embeddings import EmbeddingStore

    store = EmbeddingStore(cache_dir, model=model, batch_size=batch_size, device=device)
    emb = _Matrix(len(rows))
    missing: list[int] = []
    for a in range(0, len(rows), _LOOKUP):
        keys = [pool.key(r) for r in rows[a:a + _LOOKUP]]
        found = store.cache.get_many(keys)
        for j, k in enumerate(keys):
            if k in found:
                emb.put(a + j, found[k])
            else:
                missing.append(a + j)
    if missing:
        if not allow_compute:
            raise UserError(
                f"some of the {len(rows)} records have no cached {model} embedding under {cache_dir}; "
                "run datagen filter with the same --cache-dir first, or drop --no-embed to compute them"
            )
        print(f"select: embedding the records missing from the cache ({model}, {cache_dir})", file=sys.stderr)
        _compute(pool, rows, missing, store, emb, encoder)
        print(f"select: computed {store.computed} of {len(rows)} embeddings", file=sys.stderr)
    note = {"model": model, "model_id": store.model_id, "cache_dir": str(cache_dir), "cached": len(rows) - store.computed, "computed": store.computed}
    return emb.array, note


def _compute(pool: Pool, rows: np.ndarray, missing: list[int], store: Any, emb: _Matrix, encoder: Callable[[Any], Any] | None) -> None:
    from datagen.core.progress import progress_enabled
    from datagen.core.record import RecordView
    from datagen.score.embeddings import embed_text

    encode = encoder(store) if encoder is not None else None
    done: dict[str, int] = {}  # key -> a row of ``emb`` that holds it
    try:
        with open(pool.path, "rb") as f:
            for a in range(0, len(missing), _MISSES):
                texts: dict[str, str] = {}
                for j in missing[a:a + _MISSES]:
                    k = pool.key(rows[j])
                    if k not in done and k not in texts:
                        texts[k] = embed_text(RecordView(pool.line(f, rows[j])))
                keys, values = list(texts), list(texts.values())
                vecs = store.fill(keys, [len(t) for t in values], lambda at: [values[i] for i in at], progress_enabled(),
                                  encode=encode, found=())
                for j in missing[a:a + _MISSES]:
                    k = pool.key(rows[j])
                    if k in vecs:
                        emb.put(j, vecs[k])
                        done[k] = j
                    else:
                        emb.array[j] = emb.array[done[k]]
    finally:
        if encode is not None and hasattr(encode, "close"):
            encode.close()


class _Matrix:
    """The embedding matrix, allocated when its first vector (and so its width) is known."""

    def __init__(self, n: int) -> None:
        import numpy as np

        self.n = n
        self.array = np.zeros((n, 0), dtype=np.float32)

    def put(self, i: int, blob: bytes) -> None:
        import numpy as np

        v = np.frombuffer(blob, dtype=np.float32)
        if self.array.shape[1] == 0:
            self.array = np.zeros((self.n, len(v)), dtype=np.float32)
        elif self.array.shape[1] != len(v):
            from datagen.core.errors import UserError

            raise UserError(f"the embedding cache holds vectors of {self.array.shape[1]} and of {len(v)} dimensions for one model: "
                            "remove its folder under --cache-dir/embeddings and run again")
        self.array[i] = v
