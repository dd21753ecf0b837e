"""The individual checks of the heuristics stage. Each takes the facts of one record
(:class:`Facts`) and the stage's settings and returns its evidence when the record fails, else None.

* ``refusal``: a refusal. A *strong* phrase ("As an AI", "I'm sorry, but", "I can't help with",
  "I am unable to provide", 作为一个AI, 抱歉，我无法, 我无法回答...) counts at the start of the
  response (its first characters), or anywhere in a short one (``refusal_max_words``). A *weak* one
  ("I'm sorry", "I can't", 抱歉, 我不能...) counts only when it opens a short response: an email
  that says "I can't join the meeting" or a customer-service reply that says 非常抱歉 is no refusal.
* ``echoes_instruction``: the response's tokens (casefolded, punctuation dropped) equal the
  instruction's, start with them, or share most of their set (``echo_jaccard``).
* ``truncated``: the model stopped on its token limit (``meta.finish_reason == "length"``), a code
  fence is left open, or a long response ends mid-sentence or mid-expression (:func:`_cut_off`): on
  an operator, a comma or a word such as "the", "of", "and"; or on a letter or digit at the end of
  a running-text line of 6 words or more, not a list item, table row or heading. A short last
  line is a signature ("Warmly,\nSam"), a name or a label ("Answer: A) Treaty of Paris").
* ``language_mismatch``: the instruction and the response are in different languages
  (:func:`datagen.core.langid.identify`, code removed first), each identified with at least
  ``min_confidence``, unless the instruction asks for a translation or names the answer's language.
  Chinese and Japanese are not told apart (kanji), nor languages the model confuses with their
  neighbours (Norwegian and Danish, Indonesian and Malay, Serbian, Croatian and Bosnian).
* ``language_not_allowed``: the instruction or the response is in a language outside a keep-list.

An instruction's language is that of its first paragraph when the model is sure of it (a text it
quotes below may be in another language), else that of the whole instruction.

A response's language is judged only when it has ``min_letters`` letters outside code (an answer
"42" or "OK" says nothing about language); a text whose language the model is unsure of (below
``min_confidence``) is not judged either, except that ``language_mismatch`` then still compares
the writing systems (:func:`datagen.core.text.detect_language`): "Describe Tokyo." (too short for
the model) answered in Japanese is a mismatch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice
from typing import Any

from datagen.core.langid import Language, identify
from datagen.core.record import Record
from datagen.core.text import detect_language, tokens

Evidence = dict[str, Any] | None

# The defaults of the heuristics stage's limits (``datagen.curate.config.HeuristicsConfig``), which
# the behavioural evaluation of a trained model holds its answers to as well.
REFUSAL_MAX_WORDS = 80  # a refusal phrase counts anywhere in a response this short
TRUNCATED_MIN_WORDS = 40  # ending mid-sentence counts only in responses at least this long
LANGUAGE_MIN_LETTERS = 20  # letters (outside code) a response needs before its language is judged
LANGUAGE_MIN_CONFIDENCE = 0.5  # the model's confidence a language needs before it is judged

_CANNOT = r"(?:i (?:cannot|can'?t|can not|won'?t|will not|am unable to|am not able to|won'?t be able to)|i'?m (?:unable|not able) to)"
_REFUSAL_STRONG = (
    re.compile(
        r"\b(as an ai\b(?: language model)?|as a language model|(?:i'?m|i am) sorry,? but|i apologi[sz]e,? but"
        rf"|{_CANNOT} (?:help|assist|provide|fulfil|fulfill|comply|answer|do that|support|create|generate|write|share"
        r"|engage|complete|give|discuss|offer)|i (?:must|have to) (?:decline|refuse))",
        re.IGNORECASE,
    ),
    re.compile(r"(作为一[个名](?:AI|人工智能)|作为(?:AI|人工智能)(?:语言)?模型|(?:抱歉|对不起)[^。！？\n]{0,12}(?:无法|不能)"
               r"|我(?:无法|不能)(?:回答|提供|帮助|协助|完成|满足|处理)|很遗憾，我(?:无法|不能))", re.IGNORECASE),
)
_REFUSAL_WEAK = re.compile(
    r"^\W{0,3}(i'?m sorry|i am sorry|i apologi[sz]e|i cannot|i can'?t|i can not|i'?m (?:not able|unable)|i am (?:not able|unable)"
    r"|抱歉|对不起|我无法|我不能)",
    re.IGNORECASE,
)
_START_CHARS = 160  # "at the start": within the first characters of the response
_TRAILING_WORD = re.compile(r"(\w+)\W*$")
# a line ending in one of these was cut: no sentence ends on them
_FUNCTION_WORDS = frozenset((
    "a", "an", "the", "of", "to", "and", "or", "but", "nor", "with", "for", "in", "on", "at", "by", "from", "as", "that",
    "which", "who", "whose", "is", "are", "was", "were", "be", "been", "this", "these", "those", "its", "their", "your",
    "our", "my", "his", "her", "if", "than", "then", "so", "such", "into", "onto", "about", "over", "under",
))
_RUNNING_LINE_WORDS = 6
_OPERATOR_END = re.compile(r"[=+×÷→]$")
_FENCE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)
_CODE_BLOCK = re.compile(r"```.*?(```|$)|~~~.*?(~~~|$)|`[^`\n]*`", re.DOTALL)
_MID_SENTENCE = re.compile(r"[\w,，、]$")
_STRUCTURED_LINE = re.compile(r"^\s*([-*+•|#>]|\d+[.)]\s)")
_TRANSLATE = re.compile(
    r"translat|翻译|译成|译为|翻成|英文|英语|中文|汉语|日语|日文|韩语|韩文|翻訳|英語|번역|영어"
    r"|\b(?:in|into|to) (?:english|chinese|mandarin|japanese|korean|french|spanish|german|russian|italian|portuguese|arabic)\b"
    r"|traduc|tradui|übersetz|auf (?:englisch|deutsch)|en (?:inglés|español|anglais|français)|перев[оеё]д|по-английски|по-русски",
    re.IGNORECASE,
)
# languages not told apart: kanji are Han characters; the model confuses these neighbours
_SAME_FAMILY = (frozenset({"zh", "ja"}), frozenset({"no", "nn", "da"}), frozenset({"id", "ms"}), frozenset({"sr", "hr", "bs", "sh"}))
_LETTER = re.compile(r"[^\W\d_]")
_LANG_CHARS = 3000  # the language of a text is plain from its first few thousand characters


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
        """Words, CJK characters counting one each (as :func:`datagen.core.text.count_words_or_chars`)."""
        return len(self.response_tokens)

    @property
    def instruction_words(self) -> int:
        return len(self.instruction_tokens)

    @cached_property
    def instruction_language(self) -> Language:
        """The language the instruction asks in: that of its first paragraph when the model is sure
        of it, since a text quoted below it ("Classify the language of this text:\n\nObrigado...")
        may be in another; else the language of the whole."""
        text = prose(self.instruction)[:_LANG_CHARS]
        head, blank, rest = text.strip().partition("\n\n")
        if blank and rest.strip():
            first = identify(head)
            if first.code and first.confidence >= LANGUAGE_MIN_CONFIDENCE:
                return first
        return identify(text)

    @cached_property
    def response_prose(self) -> str:
        return prose(self.response)[:_LANG_CHARS]

    def response_has_letters(self, n: int) -> bool:
        """Whether the response has ``n`` letters outside code (in its first characters); stops
        counting at ``n``."""
        return next(islice(_LETTER.finditer(self.response_prose), n - 1, None), None) is not None

    @cached_property
    def response_language(self) -> Language:
        return identify(self.response_prose)

    def languages(self, min_letters: int, min_confidence: float) -> dict[str, Language]:
        """Field -> language, for the fields whose language is judged: the instruction when the
        model is sure enough, the response when it also has ``min_letters`` letters outside code."""
        out = {}
        if self.instruction_language.code and self.instruction_language.confidence >= min_confidence:
            out["instruction"] = self.instruction_language
        if self.response_has_letters(min_letters) and self.response_language.code and self.response_language.confidence >= min_confidence:
            out["response"] = self.response_language
        return out


def refusal(f: Facts, max_words: int) -> Evidence:
    return refusal_in(f.response, max_words, f.response_words)


def refusal_in(answer: str, max_words: int, words: int | None = None) -> Evidence:
    """A refusal phrase in ``answer``: a strong one at its start or anywhere in an answer of at
    most ``max_words`` words (``words``: its count, if known), a weak one only in such a short answer."""
    text = answer.replace("\u2019", "'").lstrip()
    n = len(tokens(answer)) if words is None else words
    for rx in _REFUSAL_STRONG:
        m = rx.search(text)
        if m and (m.start() < _START_CHARS or n <= max_words):
            return {"phrase": m.group(0), "at": m.start(), "response_words": n}
    m = _REFUSAL_WEAK.search(text)
    if m and n <= max_words:
        return {"phrase": m.group(1), "at": m.start(1), "response_words": n, "weak": True}
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
    if f.response_words >= min_words and _cut_off(text):
        return {"how": "ends_mid_sentence", "tail": text[-40:], "response_words": f.response_words}
    return None


def _cut_off(text: str) -> bool:
    """Whether ``text`` (right-stripped) stops in the middle of a sentence or an expression.

    It does when it ends on an operator ("a ="), a comma, or a word no sentence ends on ("the",
    "of", "and"), even inside a list item; otherwise when its last character is a letter or digit
    and its last line is running text of at least 6 words that is not a list item, table row or
    heading. A short last line is a signature ("Warmly,\nSam"), a name or a label ("Answer: A)
    Treaty of Paris"), not a cut."""
    if _OPERATOR_END.search(text):
        return True
    if not _MID_SENTENCE.search(text):
        return False
    last_line = text.rsplit("\n", 1)[-1]
    m = _TRAILING_WORD.search(last_line)
    if text.endswith((",", "，", "、")) or (m and m.group(1).lower() in _FUNCTION_WORDS):
        return True
    return not _STRUCTURED_LINE.match(last_line) and len(tokens(last_line)) >= _RUNNING_LINE_WORDS


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code."""
    return _CODE_BLOCK.sub(" ", text)


def language_mismatch(f: Facts, min_letters: int, min_confidence: float = LANGUAGE_MIN_CONFIDENCE) -> Evidence:
    if _TRANSLATE.search(f.instruction):
        return None
    if not f.response_has_letters(min_letters):
        return None
    langs = f.languages(min_letters, min_confidence)
    li, lr = langs.get("instruction"), langs.get("response")
    if li is not None and lr is not None:
        if _differ(li.code, lr.code):
            return {"instruction": li.code, "response": lr.code, "confidence": [round(li.confidence, 3), round(lr.confidence, 3)]}
        return None
    # the model is unsure of one of them ("Describe Tokyo."): different writing systems still tell
    si, sr = detect_language(prose(f.instruction)[:_LANG_CHARS]), detect_language(f.response_prose)
    if si and sr and _differ(si, sr):
        return {"instruction": si, "response": sr, "by": "script"}
    return None


def _differ(a: str, b: str) -> bool:
    return a != b and not any({a, b} <= fam for fam in _SAME_FAMILY)


def language_not_allowed(f: Facts, allowed: frozenset[str], min_letters: int, min_confidence: float = LANGUAGE_MIN_CONFIDENCE) -> Evidence:
    """The first judged field (instruction, then response) whose language is not in ``allowed``."""
    for name, lang in f.languages(min_letters, min_confidence).items():
        if lang.code not in allowed:
            return {"field": name, **lang.evidence(), "allowed": sorted(allowed)}
    return None
