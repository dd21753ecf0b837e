"""Novelty: is a new instruction too close (ROUGE-L) to one we already have?

Self-Instruct keeps a generated instruction only if its ROUGE-L F-measure against every
instruction in the pool is at most a threshold (0.7). Checked naively that is one LCS per pool
item per candidate: quadratic over a run, and hours for a pool of 50K. :class:`NoveltyIndex`
answers the same question exactly, touching only pool items that *could* exceed the threshold.

Why the pruning is sound
------------------------
Texts are token lists (:func:`datagen.core.text.tokens`: CJK characters, lowercased words). For a
candidate of ``m`` tokens and a pool item of ``n`` tokens, ROUGE-L F = 2·LCS / (m + n)
(precision LCS/m, recall LCS/n, beta 1). The LCS is at most the multiset overlap
``ov = Σ_t min(count_cand(t), count_item(t))``, so

    F ≤ 2·ov / (m + n),  and  F > θ  requires  ov > θ(m + n)/2.

Since ``ov ≤ min(m, n)``, this also forces ``ov > β·m`` and ``ov > β·n`` with β = θ/(2-θ)
(0.538 for θ = 0.7). Treat each text as a *set* of (token, occurrence number) pairs, ordered by a
fixed global order (rarest token first). If two sets share at least ``a`` elements, the first
shared element lies within the first ``len - a + 1`` elements of each (the prefix-filtering
principle of set-similarity joins). So:

1. each pool item is indexed only under the first ``n - a(n) + 1`` elements of its sorted set
   (inverted index: element -> (pool item, position)), where ``a(n) = ⌊β·n⌋ + 1``;
2. a candidate probes the index with its own first ``m - a(m) + 1`` elements, in order. When
   its element ``i`` meets an item's element ``j``, the overlap counted so far plus
   ``1 + min(m-i-1, n-j-1)`` bounds the final overlap (every later shared element comes after
   both positions), so an item that cannot reach ``⌊θ(m+n)/2⌋ + 1`` is dropped on the spot
   (PPJoin's positional filter);
3. each pool item left gets the overlap bound ``2·ov/(m+n)`` from the full token counts, and
   only those whose bound exceeds θ get an exact LCS (bit-parallel, one big-integer operation
   per token).

Items never found cannot exceed θ, so the answer equals the all-pairs loop (see the property test).
Rare-first order keeps common words ("the", "a", "的") out of prefixes, so posting lists stay
short. The order is a snapshot of document frequencies, refreshed (with a full re-index) each time
the pool doubles; between refreshes every item and query use the same snapshot, which is all that
soundness needs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Hashable, Iterable, Sequence

from datagen.core.text import tokens as tokenize

_MIN_REINDEX = 64


def lcs_length(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Length of the longest common subsequence of two token sequences.

    Bit-parallel (Allison-Dix / Hyyrö): bit i of ``v`` is 0 where a[i] is matched; each token of
    ``b`` updates all of ``a`` with one addition on a Python integer, so the cost is
    O(len(b) · len(a)/64) machine operations instead of the O(len(a) · len(b)) DP table.
    """
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    masks: dict[Hashable, int] = {}
    for i, t in enumerate(a):
        masks[t] = masks.get(t, 0) | (1 << i)
    return _lcs_with_masks(masks, len(a), b)


def _lcs_with_masks(masks: dict, m: int, b: Iterable[Hashable]) -> int:
    full = (1 << m) - 1
    v = full
    for t in b:
        u = v & masks.get(t, 0)
        if u:
            v = ((v + u) | (v - u)) & full
    return m - bin(v).count("1")


