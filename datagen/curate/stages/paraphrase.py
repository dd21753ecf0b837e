"""Which benchmark item a text paraphrases, by embedding cosine.

Two engines, as the semantic stage has (:mod:`datagen.curate.dedup.semantic`):

* ``encoder``: every text and every item through the sentence encoder (all-MiniLM-L6-v2 by
  default); each text's most similar item and its cosine. Exact, and slow on a CPU.
* ``cascade``: the static model distilled from the same encoder (:mod:`datagen.score.static`)
  embeds every text and every item (vectors centred on a mean, which spreads the static model's
  crowded cosines: the mean over the items and the bundled seed tasks' texts, so that a large
  benchmark's own topic is taken out and a small one still has a reference); the items at a centred static cosine >= ``candidate_threshold``, at
  most ``top_k`` a text, are candidates, and only the texts and items of a candidate pair go
  through the encoder, whose cosine decides. A paraphrase the static model fails to propose is
  missed: docs/BENCHMARKS.md measures how often.

Encoder vectors are cached on disk (:class:`~datagen.score.embeddings.EmbeddingStore`), so an item
is encoded once whatever the number of batches, workers or runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from datagen.score.embeddings import EmbeddingStore

_ROWS = 256  # texts compared with every item at once: a (256, items) float32 block


def centred(vectors: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``vectors - mean``, rows L2-normalised (a zero row stays zero)."""
    out = vectors - mean
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)


def reference_texts() -> list[str]:
    """The bundled seed tasks' instructions and answers: everyday prompts of many kinds."""
    import json

    from datagen.core.assets import seeds_dir

    out: list[str] = []
    for line in (seeds_dir() / "175.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        out += [row["instruction"]] + [inst["output"] for inst in row["instances"]]
    return out


class ParaphraseCheck:
    """``check(texts)``: for each text, ``(item index, encoder cosine)`` of the most similar
    item (cascade: among its candidates), or None."""

    def __init__(self, items: Sequence[str], cache_dir: Path, *, engine: str, model: str, candidate_threshold: float, top_k: int,
                 batch_size: int = 64, device: str | None = None, progress: bool = False) -> None:
        self.items = list(items)
        self.engine = engine
        self.candidate_threshold = candidate_threshold
        self.top_k = top_k
        self.progress = progress
        self.store = EmbeddingStore(cache_dir, model, batch_size, device)
        self.encoded = 0  # candidate pairs the encoder decided
        if engine == "cascade":
            from datagen.score.static import static_model

            self.static: Any = static_model(cache_dir, self.store.model_path(), self.store.model_id, progress=progress)
            vectors = self.static.encode(self.items)
            self.mean = np.vstack([vectors, self.static.encode(reference_texts())]).mean(axis=0)
            self.item_vectors = centred(vectors, self.mean)
        else:
            self.item_vectors = self.store.embed(self.items, progress=progress)

    def describe(self) -> dict[str, Any]:
        return {"engine": self.engine, **self.store.describe()}

    def check(self, texts: Sequence[str]) -> list[tuple[int, float] | None]:
        if not texts:
            return []
        if self.engine == "encoder":
            vectors = self.store.embed(list(texts), progress=self.progress)
            return [(int(i), float(c)) for i, c in zip(*self._best(vectors, self.item_vectors))]
        rows, cols = self._candidates(self.static.encode(list(texts)))
        out: list[tuple[int, float] | None] = [None] * len(texts)
        if not len(rows):
            return out
        urows, ucols = np.unique(rows), np.unique(cols)
        enc = self.store.embed([texts[i] for i in urows] + [self.items[j] for j in ucols], progress=self.progress)
        a, b = enc[np.searchsorted(urows, rows)], enc[len(urows) + np.searchsorted(ucols, cols)]
        cos = np.einsum("ij,ij->i", a.astype(np.float64), b.astype(np.float64))
        self.encoded += len(rows)
        order = np.lexsort((cols, -cos, rows))  # per text: the highest cosine, then the earlier item
        first = order[np.concatenate(([True], rows[order][1:] != rows[order][:-1]))]
        for p in first.tolist():
            out[int(rows[p])] = (int(cols[p]), float(cos[p]))
        return out

    def _candidates(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(text, item) pairs at a centred static cosine >= ``candidate_threshold``, the ``top_k``
        most similar items of each text at most."""
        vectors = centred(vectors, self.mean)
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        k = min(self.top_k, len(self.items))
        for s in range(0, len(vectors), _ROWS):
            sims = vectors[s : s + _ROWS] @ self.item_vectors.T
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.tile(np.arange(sims.shape[1]), (len(sims), 1))
            r = np.repeat(np.arange(len(sims)), top.shape[1])
            c = top.ravel()
            keep = sims[r, c] >= self.candidate_threshold
            rows.append(r[keep] + s)
            cols.append(c[keep])
        return np.concatenate(rows), np.concatenate(cols)

    @staticmethod
    def _best(vectors: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        best_i = np.zeros(len(vectors), dtype=np.int64)
        best_c = np.zeros(len(vectors), dtype=np.float64)
        for s in range(0, len(vectors), _ROWS):
            sims = vectors[s : s + _ROWS].astype(np.float64) @ items.T.astype(np.float64)
            best_i[s : s + _ROWS] = sims.argmax(axis=1)
            best_c[s : s + _ROWS] = sims.max(axis=1)
        return best_i, best_c
