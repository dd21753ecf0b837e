"""Benchmark files as they ship, read into prompt items for the decontamination stage.

A file is one of:

* JSONL, a JSON array or Parquet of rows (read by :func:`datagen.core.io.open_rows`, so a bad row
  is an error naming the file and line): each row is an object holding the prompt, or a string;
* plain text (``.txt``, or any file whose first character is not ``{`` or ``[``): one item per
  non-blank line.

The prompt field of an object is named with ``field`` (a dotted path such as ``question.stem``),
or found from the file's first row: the first of :data:`TEXT_FIELDS` that holds a string (an
Alpaca-style row's non-empty ``input`` is appended to its ``instruction``), else a list in
:data:`TURN_FIELDS`: MT-Bench's ``turns`` (strings) or a ``messages`` / ``conversations`` list,
whose user turns are taken. Every row must then hold that field. A list gives one item per turn.

An item's id names its file and place: ``gsm8k.jsonl:12``, ``arc.json:40 (item 7)``,
``mt_bench.jsonl:3 turn 2``: the evidence a rejected record carries.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from datagen.core.errors import InputError, UserError

TEXT_FIELDS = ("instruction", "prompt", "question", "input", "query", "problem", "text")
TURN_FIELDS = ("turns", "messages", "conversations")
USER_ROLES = ("user", "human")


@dataclass(frozen=True)
class Item:
    """One benchmark prompt: ``id`` (file and place), the file, the text."""

    id: str
    file: str
    text: str


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, to tell whether a benchmark changed between runs."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_items(paths: Sequence[str | Path], field: str | None = None) -> list[Item]:
    """The prompt items of every file in ``paths``, in file then row order.

    Raises:
        UserError: a file is missing, unreadable or holds no prompt (located when it is a row).
    """
    items: list[Item] = []
    for path in paths:
        found = list(_file_items(Path(path), field))
        if not found:
            raise UserError(f"{path}: holds no benchmark prompt")
        items.extend(found)
    return items


def _is_text(p: Path) -> bool:
    if p.suffix.lower() == ".txt":
        return True
    if p.suffix.lower() in (".jsonl", ".json", ".parquet"):
        return False
    with open(p, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf").lstrip()
    return not head.startswith((b"{", b"[", b'"'))


def _file_items(p: Path, field: str | None) -> Iterator[Item]:
    if not p.is_file():
        raise UserError(f"{p}: no such file" if not p.exists() else f"{p}: is not a file")
    try:
        text_file = _is_text(p)
    except OSError as e:
        raise UserError(f"{p}: cannot be read ({e.strerror or e})") from None
    if text_file:
        yield from _text_items(p)
        return
    from datagen.core.io import open_rows, row_error

    kind, rows = open_rows(p)
    chosen = field
    for line, item, obj in rows:
        where = f"{p}:{line}" + (f" (item {item})" if item is not None else "") if kind != "parquet" else f"{p} (row {line})"
        if isinstance(obj, str):
            texts = [obj]
        elif isinstance(obj, dict):
            if chosen is None:
                chosen = detect_field(obj)
                if chosen is None:
                    keys = ", ".join(sorted(obj)) or "none"
                    raise row_error(p, kind, line, item, None, f"no prompt field found (keys: {keys}); expected one of "
                                    f"{', '.join(TEXT_FIELDS + TURN_FIELDS)}, or name it with decontaminate.field")
            try:
                texts = prompt_texts(obj, chosen)
            except ValueError as e:
                raise row_error(p, kind, line, item, chosen, str(e)) from None
        else:
            raise row_error(p, kind, line, item, None, f"expected an object or a string, got {type(obj).__name__}")
        for k, t in enumerate(texts, 1):
            if t.strip():
                yield Item(where + (f" turn {k}" if len(texts) > 1 else ""), str(p), t)


def _text_items(p: Path) -> Iterator[Item]:
    with open(p, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(str(p), lineno, None, f"bytes are not valid UTF-8 (byte {e.start + 1} of the line)") from None
            if lineno == 1:
                line = line.lstrip("\ufeff")
            if line.strip():
                yield Item(f"{p}:{lineno}", str(p), line.strip())


def detect_field(obj: dict[str, Any]) -> str | None:
    """The prompt field of a row: the first of :data:`TEXT_FIELDS` holding a non-empty string,
    else the first of :data:`TURN_FIELDS` holding a list."""
    for name in TEXT_FIELDS:
        if isinstance(obj.get(name), str) and obj[name].strip():
            return name
    for name in TURN_FIELDS:
        if isinstance(obj.get(name), list):
            return name
    return None


def prompt_texts(obj: dict[str, Any], field: str) -> list[str]:
    """The prompt text(s) of ``obj`` under ``field`` (a dotted path); raises ValueError saying
    what is wrong with it."""
    value: Any = obj
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ValueError("missing (name the prompt field with decontaminate.field)")
        value = value[part]
    if isinstance(value, str):
        extra = obj.get("input") if field == "instruction" else None
        return [value + "\n" + extra if isinstance(extra, str) and extra.strip() else value]
    if isinstance(value, list):
        return [_turn_text(turn, k) for k, turn in enumerate(value) if _is_user(turn)]
    raise ValueError(f"expected a string or a list of turns, got {type(value).__name__}")


def _is_user(turn: Any) -> bool:
    if isinstance(turn, dict):
        role = turn.get("role", turn.get("from"))
        return isinstance(role, str) and role.lower() in USER_ROLES
    return True


def _turn_text(turn: Any, k: int) -> str:
    text = turn.get("content", turn.get("value")) if isinstance(turn, dict) else turn
    if not isinstance(text, str):
        raise ValueError(f"turn {k + 1}: expected a string or an object with a string 'content' or 'value'")
    return text
