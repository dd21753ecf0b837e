"""The records a command reads: a file (or a ``save_to_disk`` folder, or a cached dataset id), its
format, ``--split``, ``--map``, ``--roles``, ``--limit`` and ``--on-error``, and what of a run's
settings they decide."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from datagen.core.errors import UserError
from datagen.core.record import Record, Rejection
from datagen.core.shapes import RowMap


@dataclass(frozen=True)
class InputSpec:
    """The records a command reads: the file, its format (None: detected), ``--limit``,
    ``--on-error``, a DatasetDict's ``--split``, and ``--map`` / ``--roles`` (``src=dst,...``)."""

    path: str
    format: str | None = None
    limit: int | None = None
    on_error: str = "raise"
    split: str | None = None
    columns: str | None = None
    roles: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace, path: str | Path | None = None) -> InputSpec:
        spec = cls(str(args.input if path is None else path), getattr(args, "format", None), getattr(args, "limit", None),
                   getattr(args, "on_error", "raise"), getattr(args, "split", None), getattr(args, "map", None),
                   getattr(args, "roles", None))
        spec.mapping  # a malformed --map or --roles is refused before any work
        return spec

    @property
    def mapping(self) -> RowMap | None:
        return RowMap.parse(self.columns, self.roles)

    def read(self, on_reject: Callable[[Rejection], None], require_answer: bool = True,
             check: Callable[[Record], None] | None = None) -> list[Record]:
        return list(self.iter(on_reject, require_answer, check))

    def iter(self, on_reject: Callable[[Rejection], None], require_answer: bool = True,
             check: Callable[[Record], None] | None = None) -> Iterator[Record]:
        """The records one at a time (a bad row raises, or goes to ``on_reject``, when reached;
        ``check`` refuses a record as a bad row: :func:`datagen.core.io.read_records`)."""
        from datagen.core.io import read_records

        if self.limit is not None and self.limit < 1:
            raise UserError("--limit must be >= 1")
        return read_records(self.path, self.format, on_error=self.on_error, on_reject=on_reject, limit=self.limit,
                            require_answer=require_answer, split=self.split, mapping=self.mapping, check=check)

    def write_records(self, out: str | Path, on_reject: Callable[[Rejection], None], workers: int = 1, require_answer: bool = True,
                      executor: Any = None) -> int:
        """Every record, read and checked, into ``out`` (record JSONL); returns how many. A JSONL
        input of more than one shard (:mod:`datagen.core.shards`) is read by ``workers``
        processes, each its byte range: the same file, the same line numbers in errors and
        rejections, the first bad row (in file order) raised, as one process reads it.
        ``executor`` (the caller's, left open; its ``workers`` then count): where the shards are read."""
        from datagen.core.io import file_format, read_shard
        from datagen.core.shards import Executor, split
        from datagen.core.writing import concat_files, write_jsonl

        workers = executor.workers if executor is not None else workers
        parts = split(self.path, workers) if workers > 1 and self.limit is None and Path(self.path).is_file() else []
        mapping = self.mapping
        kind, fmt = file_format(self.path, mapping) if len(parts) > 1 else ("", None)
        if kind != "jsonl" or not (self.format or fmt):
            return write_jsonl(out, self.iter(on_reject, require_answer))
        first = [1]
        with open(self.path, "rb") as f:  # the number of each shard's first line
            for shard in parts[:-1]:
                first.append(first[-1] + f.read(shard.end - shard.start).count(b"\n"))
        tasks = [(self.path, (s.start, s.end, first[k]), self.format or fmt, self.on_error, require_answer, f"{out}.{k}", mapping,
                  self.format is None) for k, s in enumerate(parts)]
        pool = executor if executor is not None else Executor(workers)
        try:
            results = pool.map(read_shard, tasks)
            concat_files(out, [task[5] for task in tasks])
            n = sum(count for count, _ in results)
            for _, rejects in results:
                for r in rejects:
                    on_reject(r)
        finally:
            if pool is not executor:
                pool.close()
            for task in tasks:
                Path(task[5]).unlink(missing_ok=True)
        if n == 0 and not any(rejects for _, rejects in results):
            from datagen.core.errors import InputError

            raise InputError(self.path, 1, None, "file is empty: no records")
        return n

    def settings(self, key: str = "input") -> dict[str, Any]:
        """What of a run's settings the records it reads decide: the file and its sha256 (an
        edited input is a different run; a folder or a dataset id: over the files read), the
        format, ``--limit`` and ``--on-error``, and ``--split``, ``--map``, ``--roles`` when given."""
        from datagen.core.hfdata import input_digest

        digest = input_digest(self.path, self.split)
        given = {k: v for k, v in (("split", self.split), ("map", self.columns), ("roles", self.roles)) if v}
        return {key: self.path, f"{key}_sha256": digest, "format": self.format, "limit": self.limit, "on_error": self.on_error, **given}
