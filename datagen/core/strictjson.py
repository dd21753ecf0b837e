"""Strict JSON (RFC 8259) for reading input rows: NaN/Infinity, numbers that overflow to infinity,
duplicate keys (which JSON leaves undefined: most parsers silently keep the last value, losing the
first) and lone UTF-16 surrogates (not Unicode text; they cannot be written back as UTF-8) are
refused with the field, like any other bad field; nesting is limited to :data:`MAX_DEPTH` levels.
:mod:`datagen.core.io` adds the file and line."""

from __future__ import annotations

import json
import math
from typing import Any

from datagen.core.errors import field_path, printable

MAX_DEPTH = 64


class BadValue(ValueError):
    """A JSON value this tool refuses (see above), raised by the decoder's hooks."""

    def __init__(self, field: str | None, message: str, code: str) -> None:
        super().__init__(message)
        self.field, self.message, self.code = field, message, code


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise BadValue(dup, "appears twice in one object (duplicate JSON key); keep one", "duplicate_key")
    return obj


def _no_constant(name: str) -> Any:
    raise BadValue(None, f"non-standard JSON value {name} (JSON has no NaN or Infinity; use null)", "non_finite_number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):
        raise BadValue(None, f"number {text[:30]} is too large for a 64-bit float", "non_finite_number")
    return value


DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_finite_float)


def _path(parts: list[Any]) -> str:
    return printable(field_path(parts))


def check_value(obj: Any) -> BadValue | None:
    """The first problem in a decoded row: nesting deeper than MAX_DEPTH, a lone surrogate in a
    string or a key, a non-finite float (Parquet can hold them). Iterative, so any depth is safe."""
    stack: list[tuple[Any, list[Any]]] = [(obj, [])]
    while stack:
        value, where = stack.pop()
        if len(where) > MAX_DEPTH:
            return BadValue(_path(where[:3]) or None, f"nested more than {MAX_DEPTH} levels deep", "too_deep")
        if isinstance(value, str):
            if _has_surrogate(value):
                return BadValue(_path(where) or None, "holds a lone UTF-16 surrogate (\\ud800-\\udfff escape without its pair): not valid Unicode text", "invalid_unicode")
        elif isinstance(value, float):
            if not math.isfinite(value):
                return BadValue(_path(where) or None, f"non-finite number {value} (JSON has no NaN or Infinity)", "non_finite_number")
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, str) and _has_surrogate(k):
                    return BadValue(_path(where + [k]), "key holds a lone UTF-16 surrogate: not valid Unicode text", "invalid_unicode")
                stack.append((v, where + [k]))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, where + [i]) for i, v in enumerate(value))
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def decode_line(line: str) -> Any:
    """One strict JSON value; raises json.JSONDecodeError or BadValue."""
    try:
        obj = DECODER.decode(line)
    except RecursionError:
        raise BadValue(None, f"nested too deeply (more than {MAX_DEPTH} levels)", "too_deep") from None
    # the cheap tests first: a row can only be too deep with many brackets, and only hold a lone
    # surrogate if it spells one as an escape
    if line.count("[") + line.count("{") > MAX_DEPTH or "\\ud" in line or "\\uD" in line:
        bad = check_value(obj)
        if bad is not None:
            raise bad
    return obj
