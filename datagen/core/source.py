"""The records a command reads: a file, its format, ``--limit`` and ``--on-error``, and what of a
run's settings they decide."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from datagen.core.errors import UserError
from datagen.core.record import Record, Rejection


@dataclass(frozen=True)
class InputSpec:
    """The records a command reads: the file, its format (None: detected), ``--limit`` and
    ``--on-error``."""

    path: str
    format: str | None = None
    limit: int | None = None
    on_error: str = "raise"

    @classmethod
    def from_args(cls, args: argparse.Namespace, path: str | Path | None = None) -> InputSpec:
        return cls(str(args.input if path is None else path), getattr(args, "format", None), getattr(args, "limit", None),
                   getattr(args, "on_error", "raise"))

    def read(self, on_reject: Callable[[Rejection], None], require_answer: bool = True) -> list[Record]:
        return list(self.iter(on_reject, require_answer))

    def iter(self, on_reject: Callable[[Rejection], None], require_answer: bool = True) -> Iterator[Record]:
        """The records one at a time (a bad row raises, or goes to ``on_reject``, when reached)."""
        from datagen.core.io import read_records

        if self.limit is not None and self.limit < 1:
            raise UserError("--limit must be >= 1")
        return read_records(self.path, self.format, on_error=self.on_error, on_reject=on_reject, limit=self.limit,
                            require_answer=require_answer)

    def settings(self, key: str = "input") -> dict[str, Any]:
        """What of a run's settings the records it reads decide: the file and its sha256 (an
        edited input is a different run), the format, ``--limit`` and ``--on-error``."""
        from datagen.core.rundir import file_digest

        return {key: self.path, f"{key}_sha256": file_digest(self.path), "format": self.format, "limit": self.limit, "on_error": self.on_error}
