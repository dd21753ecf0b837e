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
import re
import sys
import unicodedata
from functools import lru_cache
from typing import Any

from datagen.core.record import Record
from datagen.curate.base import FilterContext, Verdict
from datagen.curate.config import ExactConfig
from datagen.curate.dedup.groups import pick_survivor, record_text
from datagen.core.progress import bar as progress_bar

_WS = re.compile(r"\s+")


@lru_cache(maxsize=1)
def _punctuation_table() -> dict[int, str]:
    """Every Unicode punctuation character (categories P*) -> a space, for ``str.translate``."""
    return {cp: " " for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)).startswith("P")}


def normalize(text: str) -> str:
    """NFKC, casefold, punctuation stripped, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_punctuation_table())
    return _WS.sub(" ", text).strip()


def digest(text: str) -> bytes:
    return hashlib.blake2b(normalize(text).encode("utf-8"), digest_size=16).digest()


class ExactDedup:
    name = "exact"
    score_names: tuple[str, ...] = ()

    def __init__(self, config: ExactConfig | None = None) -> None:
        self.config = config or ExactConfig()

    def annotate(self, records: list[Record], ctx: FilterContext) -> None:
        groups: dict[bytes, list[int]] = {}
        with progress_bar(len(records), "exact", show=ctx is None or ctx.progress, leave=False) as bar:
            for i, rec in enumerate(records):
                rec.flags.pop(self.name, None)
                groups.setdefault(digest(record_text(rec, self.config.text)), []).append(i)
                bar.update(1)
        n_groups = 0
        for members in groups.values():
            if len(members) < 2:
                continue
            n_groups += 1
            keep = pick_survivor(records, members, self.config.score_key)
            for i in members:
                if i != keep:
                    records[i].flags[self.name] = {"duplicate_of": records[keep].id, "group_size": len(members)}
        ctx.stats.extra.setdefault("exact", {})["duplicate_groups"] = n_groups

    def verdict(self, record: Record) -> Verdict:
        info = record.flags.get(self.name)
        if info and info.get("duplicate_of"):
            return "exact_duplicate", {"duplicate_of": info["duplicate_of"], "group_size": info.get("group_size")}
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "text": self.config.text, "score_key": self.config.score_key,
                "normalization": "NFKC, casefold, punctuation removed, whitespace collapsed"}
