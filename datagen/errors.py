"""Errors that speak to the user. The CLI prints them without a traceback and exits non-zero."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input or invocation. Exit code 2."""

    exit_code = 2


class InputError(UserError):
    """Bad input data, located precisely: file, line (or row / array item) and field."""

    def __init__(self, path: str, line: int | None, field: str | None, message: str, kind: str = "line") -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.message = message
        self.kind = kind  # "line" for JSONL, "item" for JSON arrays, "row" for Parquet
        super().__init__(self.format())

    @property
    def location(self) -> str:
        if self.line is None:
            return self.path
        if self.kind == "line":
            return f"{self.path}:{self.line}"
        return f"{self.path} ({self.kind} {self.line})"

    def format(self) -> str:
        where = self.location
        if self.field:
            return f"{where}: field '{self.field}': {self.message}"
        return f"{where}: {self.message}"


class FieldError(ValueError):
    """Raised by format converters; the reader adds the file and line."""

    def __init__(self, field: str, message: str, code: str = "invalid_field") -> None:
        self.field = field
        self.message = message
        self.code = code  # reason code for rejected.jsonl
        super().__init__(f"field '{field}': {message}")
