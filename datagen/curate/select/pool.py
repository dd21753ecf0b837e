"""What ``datagen select`` holds of its input: compact keys, never the records.

The input is first read and checked into a record file (:meth:`InputSpec.write_records`, on the
executor). A :class:`Pool` is that file's keys, scanned shard by shard on the same executor
(:func:`scan`): per record its id, the byte offset of its line, its scores (one float64 column per
score name, NaN where the record has none: a record's scores are always finite) and the sha256 of
the text its embedding is keyed by. About 150 bytes a record, plus the embedding matrix of the
records that pass the screen; the records are read again, by offset, only to be written out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import IO, Any, Iterator, Sequence

import numpy as np


@dataclass
class Pool:
    """The keys of the ``n`` records of the record file ``path``, in file order."""

    path: str
    ids: np.ndarray  # bytes (``S``)
    offsets: np.ndarray  # int64: where each record's line starts
    names: list[str]  # the score columns
    scores: np.ndarray  # float64 (n, len(names)); NaN: no such score
    keys: np.ndarray  # uint8 (n, 32): sha256 of each record's embedding text (:func:`datagen.score.embeddings.embed_text`)

    def __len__(self) -> int:
        return len(self.ids)

    def id(self, i: int) -> str:
        return self.ids[i].decode()

    def key(self, i: int) -> str:
        return self.keys[i].tobytes().hex()

    def line(self, f: IO[bytes], i: int) -> bytes:
        f.seek(int(self.offsets[i]))
        return f.readline().rstrip(b"\n")

    def row(self, f: IO[bytes], i: int) -> dict[str, Any]:
        """Record ``i`` as the JSON object its line holds (the file's lines are ``Record.to_json()``)."""
        return json.loads(self.line(f, i))

    def score_dicts(self, rows: Sequence[int] | np.ndarray) -> Iterator[dict[str, float]]:
        """Each of ``rows``' scores as the record holds them (absent ones left out)."""
        for row in self.scores[np.asarray(rows, dtype=np.int64)].tolist():
            yield {n: v for n, v in zip(self.names, row) if v == v}

    def column(self, name: str, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Score ``name`` of ``rows`` (NaN where absent, or where no record has it)."""
        rows = np.asarray(rows, dtype=np.int64)
        if name not in self.names:
            return np.full(len(rows), np.nan)
        return self.scores[rows, self.names.index(name)]

    def present(self) -> list[str]:
        """The score names at least one record holds, sorted."""
        return sorted(n for k, n in enumerate(self.names) if len(self) and not np.isnan(self.scores[:, k]).all())

    def id_order(self) -> np.ndarray:
        """Rows by id, then (records of one conversation) by their line's text: the order of
        ``sorted(records, key=lambda r: (r.id, r.to_json()))``, so that the input's order never
        matters. Only the lines of a repeated id are read again."""
        order = np.argsort(self.ids, kind="stable")
        ids = self.ids[order]
        same = np.flatnonzero(ids[1:] == ids[:-1])
        if not len(same):
            return order
        with open(self.path, "rb") as f:
            start = 0
            for k in same:
                if k < start:
                    continue  # inside the run already sorted
                end = k + 1
                while end < len(ids) and ids[end] == ids[k]:
                    end += 1
                order[k:end] = sorted(order[k:end].tolist(), key=lambda i: self.line(f, i))
                start = end
        return order


def scan(path: str, start: int, end: int) -> dict[str, Any]:
    """The keys of the record lines in bytes ``[start, end)`` of ``path`` (a shard task)."""
    from datagen.core.kvcache import sha_key
    from datagen.core.record import RecordView
    from datagen.core.shards import Shard, lines
    from datagen.score.embeddings import embed_text

    ids, offsets, keys, rows = [], [], [], []
    names: dict[str, int] = {}
    pos = start
    for line in lines(Shard(path, start, end, 0)):
        here, pos = pos, pos + len(line)
        if not line.strip():
            continue
        rec = RecordView(line)
        ids.append(rec.id.encode())
        offsets.append(here)
        keys.append(bytes.fromhex(sha_key(embed_text(rec))))
        for n in rec.scores:
            names.setdefault(n, len(names))
        rows.append(rec.scores)
    scores = np.full((len(rows), len(names)), np.nan)
    for r, s in enumerate(rows):
        for n, v in s.items():
            scores[r, names[n]] = v
    return {"ids": ids, "offsets": np.asarray(offsets, dtype=np.int64), "names": list(names), "scores": scores,
            "keys": np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)}


def read_pool(path: str, executor: Any) -> Pool:
    """The :class:`Pool` of the record file ``path``, its shards scanned on ``executor``."""
    from datagen.core.shards import split

    parts = executor.map(scan, [(path, s.start, s.end) for s in split(path, executor.workers)])
    names = list(dict.fromkeys(n for p in parts for n in p["names"]))
    n = sum(len(p["ids"]) for p in parts)
    scores = np.full((n, len(names)), np.nan)
    at = 0
    for p in parts:
        cols = [names.index(c) for c in p["names"]]
        scores[at:at + len(p["ids"]), cols] = p["scores"]
        at += len(p["ids"])
    ids = [i for p in parts for i in p["ids"]]
    width = max((len(i) for i in ids), default=1)
    return Pool(path, np.array(ids, dtype=f"S{width}"), np.concatenate([p["offsets"] for p in parts]), names, scores,
                np.concatenate([p["keys"] for p in parts]))
