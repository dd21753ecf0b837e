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
5. **Survivors**: a record is removed only for a verified match with a record that is *kept*.
   The records with a verified match are walked best first (highest ``score_key`` score, then
   lowest id); each is kept unless it matches a record already kept. So nothing chains: with
   A~B and B~C but A and C apart, A survives, B goes as A's duplicate and C stays (union-find
   would have removed C through B, although nothing left in the output is close to it).

Flags: a dropped record gets ``flags["minhash"] = {"duplicate_of": <kept id>, "jaccard": J}``
with ``J >= threshold`` its exact Jaccard with that record (the closest kept one it matches; ties:
the better one); a survivor that others were dropped for gets ``{"duplicates": k}``.
``stats.extra.minhash.kept_with_matches`` counts the records kept although they have a verified
match (each of their matches was removed for a better record). Everything is order-independent:
shuffle the input and the same records are marked with the same flags.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

import numpy as np

from datagen.core.record import Record
from datagen.curate.base import FilterContext, Verdict
from datagen.curate.config import MinHashConfig
from datagen.curate.dedup.groups import record_text, survivor_rank
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
        extra = ctx.stats.extra.setdefault(self.name, {})
        kept = self.mark(records, checked, extra)
        extra.update({
            "candidate_pairs": len(pairs), "verified_pairs": kept, "candidates_rejected": len(pairs) - kept,
            "seconds_signatures": round(t1 - t0, 3), "seconds_lsh": round(t2 - t1, 3), "seconds_verify": round(t3 - t2, 3),
        })

    def mark(self, records: list[Record], checked: Iterable[tuple[int, int, float]], stats: dict[str, Any] | None = None) -> int:
        """Flag the duplicates among the verified pairs at or above the threshold (the survivor
        rule of the module docstring). Returns the number of verified pairs."""
        t = self.config.threshold
        near: dict[int, list[tuple[int, float]]] = {}
        n = 0
        for i, j, jac in checked:
            if jac < t:
                continue
            n += 1
            near.setdefault(i, []).append((j, jac))
            near.setdefault(j, []).append((i, jac))
        rank = {i: survivor_rank(records[i], self.config.score_key) for i in near}
        kept: set[int] = set()
        removed_for: dict[int, int] = {}
        for i in sorted(near, key=rank.__getitem__):
            matches = [(jac, b) for b, jac in near[i] if b in kept]
            if not matches:
                kept.add(i)
                continue
            jac, b = min(matches, key=lambda m: (-m[0], rank[m[1]]))  # the closest kept record (ties: the better one)
            records[i].flags[self.name] = {"duplicate_of": records[b].id, "jaccard": round(jac, 4)}
            removed_for[b] = removed_for.get(b, 0) + 1
        for b, k in removed_for.items():
            records[b].flags[self.name] = {"duplicates": k}
        if stats is not None:
            # kept although a verified near-duplicate: every such match was removed itself, for a
            # better record it is not close to (union-find would have dropped it through the chain)
            stats["kept_with_matches"] = sum(1 for i in kept if i not in removed_for)
            stats["removed"] = len(near) - len(kept)
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

