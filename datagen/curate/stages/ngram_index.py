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
        grams: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        self.counts = np.zeros(len(texts), dtype=np.int64)  # distinct n-grams per item (0: not indexed)
        short: set[int] = set()
        for i, text in enumerate(texts):
            toks = tokens(text)
            if len(toks) < min_tokens:
                continue
            k = min(n, len(toks))
            g = np.unique(self.shingler._ngrams(self.shingler._token_hashes(toks), k))
            grams.append(g)
            owners.append(np.full(len(g), i, dtype=np.int64))
            self.counts[i] = len(g)
            if k < n:
                short.add(k)
        h = np.concatenate(grams) if grams else np.zeros(0, dtype=np.uint64)
        o = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)
        order = np.lexsort((o, h))
        self.hashes, self.owners = h[order], o[order]
        self.lengths = [n] + sorted(short, reverse=True)  # window lengths a text is hashed in
        self.indexed = int((self.counts > 0).sum())

    def match(self, texts: Sequence[str]) -> list[Match | None]:
        """For each text, the item it shares the largest share of n-grams with (ties: more shared
        n-grams, then the earlier item), or None."""
        out: list[Match | None] = [None] * len(texts)
        if not len(self.hashes) or not texts:
            return out
        toks = [tokens(t) for t in texts]
        lengths = np.fromiter(map(len, toks), dtype=np.int64, count=len(toks))
        th = self.shingler._token_hashes([t for ts in toks for t in ts])
        text_of = np.repeat(np.arange(len(texts)), lengths)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        hit_text, hit_gram, hit_pos, hit_len = [], [], [], []
        for k in self.lengths:
            if len(th) < k:
                continue
            g = self.shingler._ngrams(th, k)
            inside = text_of[: len(g)] == text_of[k - 1:]  # windows within one text
            idx = np.searchsorted(self.hashes, g)
            found = inside & (self.hashes[np.minimum(idx, len(self.hashes) - 1)] == g)
            pos = found.nonzero()[0]
            hit_text.append(text_of[pos])
            hit_gram.append(g[pos])
            hit_pos.append(pos)
            hit_len.append(np.full(len(pos), k, dtype=np.int64))
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
