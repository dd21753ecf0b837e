"""Exact duplicates after normalization.

Two records are exact duplicates when their compared text (instruction + response by default,
or the instruction alone: ``exact.text``) is equal after normalization: Unicode NFKC, casefold,
punctuation removed, every run of whitespace collapsed to one space. So "Hello, World!" and
"hello world" collide, and so do full-width and ASCII forms of the same characters.

The survivor of each group is the record with the highest quality score, then the lowest id
(:mod:`datagen.curate.dedup.groups`). The others get ``flags["exact"] = {"duplicate_of": <survivor id>,
"group_size": k}`` and the verdict drops them as ``exact_duplicate``. Only a 16-byte digest per
record is kept, never a second copy of the text.
"""

from __future__ import annotations

import hashlib
import sys
import unicodedata
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from datagen.core.record import Record
from datagen.curate.base import FilterContext, Verdict
from datagen.curate.config import ExactConfig
from datagen.curate.dedup.groups import Fetch, id_hex, rank_keys, ranked, record_text

@lru_cache(maxsize=1)
def _punctuation_table() -> dict[int, str]:
    """Every Unicode punctuation character (categories P*) -> a space, for ``str.translate``."""
    return {cp: " " for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)).startswith("P")}


# ASCII's punctuation (category P: not the symbols $+<=>^`|~) -> a space
_ASCII_P = bytes(c for c in range(128) if unicodedata.category(chr(c)).startswith("P"))
_ASCII_PUNCTUATION = bytes.maketrans(_ASCII_P, b" " * len(_ASCII_P))


def normalize(text: str) -> str:
    """NFKC, casefold, punctuation stripped, whitespace collapsed."""
    if text.isascii():  # most text: NFKC changes nothing, casefold is lower, one byte per character
        text = text.lower().encode("ascii").translate(_ASCII_PUNCTUATION).decode("ascii")
    else:
        text = unicodedata.normalize("NFKC", text).casefold().translate(_punctuation_table())
    return " ".join(text.split())  # str.split's whitespace is re's \s: every run to one space, stripped


def digest(text: str) -> bytes:
    return hashlib.blake2b(normalize(text).encode("utf-8"), digest_size=16).digest()


class ExactDedup:
    name = "exact"
    streaming = "keys"  # runs over shards of its input on disk (datagen.curate.shards)
    score_names: tuple[str, ...] = ()

    def __init__(self, config: ExactConfig | None = None) -> None:
        self.config = config or ExactConfig()

    def keys(self, records: Sequence[Record]) -> dict[str, np.ndarray]:
        """What the decision needs of each record: its 16-byte digest and its rank (33 bytes)."""
        digests = np.array([digest(record_text(r, self.config.text)) for r in records], dtype="S16")
        return {"digest": digests, **rank_keys(records, self.config.score_key)}

    def decide(self, keys: dict[str, np.ndarray], fetch: Fetch | None = None, stats: dict[str, Any] | None = None,
               progress: bool = False) -> dict[int, dict[str, Any]]:
        """The flags of every record that is a duplicate, by index: each group of equal digests
        keeps its best record (:func:`ranked`)."""
        d = keys["digest"]
        out: dict[int, dict[str, Any]] = {}
        n_groups = 0
        if len(d):
            _, inverse, counts = np.unique(d, return_inverse=True, return_counts=True)
            by_group = np.argsort(inverse, kind="stable")
            ends = np.cumsum(counts)
            for g in np.flatnonzero(counts > 1):
                members = ranked(keys, by_group[ends[g] - counts[g]:ends[g]])
                n_groups += 1
                keep = id_hex(keys, members[0])
                for i in members[1:]:
                    out[int(i)] = {"duplicate_of": keep, "group_size": int(counts[g])}
        if stats is not None:
            stats["duplicate_groups"] = n_groups
        return out

    def annotate(self, records: list[Record], ctx: FilterContext) -> None:
        flags = self.decide(self.keys(records), stats=ctx.stats.extra.setdefault("exact", {}))
        for i, rec in enumerate(records):
            rec.flags.pop(self.name, None)
            if i in flags:
                rec.flags[self.name] = flags[i]

    def verdict(self, record: Record) -> Verdict:
        info = record.flags.get(self.name)
        if info and info.get("duplicate_of"):
            return "exact_duplicate", {"duplicate_of": info["duplicate_of"], "group_size": info.get("group_size")}
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "text": self.config.text, "score_key": self.config.score_key,
                "normalization": "NFKC, casefold, punctuation removed, whitespace collapsed"}