def lcs_length_dp(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """The textbook dynamic programme; a reference for tests and the naive baseline."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l_tokens(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """ROUGE-L F-measure (beta 1) of two token lists: 2·LCS / (len(a) + len(b)). Symmetric."""
    if not a or not b:
        return 0.0
    return 2.0 * lcs_length(a, b) / (len(a) + len(b))


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F-measure of two texts, tokenized by :func:`datagen.core.text.tokens`."""
    return rouge_l_tokens(tokenize(a), tokenize(b))


@dataclass(frozen=True)
class Match:
    id: str
    score: float
    text: str


class NoveltyIndex:
    """A growing pool of texts that answers "which pool text is closest to this one, if any
    scores above ``threshold``?" exactly, without comparing against the whole pool.

    >>> idx = NoveltyIndex(0.7)
    >>> idx.add("t1", "Write a poem about the sea.")
    >>> idx.check("Write a poem about the ocean.").id
    't1'
    >>> idx.check("Translate this sentence into French.") is None
    True
    """

    def __init__(self, threshold: float = 0.7) -> None:
        if not threshold >= 0:
            raise ValueError("the novelty threshold must be >= 0")
        self.threshold = float(threshold)
        self._beta = self.threshold / (2.0 - self.threshold) if self.threshold < 1 else 1.0
        self._vocab: dict[str, int] = {}
        self._df: Counter[int] = Counter()  # live document frequency per token id
        self._rank: dict[int, int] = {}  # snapshot: token id -> document frequency at last reindex
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._toks: list[list[int]] = []
        self._lens: list[int] = []
        self._max_len = 0
        self._counts: list[Counter[int]] = []
        self._seq_of: dict[str, int] = {}
        self._postings: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self._indexed_at = 0
        self.stats: Counter[str] = Counter()  # probes, reached, candidates, bound_pruned, lcs_computed

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._seq_of

    def text_of(self, item_id: str) -> str:
        return self._texts[self._seq_of[item_id]]

    # -- building ----------------------------------------------------------------------------
    def add(self, item_id: str, text: str) -> None:
        """Add a text to the pool under ``item_id`` (ids must be unique)."""
        if item_id in self._seq_of:
            raise ValueError(f"duplicate id {item_id!r} in the novelty pool")
        ids = [self._vocab.setdefault(t, len(self._vocab)) for t in tokenize(text)]
        seq = len(self._ids)
        self._seq_of[item_id] = seq
        self._ids.append(item_id)
        self._texts.append(text)
        self._toks.append(ids)
        self._lens.append(len(ids))
        self._max_len = max(self._max_len, len(ids))
        counts = Counter(ids)
        self._counts.append(counts)
        self._df.update(counts.keys())
        if len(self._ids) >= max(_MIN_REINDEX, 2 * self._indexed_at):
            self._reindex()
        else:
            self._index(seq)

    def _reindex(self) -> None:
        self._rank = dict(self._df)
        self._postings = {}
        for seq in range(len(self._ids)):
            self._index(seq)
        self._indexed_at = len(self._ids)

    def _key(self, tid: int) -> tuple[int, int]:
        # Rarest first by the snapshot; tokens unseen at snapshot time count as rarest. The token
        # id breaks ties, so the order is total and identical for items and queries.
        return (self._rank.get(tid, 0), tid)

    def _prefix(self, counts: Counter[int], n: int) -> list[tuple[int, int]]:
        # Smallest overlap that could still exceed the threshold (the epsilon errs towards a longer,
        # never a shorter, prefix when beta*n is an integer up to rounding).
        need = int(self._beta * n - 1e-9) + 1
        if need > n:
            return []
        elems = sorted(((tid, k) for tid, c in counts.items() for k in range(c)), key=lambda e: (self._key(e[0]), e[1]))
        return elems[: n - need + 1]

    def _index(self, seq: int) -> None:
        for j, e in enumerate(self._prefix(self._counts[seq], len(self._toks[seq]))):
            self._postings.setdefault(e, []).append((seq, j))

    def _min_overlap(self, m: int, n: int) -> int:
        # Smallest overlap with 2·ov/(m+n) > threshold (the epsilon errs on the low side).
        return int(self.threshold * (m + n) / 2 - 1e-9) + 1

    # -- querying ----------------------------------------------------------------------------
    def best_match(self, text: str) -> tuple[str, float] | None:
        """(id, ROUGE-L F) of the pool text scoring highest against ``text`` among those scoring
        above the threshold; ties go to the earliest added. None when nothing exceeds it."""
        m = self.check(text)
        return (m.id, m.score) if m else None

    def check(self, text: str) -> Match | None:
        """The closest pool text if it scores above the threshold, else None (the text is novel)."""
        toks = tokenize(text)
        m = len(toks)
        if not m or self.threshold >= 1.0:
            return None
        self.stats["probes"] += 1
        q = [self._vocab.get(t, -1 - i) for i, t in enumerate(toks)]  # unseen tokens never match
        qcounts = Counter(q)
        seen: dict[int, int] = {}  # pool item -> shared prefix elements so far; -1 once ruled out
        get = seen.get
        lens = self._lens
        # need[n] - 1: the overlap an item of n tokens must reach, minus the element being matched
        need = [self._min_overlap(m, n) - 1 for n in range(self._max_len + 1)]
        postings = self._postings
        for i, e in enumerate(self._prefix(qcounts, m)):
            if e[0] < 0 or e not in postings:
                continue
            rest_q = m - i - 1
            for seq, j in postings[e]:
                a = get(seq, 0)
                if a < 0:
                    continue
                n = lens[seq]
                rest = n - j - 1
                if rest > rest_q:
                    rest = rest_q
                seen[seq] = a + 1 if a + rest >= need[n] else -1
        cands = [seq for seq, a in seen.items() if a > 0]
        self.stats["reached"] += len(seen)
        if not cands:
            return None
        self.stats["candidates"] += len(cands)
        masks: dict[int, int] | None = None
        best: tuple[float, int] | None = None
        th = self.threshold
        for seq in sorted(cands):
            n = len(self._toks[seq])
            ic = self._counts[seq]
            small, big = (qcounts, ic) if len(qcounts) <= len(ic) else (ic, qcounts)
            ov = 0
            for tid, c in small.items():
                c2 = big.get(tid)
                if c2:
                    ov += c if c < c2 else c2
            if 2.0 * ov / (m + n) <= th:
                self.stats["bound_pruned"] += 1
                continue
            if masks is None:
                masks = {}
                for i, t in enumerate(q):
                    masks[t] = masks.get(t, 0) | (1 << i)
            self.stats["lcs_computed"] += 1
            score = 2.0 * _lcs_with_masks(masks, m, self._toks[seq]) / (m + n)
            if score > th and (best is None or score > best[0]):
                best = (score, seq)
        if best is None:
            return None
        score, seq = best
        return Match(self._ids[seq], score, self._texts[seq])


def best_match_bruteforce(pool: Iterable[tuple[str, str]], text: str, threshold: float) -> tuple[str, float] | None:
    """The all-pairs reference: ROUGE-L against every pool text. For tests and the benchmark."""
    q = tokenize(text)
    best: tuple[str, float] | None = None
    for item_id, t in pool:
        s = rouge_l_tokens(q, tokenize(t))
        if s > threshold and (best is None or s > best[1]):
            best = (item_id, s)
    return best


def closer(a: Match | None, b: Match | None) -> Match | None:
    """The closer of two matches (the higher score), either one when the other is None."""
    if a is None or b is None:
        return a or b
    return b if b.score > a.score else a
