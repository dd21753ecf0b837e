"""The equality judge of Evol-Instruct's first elimination rule: did an evolution change the
instruction? Two instructions whose normalized text is at least :data:`NEAR_IDENTICAL` similar
are equal without asking; otherwise a judge LLM answers with ``prompts/evol/equality.j2``, and
:func:`parse_equality` reads its verdict: "equal", "not_equal", or "unclear" (which is no
evidence of equality)."""

from __future__ import annotations

import difflib
import re

from datagen.core.text import tokens
from datagen.llm.structured import field_of, one_field_schema

EQUALITY_TEMPLATE = "evol/equality"
NEAR_IDENTICAL = 0.97  # similarity of normalized strings at or above which we do not ask the judge
_VERDICT = re.compile(r"\b(not\s+equal|unequal|not\s+the\s+same|different|equal|the\s+same|identical)\b")
EQUALITY_SCHEMA = one_field_schema("verdict", enum=("equal", "not_equal"))


def normalize(text: str) -> str:
    """Lowercased words (CJK: characters), one space apart: what similarity compares."""
    return " ".join(tokens(text))


def similarity(a: str, b: str) -> float:
    na, nb = normalize(a), normalize(b)
    if na == nb:
        return 1.0
    return difflib.SequenceMatcher(None, na, nb, autojunk=False).ratio()


def parse_equality(text: str) -> str:
    """The judge's verdict: "equal", "not_equal" or "unclear": a structured reply's ``verdict``,
    else the first verdict phrase in the text."""
    structured = field_of(text, "verdict")
    if structured in ("equal", "not_equal"):
        return structured
    m = _VERDICT.search(text.lower())
    if not m:
        return "unclear"
    phrase = " ".join(m.group(1).split())
    return "not_equal" if phrase in ("not equal", "unequal", "not the same", "different") else "equal"
