"""Shingles for near-duplicate detection, as sorted arrays of 64-bit hashes.

A text is tokenized with :func:`datagen.core.text.tokens`: words (lowercased letters and digits) in
space-delimited scripts and single characters in CJK and other unspaced scripts, so the n-grams
are word n-grams in English and character n-grams in Chinese (mixed text gets both). Each token is
hashed with xxh64; an n-gram's hash mixes its tokens' hashes (a polynomial over 64-bit words,
then the murmur3 finalizer), computed for all n-grams of a text at once with numpy. A text shorter
than ``n`` tokens yields one shingle for the whole text, and a text with no tokens at all one
shingle for its stripped characters, so a shingle set is never empty.

The Jaccard similarity of two texts is the Jaccard of these hash sets: with 64-bit hashes a
collision between distinct shingles of a corpus of millions is vanishingly unlikely (~n^2/2^65),
so it is exact for all practical purposes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import xxhash

from datagen.core.text import tokens

_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant: the polynomial's base
# murmur3 finalizers (shift, multiplier, shift, multiplier, shift) for 64- and 32-bit words
FMIX64 = (np.uint64(33), np.uint64(0xFF51AFD7ED558CCD), np.uint64(33), np.uint64(0xC4CEB9FE1A85EC53), np.uint64(33))
FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))
_CACHE_MAX = 1 << 20  # token -> hash entries kept (cleared when full: bounded memory)


def fmix(h: np.ndarray, c: tuple) -> np.ndarray:
    """The murmur3 finalizer with constants ``c`` (:data:`FMIX64` or :data:`FMIX32`): an
    avalanching bijection on unsigned words, element-wise (multiplication wraps)."""
    s1, m1, s2, m2, s3 = c
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s3)


class Shingler:
    """Text -> sorted unique uint64 shingle hashes, with word/character ``n``-grams."""

    def __init__(self, n: int = 5) -> None:
        if n < 1:
            raise ValueError("ngram must be >= 1")
        self.n = n
        self._cache: dict[str, int] = {}

    def _token_hashes(self, toks: list[str]) -> np.ndarray:
        cache = self._cache
        if len(cache) > _CACHE_MAX:
            cache.clear()
        for t in toks:
            if t not in cache:
                cache[t] = xxhash.xxh64_intdigest(t.encode("utf-8"))
        return np.fromiter(map(cache.__getitem__, toks), dtype=np.uint64, count=len(toks))

    @staticmethod
    def _ngrams(th: np.ndarray, n: int) -> np.ndarray:
        """Hashes of every window of ``n`` consecutive token hashes in ``th``."""
        m = len(th) - n + 1
        with np.errstate(over="ignore"):
            g = th[:m].copy()
            for k in range(1, n):
                g *= _MIX
                g += th[k:k + m]
            g += np.uint64(n)
            return fmix(g, FMIX64)

    def __call__(self, text: str) -> np.ndarray:
        toks = tokens(text)
        if not toks:
            whole = text.strip()
            return np.array([xxhash.xxh64_intdigest(("\x00" + whole).encode("utf-8"))], dtype=np.uint64)
        th = self._token_hashes(toks)
        return np.unique(self._ngrams(th, min(self.n, len(th))))  # shorter than n: one shingle

    def many(self, texts: Sequence[str]) -> list[np.ndarray]:
        """The shingles of each text, as :meth:`__call__` gives them but not deduplicated (a
        MinHash does not care), computed over the whole batch at once: faster for signatures."""
        toks = [tokens(t) for t in texts]
        lengths = np.fromiter(map(len, toks), dtype=np.int64, count=len(toks))
        th = self._token_hashes([t for ts in toks for t in ts])
        out = [np.empty(0, dtype=np.uint64)] * len(texts)
        if len(th) >= self.n:  # windows of n tokens over the batch; keep those inside one text
            g = self._ngrams(th, self.n)
            starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
            counts = np.maximum(lengths - self.n + 1, 0)
            out = [g[s:s + c] for s, c in zip(starts.tolist(), counts.tolist())]
        for i in (lengths < self.n).nonzero()[0]:  # shorter than n tokens: one shingle, as __call__ makes it
            out[i] = self(texts[i])
        return out


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique hash arrays."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)
