"""What the deduplication stages share: the text they compare and a deterministic survivor.

The survivor among duplicates is the record with the highest quality score (the score
named by the stage's ``score_key``, e.g. ``scores["judge"]``; a record without it ranks below
any record with it), then the lowest id. Ids are content hashes, so the choice does not depend on
input order: shuffle the input and the same records survive.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

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
    if score is None or score != score:  # none, or NaN
        return (1, 0.0, record.id)
    return (0, -float(score), record.id)


def pick_survivor(records: Sequence[Record], members: Sequence[int], score_key: str | None) -> int:
    """Index (into ``records``) of the member that survives."""
    return min(members, key=lambda i: survivor_rank(records[i], score_key))


# what a decision needs of the records at some indices of a stage's input, beyond their keys
# (``stage.fetch_view(record)``: MinHash's shingle sets, for the exact Jaccard of its candidates)
Fetch = Callable[[np.ndarray], dict[int, Any]]


# -- the same rule over compact keys (a record's rank without the record) ------------------------
def rank_keys(records: Sequence[Record], score_key: str | None) -> dict[str, np.ndarray]:
    """What :func:`survivor_rank` needs of each record, as arrays: whether it has the score (a
    NaN is none), the score, and the id as an integer (ids are 16 hex digits, so the integer
    order is the id order): 17 bytes a record, wherever the record itself is."""
    scores = [r.scores.get(score_key) if score_key else None for r in records]
    scores = [None if s is not None and s != s else s for s in scores]  # NaN: no score
    return {
        "has_score": np.array([s is not None for s in scores], dtype=bool),
        "score": np.array([float(s) if s is not None else 0.0 for s in scores], dtype=np.float64),
        "id": np.array([int(r.id, 16) for r in records], dtype=np.uint64),
    }


def ranked(keys: dict[str, np.ndarray], members: np.ndarray) -> np.ndarray:
    """``members`` (indices into the key arrays), best first: the score first (those without it
    last), the highest score, then the lowest id, then the lowest index (identical records)."""
    members = np.asarray(members, dtype=np.int64)
    order = np.lexsort((members, keys["id"][members], -keys["score"][members], ~keys["has_score"][members]))
    return members[order]


def survivor_walk(place: np.ndarray, a: np.ndarray, b: np.ndarray, sim: np.ndarray) -> dict[int, tuple[int, float]]:
    """The survivor rule over verified pairs ``(a[k], b[k])`` of similarity ``sim[k]``, without
    chains: records are walked by ``place`` (an index's position in the walk, best first); one
    with a pair among the records already kept is a duplicate of the most similar of them (a tie:
    the one walked first); any other is kept. Returns ``{duplicate: (kept record, similarity)}``."""
    if not len(a):
        return {}
    later = np.where(place[a] > place[b], a, b)
    earlier = a + b - later
    order = np.lexsort((place[earlier], -np.asarray(sim, dtype=np.float64), place[later]))
    later, earlier, sim = later[order], earlier[order], np.asarray(sim)[order]
    dropped: dict[int, tuple[int, float]] = {}
    decided = -1
    for k in range(len(later)):
        r = int(later[k])
        if r == decided:
            continue  # its most similar kept partner came first
        e = int(earlier[k])
        if e not in dropped:  # every pair of ``e`` as the later one came before: it is decided
            dropped[r] = (e, float(sim[k]))
            decided = r
    return dropped


def id_hex(keys: dict[str, np.ndarray], i: int) -> str:
    return format(int(keys["id"][i]), "016x")


def concat_keys(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Key arrays of successive shards as one set (the shards in input order)."""
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
