"""MinHash near-duplicate detection, every match verified exactly.

1. **Shingles** (:mod:`.shingles`): word n-grams (character n-grams in CJK) of the compared text,
   as 64-bit hashes. Computed per batch and thrown away: only signatures stay in memory.
2. **Signatures** (:mod:`.signatures`): ``num_perm`` MinHash values per record, from datasketch's
   permutations vectorized over a batch, or from rensa (``engine``).
3. **LSH**: ``bands x rows`` chosen by :func:`.lsh.optimal_params` for the threshold (or set in
   the config), as datasketch's ``MinHashLSH`` would; each band of a signature becomes one 64-bit
   key (:meth:`MinHashDedup.band_keys`), and every pair of records that shares a band key is a
   *candidate*. Only the band keys stay in memory (8 bytes a band), never the text.
4. **Verification**: the records of the candidates are fetched (from the list, or by one more
   pass over a stage's input on disk), their shingle sets recomputed and each candidate pair's
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
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from datagen.core.record import Record
from datagen.curate.base import FilterContext, Verdict
from datagen.curate.config import MinHashConfig
from datagen.curate.dedup.groups import Fetch, id_hex, rank_keys, ranked, record_text, survivor_walk
from datagen.curate.dedup.lsh import LSHParams, error_areas, optimal_params
from datagen.core.progress import bar as progress_bar
from datagen.curate.dedup.shingles import Shingler, jaccard
from datagen.curate.dedup.signatures import resolve_engine, signatures

BATCH = 2048  # records shingled and signed at a time
Pair = tuple[int, int]


def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def lsh_params(cfg: MinHashConfig) -> LSHParams:
    if cfg.bands is not None and cfg.rows is not None:
        fp, fn = error_areas(cfg.threshold, cfg.bands, cfg.rows)
        return LSHParams(cfg.threshold, cfg.num_perm, cfg.bands, cfg.rows, cfg.weights[0], cfg.weights[1], fp, fn)
    return optimal_params(cfg.threshold, cfg.num_perm, *cfg.weights)


class MinHashDedup:
    name = "minhash"
    streaming = "keys"  # runs over shards of its input on disk (datagen.curate.shards)
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

    def band_keys(self, sigs: np.ndarray) -> np.ndarray:
        """One 64-bit key per LSH band of each signature, ``(records, bands)``: the band's rows
        mixed with splitmix64. Two records share a bucket when a band's keys are equal, as in
        datasketch's ``MinHashLSH`` band tables (a 64-bit collision adds a candidate that the
        exact verification then refuses). 8 bytes a band: all MinHash keeps of a record."""
        p = self.params
        rows = sigs[:, : p.bands * p.rows].astype(np.uint64).reshape(len(sigs), p.bands, p.rows)
        h = np.full((len(sigs), p.bands), 0x9E3779B97F4A7C15, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for r in range(p.rows):
                h = _splitmix64(h ^ rows[:, :, r])
        return h

    def candidate_pairs(self, bands: np.ndarray, ctx: FilterContext | None = None) -> list[Pair]:
        """Pairs ``(i, j)``, ``i < j``, that share at least one band key, sorted."""
        n = len(bands)
        codes: list[np.ndarray] = []
        for b in range(bands.shape[1] if n else 0):
            order = np.argsort(bands[:, b], kind="stable")
            col = bands[order, b]
            starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
            sizes = np.diff(np.r_[starts, n])
            two = starts[sizes == 2]  # most buckets that hold more than one record hold two
            lo, hi = np.minimum(order[two], order[two + 1]), np.maximum(order[two], order[two + 1])
            codes.append(lo.astype(np.int64) * n + hi)
            for start, size in zip(starts[sizes > 2], sizes[sizes > 2]):
                members = np.sort(order[start:start + size]).astype(np.int64)
                i, j = np.triu_indices(size, 1)
                codes.append(members[i] * n + members[j])
        if not codes:
            return []
        u = np.unique(np.concatenate(codes))
        return list(zip((u // n).tolist(), (u % n).tolist())) if n else []

    def verify(self, sets: Mapping[int, np.ndarray], pairs: Iterable[Pair], ctx: FilterContext | None = None) -> list[tuple[int, int, float]]:
        """``(i, j, exact Jaccard)`` for every candidate pair; ``sets[i]`` is record ``i``'s
        shingle set (:meth:`fetch_view`)."""
        pairs = list(pairs)
        out = []
        with progress_bar(len(pairs), "minhash: verify", unit="pair", show=ctx is None or ctx.progress, leave=False) as bar:
            for i, j in pairs:
                out.append((i, j, jaccard(sets[i], sets[j])))
                bar.update(1)
        return out

    def fetch_view(self, rec: Record) -> np.ndarray:
        """What the decision fetches of a candidate record: its shingle set (compact hashes, not
        the record)."""
        return self.shingles(rec)

    # -- the stage -----------------------------------------------------------------------------
    def keys(self, records: Sequence[Record], ctx: FilterContext | None = None) -> dict[str, np.ndarray]:
        """What the decision keeps of each record: its band keys and its rank (8 x bands + 17 bytes)."""
        return {"bands": self.band_keys(self.signatures(list(records), ctx)), **rank_keys(records, self.config.score_key)}

    def decide(self, keys: dict[str, np.ndarray], fetch: Fetch, stats: dict[str, Any] | None = None,
               ctx: FilterContext | None = None) -> dict[int, dict[str, Any]]:
        """The flags of every record with a verified match, by index: candidates from the band
        keys, the shingle sets of the candidates fetched for the exact Jaccard, then the survivor rule."""
        t0 = time.time()
        pairs = self.candidate_pairs(keys["bands"], ctx)
        t1 = time.time()
        needed = np.unique(np.array(pairs, dtype=np.int64).ravel()) if pairs else np.zeros(0, dtype=np.int64)
        checked = self.verify(fetch(needed) if len(needed) else {}, pairs, ctx)
        t2 = time.time()
        extra: dict[str, Any] = {}
        flags = self.mark(keys, checked, extra)
        kept = extra.pop("verified_pairs")
        extra.update({"candidate_pairs": len(pairs), "verified_pairs": kept, "candidates_rejected": len(pairs) - kept,
                      "seconds_lsh": round(t1 - t0, 3), "seconds_verify": round(t2 - t1, 3)})
        if stats is not None:
            stats.update(extra)
        return flags

    def annotate(self, records: list[Record], ctx: FilterContext) -> None:
        t0 = time.time()
        keys = self.keys(records, ctx)
        extra = ctx.stats.extra.setdefault(self.name, {})
        extra["seconds_signatures"] = round(time.time() - t0, 3)
        flags = self.decide(keys, lambda idx: {int(i): self.fetch_view(records[i]) for i in idx}, extra, ctx)
        for i, rec in enumerate(records):
            rec.flags.pop(self.name, None)
            if i in flags:
                rec.flags[self.name] = flags[i]

    def mark(self, keys: dict[str, np.ndarray], checked: Iterable[tuple[int, int, float]], stats: dict[str, Any]) -> dict[int, dict[str, Any]]:
        """The flags of the records among the verified pairs at or above the threshold (the
        survivor rule of the module docstring), by index; ``stats`` gets the counts."""
        t = self.config.threshold
        pairs = [(i, j, jac) for i, j, jac in checked if jac >= t]
        n = len(pairs)
        a = np.array([p[0] for p in pairs], dtype=np.int64)
        b = np.array([p[1] for p in pairs], dtype=np.int64)
        members = np.unique(np.concatenate([a, b]))
        place = np.zeros(int(members[-1]) + 1 if n else 0, dtype=np.int64)
        place[ranked(keys, members)] = np.arange(len(members))
        dups = survivor_walk(place, a, b, np.array([p[2] for p in pairs], dtype=np.float64))
        out: dict[int, dict[str, Any]] = {i: {"duplicate_of": id_hex(keys, k), "jaccard": round(jac, 4)} for i, (k, jac) in dups.items()}
        removed_for = Counter(k for k, _ in dups.values())
        for k, count in removed_for.items():
            out[k] = {"duplicates": count}
        # kept although a verified near-duplicate: every such match was removed itself, for a
        # better record it is not close to (union-find would have dropped it through the chain)
        stats["kept_with_matches"] = sum(1 for i in members.tolist() if i not in dups and i not in removed_for)
        stats["removed"] = len(dups)
        stats["verified_pairs"] = n
        return out

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

