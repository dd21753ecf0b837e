"""Instruction complexity: two honest proxies for DEITA's complexity score.

DEITA (Liu et al., 2023, "What Makes Good Data for Alignment?") scores complexity with a LLaMA
model fine-tuned on ChatGPT's 1-6 rankings of Evol-Instruct variants of the same seed instruction.
That scorer is a separate multi-GB download, so we do **not** reproduce it. We offer instead:

* ``complexity`` (LLM-rated): the configured judge LLM reads the instruction with
  ``prompts/quality/complexity.j2`` (the question DEITA's scorer answers, "the complexity score of
  this query", with the 1-6 scale spelled out) and the score is the expected rating over its
  probabilities for "1".."6" (:mod:`datagen.score.rating`). It is DEITA's *direct scoring*
  baseline, not its trained scorer; it is only as good as the judge (with the embedded
  SmolLM2-135M it is close to noise; use a strong model through the OpenAI-compatible backend).
* ``complexity_features`` (no model): a transparent surface score in [0, 1], the mean of four
  capped counts in the instruction: length, constraint words, steps or list items, and questions.
  It works for English and Chinese, costs nothing, and is easy to game (padding and constraint
  words raise it); it measures how much an instruction asks for, not how hard that is.
"""

from __future__ import annotations

import re
from typing import Any

from datagen.core.text import word_equivalents

COMPLEXITY_TEMPLATE = "quality/complexity"
COMPLEXITY_SCALE = range(1, 7)

_CONSTRAINT = re.compile(
    r"\b(must|should|at least|at most|no more than|no less than|exactly|only|without|avoid|ensure|"
    r"include|including|limit|format|each|every|must not|do not|don't|between|within|under|using)\b"
    r"|必须|至少|至多|不超过|不少于|不要|不得|仅|只|确保|包含|要求|限制|格式|每个|使用",
    re.IGNORECASE,
)
_STEP = re.compile(
    r"^\s*(?:[-*•]|\d+[.)、]|[a-z][.)])\s+|\b(?:first|then|next|finally|after that|step)\b|首先|然后|接着|最后|步骤",
    re.IGNORECASE | re.MULTILINE,
)
_QUESTION = re.compile(r"[?？]")
# (feature, count at which it is saturated)
_CAPS = {"length": 120, "constraints": 4, "steps": 4, "questions": 3}


def complexity_features(instruction: str) -> dict[str, Any]:
    """Counts in ``instruction`` and their capped mean ``score`` in [0, 1].

    ``length`` counts words, a CJK character as 1/1.6 of one (:func:`datagen.core.text.word_equivalents`,
    so that Chinese instructions are not scored longer than their English equivalents); ``constraints`` counts constraint
    words ("must", "at least", "without", 必须, 不超过...); ``steps`` counts list items and sequence
    words ("first", "then", 首先...); ``questions`` counts question marks.
    """
    counts = {
        "length": round(word_equivalents(instruction), 1),
        "constraints": len(_CONSTRAINT.findall(instruction)),
        "steps": len(_STEP.findall(instruction)),
        "questions": len(_QUESTION.findall(instruction)),
    }
    score = sum(min(counts[k] / cap, 1.0) for k, cap in _CAPS.items()) / len(_CAPS)
    return {**counts, "score": round(score, 6)}
