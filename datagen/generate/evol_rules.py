"""WizardLM's elimination rules for a failed evolution, and the parsing of an evolved
instruction: the rewrite read from a reply (a structured reply's ``instruction``, else the text
without echoed labels or quotes), copied prompt scaffolding, a refusal (the heuristics stage's
own check), an answer of stop words only. The first rule, no information gained, is the
equality judge (:mod:`datagen.score.equality`)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from datagen.core.text import has_cjk, tokens
from datagen.llm.structured import field_of, one_field_schema


# -- the elimination rules ---------------------------------------------------------------------
_STOP_WORDS = frozenset(
    """a about above after again against ain all am an and any are aren aren't as at be because been
    before being below between both but by can couldn couldn't d did didn didn't do does doesn doesn't
    doing don don't down during each few for from further had hadn hadn't has hasn hasn't have haven
    haven't having he her here hers herself him himself his how i if in into is isn isn't it it's its
    itself just ll m ma me mightn mightn't more most mustn mustn't my myself needn needn't no nor not
    now o of off on once only or other our ours ourselves out over own re s same shan shan't she she's
    should should've shouldn shouldn't so some such t than that that'll the their theirs them
    themselves then there these they this those through to too under until up ve very was wasn wasn't
    we were weren weren't what when where which while who whom why will with won won't wouldn
    wouldn't y you you'd you'll you're you've your yours yourself yourselves""".split()
)
# labels a model may echo before its rewrite; stripped from the start only (rule 4 sees the rest)
_LEADING_LABEL = re.compile(
    r"^\s*(?:[*_`>\"']+\s*)?#*\s*(?:the\s+)?(?:rewritten|created|new)\s+(?:prompt|instruction)\s*#*"
    r"\s*(?:[*_`]+\s*)?[:：]?\s*(?:[*_`]+\s*)?",
    re.IGNORECASE,
)
_SCAFFOLDING = re.compile(
    r"#\s*(?:the\s+)?(?:given|rewritten|created)\s+prompt\s*#|\b(?:given|rewritten|created)\s+prompt\b",
    re.IGNORECASE,
)


EVOLUTION_SCHEMA = one_field_schema("instruction")


def parse_evolution(text: str) -> str:
    """The rewritten instruction in a completion: the ``instruction`` of a structured reply (what a
    reply cut by the token limit holds of it), else the text with echoed leading labels and
    wrapping quotes removed."""
    structured = field_of(text, "instruction", partial=True)
    out = structured if isinstance(structured, str) else text
    out = out.strip()
    while True:
        m = _LEADING_LABEL.match(out)
        if not m or not m.group(0).strip():
            break
        out = out[m.end():].strip()
    if len(out) >= 2 and out[0] == out[-1] and out[0] in "\"'`":
        out = out[1:-1].strip()
    return out


def copied_scaffolding(instruction: str) -> str | None:
    """Rule 4: the scaffolding phrase the instruction copied from the prompt, if any."""
    m = _SCAFFOLDING.search(instruction)
    return m.group(0) if m else None


def refusal(answer: str) -> dict[str, Any] | None:
    """Rule 2: evidence when the answer is a refusal, by the heuristics stage's own check
    (:func:`datagen.core.checks.refusal_in`)."""
    from datagen.core.checks import REFUSAL_MAX_WORDS, refusal_in

    return refusal_in(answer, REFUSAL_MAX_WORDS)


def stopwords_only(answer: str) -> bool:
    """Rule 3: the answer has nothing but punctuation and stop words."""
    if has_cjk(answer):
        return False
    return all(t in _STOP_WORDS for t in tokens(answer))


def derive_seed(seed: int, round_no: int, parent_id: str, purpose: str) -> int:
    h = hashlib.sha256(f"evol|{seed}|{round_no}|{parent_id}|{purpose}".encode()).hexdigest()
    return int(h[:8], 16)
