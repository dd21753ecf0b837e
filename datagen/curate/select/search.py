"""How the DEITA greedy (:func:`datagen.curate.select.algorithms.greedy_diverse`) finds, for a
block of candidates, the most similar record selected so far: every selected row in blocked
matrix products (:func:`exact_nearest`, the default), or a faiss HNSW graph of them
(:class:`HNSW`, ``--search hnsw``: approximate)."""

from __future__ import annotations

import numpy as np

from datagen.core.errors import UserError

_CELLS = 1 << 24  # similarities computed at once by the exact search (64 MiB of float32)


class HNSW:
    """The selected rows in a faiss HNSW graph (inner product; 32 links a node, 64 candidates a
    search): a block's nearest selected record in about log(selected) comparisons instead of one
    per selected record. Approximate: a candidate whose true nearest the graph walk misses can be
    selected at a cosine above tau (how often is measured in docs/BENCHMARKS.md); the cosine it
    reports for the neighbour it finds is exact. Rows are added in selection order on one thread,
    so the graph, and the selection, are the same on every run."""

    def __init__(self, d: int) -> None:
        try:
            import faiss
        except ImportError:  # pragma: no cover - faiss-cpu is a dependency
            raise UserError("search hnsw needs faiss: pip install faiss-cpu") from None
        self._faiss = faiss
        self.index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = 64
        self.index.hnsw.efSearch = 64

    def add(self, rows: np.ndarray) -> None:
        if len(rows):
            threads = self._faiss.omp_get_max_threads()
            self._faiss.omp_set_num_threads(1)  # the graph depends on the order of insertion
            try:
                self.index.add(np.ascontiguousarray(rows, dtype=np.float32))
            finally:
                self._faiss.omp_set_num_threads(threads)

    def nearest(self, x: np.ndarray, picked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As :func:`exact_nearest`, over the rows added so far (``picked``: the same rows)."""
        value = np.full(len(x), -np.inf, dtype=np.float64)
        rank = np.full(len(x), -1, dtype=np.int64)
        if self.index.ntotal:
            step = 1 << 16
            for a in range(0, len(x), step):
                d, i = self.index.search(np.ascontiguousarray(x[a:a + step], dtype=np.float32), 1)
                found = i[:, 0] >= 0
                rank[a:a + step][found] = i[found, 0]
                value[a:a + step][found] = d[found, 0]
        return value, rank


def exact_nearest(x: np.ndarray, picked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's max cosine to the rows of ``picked`` and the first of them achieving it (-inf
    and -1 when ``picked`` is empty): blocks of rows times ``picked``'s transpose."""
    value = np.full(len(x), -np.inf, dtype=np.float64)
    rank = np.full(len(x), -1, dtype=np.int64)
    if len(picked):
        step = max(1, _CELLS // len(picked))
        for a in range(0, len(x), step):
            sims = x[a:a + step] @ picked.T
            best = sims.argmax(axis=1)  # the first maximum: on a tie, the earlier-selected record
            rank[a:a + step] = best
            value[a:a + step] = sims[np.arange(len(best)), best]
    return value, rank
