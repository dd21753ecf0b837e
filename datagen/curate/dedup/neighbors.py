"""Every pair of rows whose cosine similarity is at least a threshold.

Two searches, one answer shape (``(a, b, cosine)`` arrays with ``a < b``, sorted):

* ``exact``: all pairs, by blocks of rows against the rows before them (``block x n`` similarities
  in memory at a time). ``n^2 d / 2`` multiply-adds: seconds at 20K rows, a minute at 100K on
  two cores, so it is the default up to :data:`EXACT_MAX` rows, where nothing is missed.
* ``ivf``: faiss's inverted-file index (``IndexIVFFlat``, inner product): the rows are split into
  ``lists`` k-means cells, each row looks at the ``nprobe`` cells nearest to it and keeps every
  row there at or above the threshold (a range search). A pair is missed only when neither row's
  probed cells hold the other, which for near-duplicates (cosine >= 0.9) is rare: the
  measured recall is in docs/BENCHMARKS.md. Each pair is found from both ends and kept once.

A k-means split that compares rows inside one cluster only (``nprobe = 1``, SemDeDup's
approximation) is the ``ivf`` search at its cheapest; it leaves pairs that straddle two cells.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

EXACT_MAX = 50_000  # rows up to which ``auto`` compares all pairs
_CELLS = 1 << 25  # similarities computed at once by the exact search (128 MiB of float32)
Search = Literal["auto", "exact", "ivf"]


def similar_pairs(vectors: np.ndarray, threshold: float, search: Search = "auto", lists: int | None = None,
                  nprobe: int = 8, seed: int = 0, progress: bool = True, desc: str = "neighbours") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, cos)``: the pairs of rows of ``vectors`` (L2-normalised float32) with cosine >=
    ``threshold``, ``a < b``, sorted by ``(a, b)``. ``lists``: the IVF cells (default ``sqrt(n)*4``,
    at most ``n / 39``, faiss's minimum points per centroid)."""
    n = len(vectors)
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if search == "exact" or (search == "auto" and n <= EXACT_MAX):
        return _exact(vectors, threshold, progress, desc)
    return _ivf(vectors, threshold, lists, nprobe, seed, progress, desc)


def _exact(vectors: np.ndarray, threshold: float, progress: bool, desc: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from datagen.core.progress import bar

    n = len(vectors)
    block = max(16, _CELLS // n)
    found_a, found_b, found_c = [], [], []
    with bar(n, f"{desc} (exact)", "row", show=progress) as pbar:
        for start in range(0, n, block):
            stop = min(n, start + block)
            sims = vectors[start:stop] @ vectors[:stop].T  # rows against every row up to them
            rows, cols = np.nonzero(sims >= threshold)
            keep = cols < rows + start  # earlier rows only: each pair once, no self-pairs
            found_a.append(cols[keep])
            found_b.append(rows[keep] + start)
            found_c.append(sims[rows[keep], cols[keep]])
            pbar.update(stop - start)
    return _sorted(np.concatenate(found_a), np.concatenate(found_b), np.concatenate(found_c))


def _ivf(vectors: np.ndarray, threshold: float, lists: int | None, nprobe: int, seed: int, progress: bool, desc: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import faiss

    from datagen.core.progress import bar

    n, d = vectors.shape
    lists = max(1, min(lists or int(4 * math.sqrt(n)), n // 39 or 1))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(vectors)
    index.add(vectors)
    index.nprobe = min(nprobe, lists)
    radius = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))  # faiss keeps sim > radius
    found_a, found_b, found_c = [], [], []
    block = 4096
    with bar(n, f"{desc} (ivf, {lists} lists, nprobe {index.nprobe})", "row", show=progress) as pbar:
        for start in range(0, n, block):
            stop = min(n, start + block)
            lims, sims, ids = index.range_search(vectors[start:stop], radius)
            rows = np.repeat(np.arange(start, stop), np.diff(lims.astype(np.int64)))
            ids = ids.astype(np.int64)
            keep = (ids != rows) & (sims >= threshold)
            a, b = np.minimum(rows, ids)[keep], np.maximum(rows, ids)[keep]
            found_a.append(a)
            found_b.append(b)
            found_c.append(sims[keep])
            pbar.update(stop - start)
    a, b, c = np.concatenate(found_a), np.concatenate(found_b), np.concatenate(found_c)
    _, first = np.unique(a * n + b, return_index=True)  # a pair found from both ends, once
    return _sorted(a[first], b[first], c[first])


def _sorted(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.lexsort((b, a))
    return a[order].astype(np.int64), b[order].astype(np.int64), c[order].astype(np.float32)
