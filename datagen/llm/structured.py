"""Structured output: the JSON schema a reply should follow, and reading a field back out of it.

A generator whose reply we parse asks for a one-field JSON object (``{"verdict": "equal"}``,
``{"instruction": "..."}``) through ``GenParams.json_schema``. A backend that can constrain its
output (an OpenAI-compatible server that takes ``response_format``) returns exactly that; one that
cannot returns free text. :func:`field_of` reads the field from the JSON form, and the caller falls
back to its free-text parser when it is None, so one reader serves both.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

_PARTIAL = re.compile(r'^\s*\{\s*"(?P<key>[A-Za-z_]+)"\s*:\s*"(?P<value>(?:[^"\\]|\\.)*)', re.S)


def one_field_schema(key: str, *, enum: Sequence[Any] | None = None, kind: str = "string") -> str:
    """Canonical JSON text of the schema of ``{key: value}``: a non-empty string, or one of ``enum``."""
    prop: dict[str, Any] = {"type": kind}
    if enum is not None:
        prop["enum"] = list(enum)
    elif kind == "string":
        prop["minLength"] = 1
    schema = {"type": "object", "properties": {key: prop}, "required": [key], "additionalProperties": False}
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def field_of(text: str, key: str, *, partial: bool = False) -> Any:
    """``key``'s value in a JSON-object reply, or None when the reply is not one. ``partial``: a
    reply cut by the token limit inside the string value (``{"instruction": "Write a po``) gives
    what was written of it."""
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        return obj.get(key)
    if partial:
        m = _PARTIAL.match(text)
        if m and m.group("key") == key:
            raw = m.group("value").rstrip("\\")
            try:
                return json.loads(f'"{raw}"')
            except ValueError:
                return raw
    return None
