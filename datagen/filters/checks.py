"""The individual checks of the heuristics stage. Each takes the facts of one record
(:class:`Facts`) and the stage's settings and returns its evidence when the record fails, else None.

* ``refusal``: a refusal phrase ("I'm sorry", "As an AI", "I cannot", 抱歉, 作为一个AI, 我无法...)
  at the start of the response, or anywhere in a short one (``refusal_max_words``).
* ``echoes_instruction``: the response's tokens (casefolded, punctuation dropped) equal the
  instruction's, start with them, or share most of their set (``echo_jaccard``).
* ``truncated``: the model stopped on its token limit (``meta.finish_reason == "length"``), a code
  fence is left open, or a long response ends mid-sentence (its last character a letter, digit or
  comma, and its last line not a list item, table row or heading).
* ``language_mismatch``: the instruction and the response are written in different scripts
  (:func:`datagen.text.detect_language`, code removed first), unless the instruction asks for a
  translation or names the answer's language. Chinese and Japanese are not told apart (kanji).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..record import Record
from ..text import detect_language, tokens

Evidence = dict[str, Any] | None

_REFUSAL_EN = re.compile(
    r"\b(i'?m sorry|i am sorry|i apologi[sz]e|as an ai\b|as a language model|as an ai language model"
    r"|i cannot|i can'?t|i can not|i'?m (?:not able|unable) to|i am (?:not able|unable) to|i won'?t be able to)",
    re.IGNORECASE,
)
_REFUSAL_ZH = re.compile(r"(抱歉|对不起|作为一[个名](?:AI|人工智能)|作为(?:AI|人工智能)(?:语言)?模型|我无法|我不能|很遗憾，我)", re.IGNORECASE)
_START_CHARS = 160  # "at the start": within the first characters of the response
_FENCE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)
_CODE_BLOCK = re.compile(r"```.*?(```|$)|~~~.*?(~~~|$)|`[^`\n]*`", re.DOTALL)
_MID_SENTENCE = re.compile(r"[\w,，、]$")
_STRUCTURED_LINE = re.compile(r"^\s*([-*+•|#>]|\d+[.)]\s)")
_TRANSLATE = re.compile(
    r"translat|翻译|译成|译为|翻成|英文|英语|中文|汉语|日语|日文|韩语|韩文"
    r"|\b(?:in|into|to) (?:english|chinese|mandarin|japanese|korean|french|spanish|german|russian|italian|portuguese|arabic)\b",
    re.IGNORECASE,
)
_SAME_FAMILY = {frozenset({"zh", "ja"})}
_LETTER = re.compile(r"[^\W\d_]")
_LANG_CHARS = 3000  # the script of a text is plain from its first few thousand characters


@dataclass
class Facts:
    """What the checks look at, computed once per record."""

    rec: Record
    instruction: str = ""
    response: str = ""
    instruction_tokens: list[str] = field(default_factory=list)
    response_tokens: list[str] = field(default_factory=list)
    echo_jaccard: float = 0.0

    @classmethod
    def of(cls, rec: Record) -> "Facts":
        ins, resp = rec.instruction, rec.response
        ti, tr = tokens(ins), tokens(resp)
        a, b = set(ti), set(tr)
        jac = len(a & b) / len(a | b) if (a or b) else 0.0
        return cls(rec, ins, resp, ti, tr, jac)

    @property
    def response_words(self) -> int:
        """Words, CJK characters counting one each (as :func:`datagen.text.count_words_or_chars`)."""
        return len(self.response_tokens)

    @property
    def instruction_words(self) -> int:
        return len(self.instruction_tokens)


def refusal(f: Facts, max_words: int) -> Evidence:
    text = f.response.replace("\u2019", "'")
    for rx in (_REFUSAL_EN, _REFUSAL_ZH):
        m = rx.search(text)
        if m and (m.start() < _START_CHARS or f.response_words <= max_words):
            return {"phrase": m.group(0), "at": m.start(), "response_words": f.response_words}
    return None


def echoes(f: Facts, min_jaccard: float) -> Evidence:
    ins, resp = f.instruction_tokens, f.response_tokens  # casefolded, punctuation dropped
    if not ins or not resp:
        return None
    if resp == ins:
        return {"how": "equal"}
    if len(ins) >= 3 and resp[:len(ins)] == ins:
        return {"how": "prefix", "instruction_words": f.instruction_words}
    if f.echo_jaccard >= min_jaccard:
        return {"how": "overlap", "jaccard": round(f.echo_jaccard, 4), "min": min_jaccard}
    return None


def truncated(f: Facts, min_words: int) -> Evidence:
    if f.rec.meta.get("finish_reason") == "length":
        return {"how": "finish_reason_length"}
    fences = len(_FENCE.findall(f.response))
    if fences % 2:
        return {"how": "unbalanced_code_fence", "fences": fences}
    text = f.response.rstrip()
    last_line = text.rsplit("\n", 1)[-1]
    if f.response_words >= min_words and _MID_SENTENCE.search(text) and not _STRUCTURED_LINE.match(last_line):
        return {"how": "ends_mid_sentence", "tail": text[-40:], "response_words": f.response_words}
    return None


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code."""
    return _CODE_BLOCK.sub(" ", text)


def language_mismatch(f: Facts, min_letters: int) -> Evidence:
    if _TRANSLATE.search(f.instruction):
        return None
    resp = prose(f.response)[:_LANG_CHARS]
    if len(_LETTER.findall(resp)) < min_letters:
        return None
    li, lr = detect_language(prose(f.instruction)[:_LANG_CHARS]), detect_language(resp)
    if not li or not lr or li == lr or frozenset({li, lr}) in _SAME_FAMILY:
        return None
    return {"instruction": li, "response": lr}
