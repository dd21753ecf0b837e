"""MinHash signatures of many shingle sets at once, from two engines.

Both take the shingle hashes of :mod:`datagen.curate.dedup.shingles` (sorted unique uint64 arrays)
and return a ``(docs, num_perm)`` uint32 matrix.

* ``datasketch``: datasketch's own MinHash (scheme ``affine32``: murmur3 ``fmix32`` premix, then
  the affine permutations ``a * h + b mod 2**32`` that ``MinHash(num_perm, seed)`` draws),
  applied to a whole batch with numpy: one ``(shingles, num_perm)`` product and a
  ``minimum.reduceat`` over document boundaries. Each row equals what
  ``MinHash(..., hashfunc=identity).update_batch(low32(hashes))`` gives, so rows can be wrapped
  as ``LeanMinHash`` (a test checks the equality).
* ``rensa``: ``RMinHash.digest_matrix_from_flat_token_hashes`` (Rust), fed the same 64-bit hashes.
  Different permutations, hence different signatures, but the same estimator; the LSH index and the
  exact verification downstream are shared.

``auto`` means datasketch. It would mean "rensa when installed", but the two engines draw
different permutations, so near the threshold (Jaccard 0.7-0.8, where the default banding detects
a pair with probability 0.79-0.98) each misses a few *different* pairs: on the bench corpus
(``bench/dedup.py``) both find every pair at or above 0.8, yet 30 of 5,555 records are decided
differently. A run's output must not depend on whether an optional package happens to be
installed, so rensa is used only when asked for (``--minhash-engine rensa``).
"""

from __future__ import annotations

import importlib.util
from typing import Iterator, Sequence

import numpy as np

from datagen.curate.dedup.shingles import FMIX32, fmix

ENGINES = ("auto", "datasketch", "rensa")
_BATCH_CELLS = 1 << 18  # shingles x num_perm per numpy product (1 MiB of uint32: stays in cache)


def rensa_available() -> bool:
    return importlib.util.find_spec("rensa") is not None


def resolve_engine(engine: str) -> str:
    """The engine that will run: ``auto`` is datasketch (see the module docstring)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown MinHash engine {engine!r}; expected one of {', '.join(ENGINES)}")
    if engine == "auto":
        return "datasketch"
    if engine == "rensa" and not rensa_available():
        from datagen.core.errors import UserError

        raise UserError("MinHash engine 'rensa' is not installed; pip install 'datagen-train[fast]' or use --minhash-engine datasketch")
    return engine


def low32(hashes: np.ndarray) -> np.ndarray:
    """The 32-bit token values the datasketch engine hashes (high and low halves folded)."""
    return ((hashes >> np.uint64(32)) ^ hashes).astype(np.uint32)


def _batches(sets: Sequence[np.ndarray], num_perm: int) -> Iterator[tuple[int, int]]:
    start, cells = 0, 0
    for i, s in enumerate(sets):
        cells += len(s) * num_perm
        if cells >= _BATCH_CELLS:
            yield start, i + 1
            start, cells = i + 1, 0
    if start < len(sets):
        yield start, len(sets)


def datasketch_permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def signatures_datasketch(sets: Sequence[np.ndarray], num_perm: int, seed: int) -> np.ndarray:
    a, b = datasketch_permutations(num_perm, seed)
    out = np.empty((len(sets), num_perm), dtype=np.uint32)
    with np.errstate(over="ignore"):
        for lo, hi in _batches(sets, num_perm):
            chunk = sets[lo:hi]
            flat = fmix(low32(np.concatenate(chunk)), FMIX32)
            starts = np.cumsum([0] + [len(s) for s in chunk[:-1]])
            phv = np.multiply.outer(flat, a)
            phv += b
            out[lo:hi] = np.minimum.reduceat(phv, starts, axis=0)
    return out


def signatures_rensa(sets: Sequence[np.ndarray], num_perm: int, seed: int) -> np.ndarray:
    from rensa import RMinHash

    out = np.empty((len(sets), num_perm), dtype=np.uint32)
    for lo, hi in _batches(sets, num_perm):
        chunk = sets[lo:hi]
        offsets = np.cumsum([0] + [len(s) for s in chunk]).astype(np.uint64)
        m = RMinHash.digest_matrix_from_flat_token_hashes(np.concatenate(chunk), offsets, num_perm, seed)
        out[lo:hi] = np.asarray(m.to_rows(), dtype=np.uint32)
    return out


def signatures(sets: Sequence[np.ndarray], num_perm: int, seed: int, engine: str) -> np.ndarray:
    """``(len(sets), num_perm)`` uint32 MinHash signatures from ``engine`` (resolved)."""
    if not sets:
        return np.empty((0, num_perm), dtype=np.uint32)
    if resolve_engine(engine) == "rensa":
        return signatures_rensa(sets, num_perm, seed)
    return signatures_datasketch(sets, num_perm, seed)
