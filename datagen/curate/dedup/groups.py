"""What the deduplication stages share: the text they compare and a deterministic survivor.

The survivor among duplicates is the record with the highest quality score (the score
named by the stage's ``score_key``, e.g. ``scores["judge"]``; a record without it ranks below
any record with it), then the lowest id. Ids are content hashes, so the choice does not depend on
input order: shuffle the input and the same records survive.
"""

from __future__ import annotations

from typing import Sequence

from datagen.core.record import Record


def record_text(record: Record, which: str) -> str:
    """The text a dedup stage compares: ``instruction+response`` (default), ``instruction``,
    ``response`` or ``conversation`` (every turn, the system message included)."""
    if which == "instruction":
        return record.instruction
    if which == "response":
        return record.response
    if which == "conversation":
        return "\n".join(m.content for m in record.messages)
    return record.instruction + "\n" + record.response


def survivor_rank(record: Record, score_key: str | None) -> tuple[int, float, str]:
    """Sort key: the smallest key survives (has the score, highest score, lowest id)."""
    score = record.scores.get(score_key) if score_key else None
    if score is None:
        return (1, 0.0, record.id)
    return (0, -float(score), record.id)


def pick_survivor(records: Sequence[Record], members: Sequence[int], score_key: str | None) -> int:
    """Index (into ``records``) of the member that survives."""
    return min(members, key=lambda i: survivor_rank(records[i], score_key))
