"""The record index: several run directories in pipeline order read as one history. A record
(keyed by its content-hash id) collects one :class:`Event` per run in which it appears, kept or
rejected, and its *fate* is its last event; a record is *curated* when its fate is "kept" by the
last (primary) run. Lineage follows ``parent_ids`` back through the runs."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any



from datagen.report.runs import Run

MAX_TEXT_CHARS = 4000  # text kept per record in the report (the run directory keeps all of it)
PREVIEW_CHARS = 160  # instruction shown per row of the record browser
NONE_LABEL = "(none)"
QUALITY_SCORES = ("judge", "ifd", "complexity", "complexity_features", "relevance")
LENGTH_SCORES = ("response_words", "response_tokens")  # the heuristics stage's (tokens with length_unit: tokens)
DEDUP_KINDS = {"exact": "exact", "minhash": "minhash", "semantic": "semantic", "select": "too similar"}


# -- the record index --------------------------------------------------------------------------
@dataclass
class Event:
    """What one run did with a record: kept it, or rejected it at ``stage`` for ``reason``."""

    run: str
    status: str  # "kept" | "rejected"
    stage: str = ""
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class Entry:
    """One record across the runs: its latest content and every event, in run order."""

    id: str
    record: dict[str, Any]
    events: list[Event] = field(default_factory=list)

    @property
    def fate(self) -> Event:
        return self.events[-1]

    @property
    def scores(self) -> dict[str, float]:
        return self.record.get("scores") or {}

    @property
    def meta(self) -> dict[str, Any]:
        return self.record.get("meta") or {}

    @property
    def source(self) -> str:
        return str(self.record.get("source") or NONE_LABEL)

    @property
    def parent_id(self) -> str | None:
        return self.record.get("parent_id")

    @property
    def instruction(self) -> str:
        return last_turn(self.record, "user")

    @property
    def response(self) -> str:
        msgs = self.record.get("messages") or []
        return msgs[-1].get("content", "") if msgs and msgs[-1].get("role") == "assistant" else ""


def last_turn(record: dict[str, Any], role: str) -> str:
    for m in reversed(record.get("messages") or []):
        if m.get("role") == role:
            return str(m.get("content", ""))
    return ""


def _row_record(row: dict[str, Any], run: str, n: int) -> dict[str, Any]:
    """The record of a rejection row; a bad input row (no record) becomes a stand-in record that
    shows the raw row."""
    rec = row.get("record")
    if isinstance(rec, dict) and rec.get("messages"):
        return rec
    raw = row.get("raw")
    text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)
    where = row.get("location") or f"{run}:rejected:{n}"
    return {"id": f"row:{where}", "messages": [{"role": "user", "content": text or ""}], "source": "input", "parent_id": None,
            "scores": {}, "flags": {}, "meta": {"location": where}}


@dataclass
class Index:
    """Every record of the runs, by id, in first-seen order; ``primary`` is the last run."""

    entries: dict[str, Entry]
    runs: list[str]
    aliases: dict[str, str] = field(default_factory=dict)  # an id before redaction -> the id after

    def resolve(self, rid: str) -> str:
        """The id the record ``rid`` is known by now (after any redaction)."""
        return resolve(self.aliases, rid)

    @property
    def primary(self) -> str:
        return self.runs[-1] if self.runs else ""

    def curated(self, e: Entry) -> bool:
        return e.fate.status == "kept" and e.fate.run == self.primary

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def totals(self) -> dict[str, int]:
        """Distinct records seen, how many are curated, rejected, or kept by an earlier run and
        not passed on to a later one ("other")."""
        curated = sum(1 for e in self if self.curated(e))
        rejected = sum(1 for e in self if e.fate.status == "rejected")
        return {"records": len(self), "curated": curated, "rejected": rejected, "other": len(self) - curated - rejected}


def build_index(runs: Sequence[Run]) -> Index:
    """Merge the runs' records and rejections by id. Within a run, rejections are read before the
    kept records, so when one conversation was both kept and rejected (identical copies), kept
    wins; across runs, the later run's event and content come last."""
    entries: dict[str, Entry] = {}
    aliases: dict[str, str] = {}

    def add(rec: dict[str, Any], ev: Event) -> None:
        rid = str(rec.get("id") or "")
        e = entries.get(rid)
        before = (rec.get("meta") or {}).get("redacted_from")
        if e is None and isinstance(before, str) and resolve(aliases, before) in entries:
            old = resolve(aliases, before)
            e = entries[rid] = entries.pop(old)
            e.id, aliases[old] = rid, rid
        if e is None:
            entries[rid] = Entry(rid, rec, [ev])
        else:
            e.record = rec
            e.events.append(ev)

    for run in runs:
        for n, row in enumerate(run.rejected, 1):
            ev = Event(run.label, "rejected", str(row.get("stage", "")), str(row.get("reason", "")), row.get("evidence") or {})
            add(_row_record(row, run.label, n), ev)
        for rec in run.records:
            add(rec, Event(run.label, "kept"))
    return Index(entries, [r.label for r in runs], aliases)


def resolve(aliases: dict[str, str], rid: str) -> str:
    seen = {rid}
    while rid in aliases and aliases[rid] not in seen:
        rid = aliases[rid]
        seen.add(rid)
    return rid


def lineage(index: Index, rid: str, limit: int = 50) -> list[tuple[str, bool]]:
    """The parent chain of record ``rid`` (nearest parent first), following ``parent_id`` across
    the runs: ``(id, found in the runs)``. The chain stops at a parent the runs do not hold (a seed,
    say), at a cycle, or after ``limit`` steps."""
    chain: list[tuple[str, bool]] = []
    seen = {rid}
    e = index.entries.get(rid)
    pid = index.resolve(e.parent_id) if e and e.parent_id else None
    while pid and pid not in seen and len(chain) < limit:
        parent = index.entries.get(pid)
        chain.append((pid, parent is not None))
        if parent is None:
            break
        seen.add(pid)
        pid = index.resolve(parent.parent_id) if parent.parent_id else None
    return chain
