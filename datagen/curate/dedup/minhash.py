"""MinHash near-duplicate detection, every match verified exactly.

1. **Shingles** (:mod:`.shingles`): word n-grams (character n-grams in CJK) of the compared text,
   as 64-bit hashes. Computed per batch and thrown away: only signatures stay in memory.
2. **Signatures** (:mod:`.signatures`): ``num_perm`` MinHash values per record, from datasketch's
   permutations vectorized over a batch, or from rensa (``engine``).
3. **LSH**: datasketch ``MinHashLSH`` built with explicit ``params=(bands, rows)``, chosen by
   :func:`.lsh.optimal_params` for the threshold (or set in the config). Every pair of records
   that shares a band is a *candidate*.
4. **Verification**: the shingle sets of the candidates are recomputed and each candidate pair's
   exact Jaccard measured. Only pairs at or above ``threshold`` count; a pair whose signatures
   agree but whose sets do not is never marked (``stats.extra.minhash.candidates_rejected``).
5. **Groups**: verified pairs are joined with union-find; each group keeps one survivor (highest
   ``score_key`` score, then lowest id).

Flags of a dropped record, ``flags["minhash"]``:

* ``duplicate_of``: the survivor of its group;
* ``matched_with`` / ``jaccard``: among the records it was verified against (its candidate pairs
  at or above the threshold), the one with the highest exact Jaccard (ties: lowest id), and that
  Jaccard. Always ``>= threshold``;
* ``jaccard_to_survivor``: the exact Jaccard with the survivor, which can be lower than the
  threshold when the record joined the group through a chain (A~B, B~C, but A and C further apart).

A survivor with duplicates gets ``{"group_size": k}``. Everything is order-independent: shuffle
the input and the same records are marked with the same flags.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

import numpy as np

from datagen.core.record import Record
from datagen.curate.base import FilterContext, Verdict
from datagen.curate.config import MinHashConfig
from datagen.curate.dedup.groups import UnionFind, pick_survivor, record_text
from datagen.curate.dedup.lsh import LSHParams, error_areas, optimal_params
from datagen.core.progress import bar as progress_bar
from datagen.curate.dedup.shingles import Shingler, jaccard
from datagen.curate.dedup.signatures import resolve_engine, signatures

BATCH = 2048  # records shingled and signed at a time
Pair = tuple[int, int]


def lsh_params(cfg: MinHashConfig) -> LSHParams:
    if cfg.bands is not None and cfg.rows is not None:
        fp, fn = error_areas(cfg.threshold, cfg.bands, cfg.rows)
        return LSHParams(cfg.threshold, cfg.num_perm, cfg.bands, cfg.rows, cfg.weights[0], cfg.weights[1], fp, fn)
    return optimal_params(cfg.threshold, cfg.num_perm, *cfg.weights)


class MinHashDedup:
    name = "minhash"
    score_names: tuple[str, ...] = ()

    def __init__(self, config: MinHashConfig | None = None) -> None:
        self.config = config or MinHashConfig()
        self.params = lsh_params(self.config)
        self.engine = resolve_engine(self.config.engine)
        self.shingler = Shingler(self.config.ngram)

    # -- the steps ---------------------------------------------------------------------------
    def shingles(self, rec: Record) -> np.ndarray:
        return self.shingler(record_text(rec, self.config.text))

    def signatures(self, records: list[Record], ctx: FilterContext | None = None) -> np.ndarray:
        cfg = self.config
        sigs = np.empty((len(records), cfg.num_perm), dtype=np.uint32)
        with progress_bar(len(records), "minhash: signatures", show=ctx is None or ctx.progress, leave=False) as bar:
            for lo in range(0, len(records), BATCH):
                batch = self.shingler.many([record_text(r, cfg.text) for r in records[lo:lo + BATCH]])
                sigs[lo:lo + len(batch)] = signatures(batch, cfg.num_perm, cfg.seed, self.engine)
                bar.update(len(batch))
        return sigs

    def candidate_pairs(self, sigs: np.ndarray, ctx: FilterContext | None = None) -> list[Pair]:
        """Pairs ``(i, j)``, ``i < j``, that share at least one LSH band, sorted.

        Records go into a datasketch ``MinHashLSH(params=(bands, rows))``; the pairs are then read
        from its band tables (every bucket holding two or more keys), which gives exactly what a
        ``query`` per record would, without the queries. The index keeps band hashes and keys
        only, so one ``LeanMinHash`` is reused as a cursor over the signature rows."""
        from datasketch import LeanMinHash, MinHashLSH

        p = self.params
        index = MinHashLSH(threshold=p.threshold, num_perm=p.num_perm, params=(p.bands, p.rows))
        pairs: set[Pair] = set()
        if not len(sigs):
            return []
        cursor = LeanMinHash(seed=self.config.seed, hashvalues=sigs[0], scheme="affine32")
        with progress_bar(len(sigs), "minhash: LSH", show=ctx is None or ctx.progress, leave=False) as bar:
            for i, row in enumerate(sigs):
                cursor.hashvalues = row
                index.insert(i, cursor, check_duplication=False)
                bar.update(1)
        for table in index.hashtables:
            for key, count in table.itemcounts().items():
                if count > 1:
                    members = sorted(table.get(key))
                    pairs.update((a, b) for k, a in enumerate(members) for b in members[k + 1:])
        return sorted(pairs)

    def verify(self, records: list[Record], pairs: Iterable[Pair], ctx: FilterContext | None = None) -> list[tuple[int, int, float]]:
        """``(i, j, exact Jaccard)`` for every candidate pair (shingle sets recomputed once per
        record that appears in a pair)."""
        pairs = list(pairs)
        sets: dict[int, np.ndarray] = {}
        out = []
        with progress_bar(len(pairs), "minhash: verify", unit="pair", show=ctx is None or ctx.progress, leave=False) as bar:
            for i, j in pairs:
                for k in (i, j):
                    if k not in sets:
                        sets[k] = self.shingles(records[k])
                out.append((i, j, jaccard(sets[i], sets[j])))
                bar.update(1)
        return out

    # -- the stage -----------------------------------------------------------------------------
    def annotate(self, records: list[Record], ctx: FilterContext) -> None:
        t0 = time.time()
        for rec in records:
            rec.flags.pop(self.name, None)
        sigs = self.signatures(records, ctx)
        t1 = time.time()
        pairs = self.candidate_pairs(sigs, ctx)
        del sigs
        t2 = time.time()
        checked = self.verify(records, pairs, ctx)
        t3 = time.time()
        kept = self.mark(records, checked)
        ctx.stats.extra.setdefault(self.name, {}).update({
            "candidate_pairs": len(pairs), "verified_pairs": kept, "candidates_rejected": len(pairs) - kept,
            "seconds_signatures": round(t1 - t0, 3), "seconds_lsh": round(t2 - t1, 3), "seconds_verify": round(t3 - t2, 3),
        })

    def mark(self, records: list[Record], checked: Iterable[tuple[int, int, float]]) -> int:
        """Group the verified pairs at or above the threshold and flag each group. Returns the
        number of verified pairs."""
        t = self.config.threshold
        uf = UnionFind(len(records))
        best: dict[int, tuple[float, str, int]] = {}  # record -> (jaccard, neighbour id, neighbour)
        n = 0
        for i, j, jac in checked:
            if jac < t:
                continue
            n += 1
            uf.union(i, j)
            for a, b in ((i, j), (j, i)):
                cand = (jac, records[b].id, b)
                cur = best.get(a)
                if cur is None or cand[0] > cur[0] or (cand[0] == cur[0] and cand[1] < cur[1]):
                    best[a] = cand
        for members in uf.groups():
            keep = pick_survivor(records, members, self.config.score_key)
            survivor_set = self.shingles(records[keep])
            records[keep].flags[self.name] = {"group_size": len(members)}
            for i in members:
                if i == keep:
                    continue
                jac, other, _ = best[i]
                records[i].flags[self.name] = {
                    "duplicate_of": records[keep].id, "matched_with": other, "jaccard": round(jac, 4),
                    "jaccard_to_survivor": round(jaccard(self.shingles(records[i]), survivor_set), 4),
                    "group_size": len(members),
                }
        return n

    def verdict(self, record: Record) -> Verdict:
        info = record.flags.get(self.name)
        if info and info.get("duplicate_of"):
            return "near_duplicate", {**info, "threshold": self.config.threshold}
        return None

    def describe(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "name": self.name, "engine": self.engine, "num_perm": cfg.num_perm, "bands": self.params.bands,
            "rows": self.params.rows, "threshold": cfg.threshold, "ngram": cfg.ngram, "seed": cfg.seed,
            "text": cfg.text, "score_key": cfg.score_key, "lsh": self.params.to_dict(),
            "detection_curve": self.params.curve(),
        }

