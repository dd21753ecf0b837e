"""Which benchmark items share word n-grams with a text: a sorted array of n-gram hashes.

Texts are tokenized and their n-grams hashed as MinHash shingles are
(:class:`~datagen.curate.dedup.shingles.Shingler`: lowercased words, single CJK characters, xxh64
token hashes mixed into one 64-bit hash per n-gram), so punctuation, case and spacing do not
matter. The index holds every distinct n-gram hash of every item, sorted, with the item it belongs
to (an n-gram shared by several items appears once for each). A batch of texts is checked at once:
all their n-grams are hashed in one numpy pass and looked up with ``searchsorted``; only the few
that hit are expanded to items, and each (text, item) pair counts its shared n-grams.

An item shorter than ``n`` tokens (but at least ``min_tokens``) has one n-gram, the whole item:
texts are also hashed in windows of each such length, so a short benchmark question planted in a
longer prompt is found. Items shorter than ``min_tokens`` are not indexed (a few common words
would match everything); the embedding check still sees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from datagen.core.text import tokens
from datagen.curate.dedup.shingles import Shingler


@dataclass(frozen=True)
class Match:
    """The item of an index that a text overlaps most: ``shared`` of its ``item_ngrams`` n-grams
    (``overlap`` = the share), one of them spelt out as ``ngram``."""

    item: int
    shared: int
    item_ngrams: int
    ngram: str

    @property
    def overlap(self) -> float:
        return self.shared / self.item_ngrams


class NgramIndex:
    def __init__(self, texts: Sequence[str], n: int, min_tokens: int) -> None:
        self.n = n
        self.shingler = Shingler(n)
        toks = [tokens(t) for t in texts]
        th, text_of, starts, lengths = self._tokens(toks)
        indexed = lengths >= min_tokens
        hs: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        g, t, _ = self._windows(th, text_of, n)
        hs.append(g[indexed[t]])
        owners.append(t[indexed[t]])
        short = sorted({int(k) for k in lengths[indexed & (lengths < n)]}, reverse=True)
        for k in short:  # an item shorter than n: one n-gram, the whole item
            items = (indexed & (lengths == k)).nonzero()[0]
            hs.append(self.shingler._ngrams(th, k)[starts[items]])
            owners.append(items)
        h, o = np.concatenate(hs), np.concatenate(owners)
        order = np.lexsort((o, h))
        h, o = h[order], o[order]
        first = np.concatenate(([True], (h[1:] != h[:-1]) | (o[1:] != o[:-1])))  # each (n-gram, item) once
        self.hashes, self.owners = h[first], o[first]
        self.counts = np.bincount(self.owners, minlength=len(texts))  # distinct n-grams per item (0: not indexed)
        self.lengths = [n] + short  # window lengths a text is hashed in
        self.indexed = int((self.counts > 0).sum())
        # a bit per slot of the hashes' low bits (about 64 slots per n-gram): most windows of a text
        # are ruled out by one lookup in a few MB instead of a binary search over the index
        bits = min(max(16, int(np.ceil(np.log2(max(len(self.hashes), 1) * 64)))), 30)
        self.mask = np.uint64((1 << bits) - 1)
        self.filter = np.zeros(1 << (bits - 3), dtype=np.uint8)
        slot = self.hashes & self.mask
        np.bitwise_or.at(self.filter, slot >> np.uint64(3), (np.uint8(1) << (slot & np.uint64(7)).astype(np.uint8)))

    def _tokens(self, toks: list[list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(token hashes of all texts end to end, the text of each token, each text's first token, lengths)."""
        lengths = np.fromiter(map(len, toks), dtype=np.int64, count=len(toks))
        th = self.shingler._token_hashes([t for ts in toks for t in ts])
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
        return th, np.repeat(np.arange(len(toks)), lengths), starts, lengths

    def _windows(self, th: np.ndarray, text_of: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hash, text, position) of every window of ``k`` tokens that lies within one text."""
        if len(th) < k:
            return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        g = self.shingler._ngrams(th, k)
        pos = (text_of[: len(g)] == text_of[k - 1:]).nonzero()[0]
        return g[pos], text_of[pos], pos

    def _known(self, g: np.ndarray) -> np.ndarray:
        """Which of the hashes ``g`` are in the index: the bit filter first, then a binary search."""
        slot = g & self.mask
        maybe = ((self.filter[slot >> np.uint64(3)] >> (slot & np.uint64(7)).astype(np.uint8)) & 1).astype(bool)
        cand = maybe.nonzero()[0]
        idx = np.searchsorted(self.hashes, g[cand])
        found = self.hashes[np.minimum(idx, len(self.hashes) - 1)] == g[cand]
        out = np.zeros(len(g), dtype=bool)
        out[cand[found]] = True
        return out

    def match(self, texts: Sequence[str]) -> list[Match | None]:
        """For each text, the item it shares the largest share of n-grams with (ties: more shared
        n-grams, then the earlier item), or None."""
        out: list[Match | None] = [None] * len(texts)
        if not len(self.hashes) or not texts:
            return out
        toks = [tokens(t) for t in texts]
        th, text_of, starts, _ = self._tokens(toks)
        hit_text, hit_gram, hit_pos, hit_len = [], [], [], []
        for k in self.lengths:
            g, t, pos = self._windows(th, text_of, k)
            found = self._known(g)
            hit_text.append(t[found])
            hit_gram.append(g[found])
            hit_pos.append(pos[found])
            hit_len.append(np.full(int(found.sum()), k, dtype=np.int64))
        if not hit_text or not sum(map(len, hit_text)):
            return out
        t, g = np.concatenate(hit_text), np.concatenate(hit_gram)
        pos, klen = np.concatenate(hit_pos), np.concatenate(hit_len)
        # each distinct (text, n-gram) once, then expanded to the items that hold the n-gram
        _, first = np.unique(np.stack([t.astype(np.uint64), g]), axis=1, return_index=True)
        first = first[np.lexsort((pos[first], t[first]))]  # by text, then position: a witness is the earliest
        t, g, pos, klen = t[first], g[first], pos[first], klen[first]
        lo, hi = np.searchsorted(self.hashes, g, "left"), np.searchsorted(self.hashes, g, "right")
        reps = hi - lo
        rows = np.repeat(np.arange(len(t)), reps)
        items = self.owners[np.repeat(lo, reps) + (np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps))]
        pairs, inverse, shared = np.unique(np.stack([t[rows], items]), axis=1, return_inverse=True, return_counts=True)
        witness = np.full(pairs.shape[1], -1, dtype=np.int64)  # one hit row per (text, item) pair
        witness[inverse[::-1]] = rows[::-1]  # the first row of each pair wins
        share = shared / self.counts[pairs[1]]
        # best pair per text: the largest share, then more shared n-grams, then the earlier item
        order = np.lexsort((pairs[1], -shared, -share, pairs[0]))
        best = order[np.concatenate(([True], pairs[0][order][1:] != pairs[0][order][:-1]))]
        for p in best.tolist():
            text_i, item = int(pairs[0, p]), int(pairs[1, p])
            w = int(witness[p])
            at = int(pos[w]) - int(starts[text_i])
            gram = " ".join(toks[text_i][at : at + int(klen[w])])
            out[text_i] = Match(item, int(shared[p]), int(self.counts[item]), gram)
        return out
