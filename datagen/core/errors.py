"""Errors that speak to the user. The CLI prints them without a traceback and exits non-zero."""

from __future__ import annotations

from typing import Any


def printable(text: str) -> str:
    """``text`` with any lone UTF-16 surrogate (from bad input) escaped, so that it can be
    printed or written as UTF-8."""
    return text.encode("utf-8", errors="backslashreplace").decode("utf-8")


def field_path(parts: list | tuple) -> str:
    """``["conversations", 1, "from"]`` -> ``conversations[1].from``, as errors name fields."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class UserError(Exception):
    """A mistake in the user's input or invocation. Exit code 2."""

    exit_code = 2


class InputError(UserError):
    """Bad input data, located precisely: file, line (or row / array item) and field."""

    def __init__(self, path: str, line: int | None, field: str | None, message: str, kind: str = "line", item: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.message = message
        self.kind = kind  # "line" for JSONL and JSON arrays, "row" for Parquet
        self.item = item  # the 1-based position in a JSON array
        super().__init__(self.format())

    def __reduce__(self) -> tuple[Any, ...]:  # raised in a worker process, it crosses back whole
        return (type(self), (self.path, self.line, self.field, self.message, self.kind, self.item), dict(self.__dict__))

    @property
    def location(self) -> str:
        """``data.jsonl:7``, ``data.json:17 (item 4)``, ``data.parquet (row 9)``."""
        if self.line is None:
            return self.path
        if self.kind == "line":
            where = f"{self.path}:{self.line}"
            return f"{where} (item {self.item})" if self.item is not None else where
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


class RunStopped(RuntimeError):
    """A run stopped cleanly before the end, and rerunning the same command resumes it: nothing
    new is sent, the requests in flight finish and are kept (cached), the parts of the run that
    were not finished stay unsealed. Exit code 3.

    ``pending`` is set by the run that stopped: ``(left, total, unit)``, e.g. ``(17, 40,
    "prompts")``: how much of it the rerun has to do."""

    exit_code = 3
    pending: tuple[int, int, str] | None = None

    def pending_text(self) -> str:
        if self.pending is None:
            return ""
        left, total, unit = self.pending
        return f"{left} of {total} {unit} pending"


class BudgetExceeded(RunStopped):
    """The run's token or cost budget is spent; rerunning with a larger budget resumes."""


class BackendUnavailable(RunStopped):
    """Requests failed after all their retries for a reason that is the server's, not the
    request's (5xx, 429, timeouts, refused connections, malformed replies, a refused key or
    model). Such a failure is never taken as a prompt's answer: the batch that saw it raises this
    once the requests in flight are done, the part holding them is not sealed, and rerunning once
    the server answers sends exactly the requests that have no answer yet."""


class LLMError(RuntimeError):
    """A backend could not be set up (bad model path, missing package, unreachable server...)."""
