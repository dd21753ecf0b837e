"""What a user of a fine-tuned model sees in its greedy answers: the defects, counted per kind.

Held-out loss says how well the model predicts the gold answers; it does not say how often the
model, left to itself, never stops, answers nothing, refuses, stops mid-sentence, loops, or answers
in another language. :func:`defects` finds those in one :class:`Answer`; :func:`summarize` counts
them over a prompt set. Each kind, in the order of :data:`KINDS`:

* ``no_stop``: ``stopped`` is False: the model ran to its token limit instead of ending its turn
  (no end-of-turn or eos token). Nothing in the text is looked at.
* ``empty``: the text holds no letter or digit in any script (:func:`datagen.core.text.tokens` finds no
  token): blank, whitespace, punctuation or symbols only ("...", "```\\n```", "👍"). An empty
  answer has no content to judge, so the four kinds below are not looked for in it; ``no_stop``
  still is (a model can emit newlines up to its limit).
* ``refusal``: :func:`datagen.core.checks.refusal`, the data filter's own phrases and rule: a
  strong phrase ("As an AI", "I'm sorry, but", 我无法回答...) at the start or anywhere in an answer of
  at most :data:`REFUSAL_MAX_WORDS` words, a weak one ("I can't", 抱歉...) opening such a short answer.
* ``truncated``: only when ``stopped`` (an answer that hit the limit is ``no_stop``, and is cut for
  that reason), by the data filter's :func:`datagen.core.checks.truncated` and
  :func:`~datagen.core.checks._cut_off`: a code fence left open (any length); in an answer of
  :data:`TRUNCATED_MIN_WORDS` words or more, an end mid-sentence or mid-expression (on an operator,
  a comma, a word such as "the", "of", "and", or a letter or digit closing a running-text line of 6
  words or more); in one of :data:`CUT_MIN_WORDS` to :data:`TRUNCATED_MIN_WORDS` words, only the
  first three ("The capital of France is", "You will need flour, sugar,"), as a short answer
  without a full stop ("The capital of France is Paris") is common and complete.
* ``repetition``: a degenerate loop, by either of two rules over the answer's prose (below).
* ``wrong_language``: :func:`datagen.core.checks.language_mismatch`: the answer's language
  (:func:`datagen.core.langid.identify`, code removed) differs from the prompt's, Chinese and
  Japanese not told apart; never when the prompt asks for a translation or names a language ("in
  French", "translate", 用英文), and only when the answer has :data:`LANGUAGE_MIN_LETTERS` letters
  outside code and the prompt :data:`PROMPT_MIN_LETTERS` ("42" or "OK" says nothing about language).

Repetition is measured on the answer's *prose*: fenced and inline code, and table rows, are
removed first, because code and tables repeat legitimately (``}``, ``break;``, ``[None, None,
None...]``, a column of "N/A") while a loop in prose is always a defect; a number that opens a line
("1.", "2)", "3、") is removed too, so that a list that repeats its item under new numbers is seen
as repeating. Tokens are :func:`datagen.core.text.tokens`: lowercased words, and each CJK character one
token, so Chinese text (no spaces) is compared in character n-grams. Lengths are in English-word
equivalents, a CJK character counting ``1 / CJK_CHARS_PER_WORD`` (1.6 characters a word), so one
threshold serves both scripts.

1. **Tandem repeat**: a stretch of tokens repeated back to back, as a looping model writes it: a
   unit of any length ``p`` immediately followed by a copy of itself (``t[k] == t[k - p]`` for
   every ``k`` of a stretch at least ``p`` long), the unit holding a letter (a run of zeros in a
   matrix is no loop). It counts when its repeated part (the copies after the first) is at least
   :data:`MIN_REPEAT_WORDS` long and either the unit comes 3 times or more in a row
   (:data:`TANDEM_COPIES`) or the repeated part covers at least :data:`REPEAT_SHARE` of the answer.
   "Quit smoking. Quit drinking. Quit smoking. Quit drinking. Quit smoking." repeats a 4-word unit
   for 6 of its 10 words: a loop. A list whose items share a long opening ("Use a strong password
   for your email account. Use a strong password for your bank account.") is no tandem repeat: the
   copy breaks off before the unit is complete. Neither is "1. Eat well. 2. Sleep well.".
2. **Recurring sentence**: the same sentence or line (as tokens, so case and punctuation aside) of
   at least :data:`SENTENCE_MIN_WORDS` words comes :data:`SENTENCE_REPEATS` times or more anywhere,
   and its occurrences cover at least :data:`REPEAT_SHARE` of the answer. The share keeps the labels
   of a structured answer out ("Time complexity: O(n log n)" under each of three algorithms): a
   looping model's recurring sentence is most of what it says.

What the rules miss: a loop inside a code block (when it ran to the limit, it is ``no_stop``; when
its fence stays open, ``truncated``), and a loop that varies each copy (a counter, a synonym)
unless a sentence of it recurs. What they may flag: a song's refrain sung three times in a row.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from datagen.core import checks
from datagen.core.record import Record
from datagen.core.text import CJK_CHARS_PER_WORD, is_cjk, tokens

KINDS = ("no_stop", "empty", "refusal", "truncated", "repetition", "wrong_language")

# The model is held to the rules its training data was filtered by: the same word limit for "a
# short answer" in which a refusal phrase counts anywhere, and the same letters an answer needs
# before its language is judged.
REFUSAL_MAX_WORDS: int = checks.REFUSAL_MAX_WORDS  # 80
LANGUAGE_MIN_LETTERS: int = checks.LANGUAGE_MIN_LETTERS  # 20
# The filter's rule for a mid-sentence end, in full, from its 40 words: a shorter answer that ends
# on a letter without a full stop is often a plain short answer ("The capital of France is Paris").
TRUNCATED_MIN_WORDS: int = checks.TRUNCATED_MIN_WORDS  # 40
# Below it, only an end no sentence has (a comma, an operator, "the", "of", "is"): the model chose
# to stop there, and "The capital of France is" is a defect at any length. Below 5 words an answer
# is a label, a name or a number ("Option a", "Plan B or C"), whose last word is no cut.
CUT_MIN_WORDS = 5
# Letters (outside code) a prompt needs before its language is known: a greeting or a bare name
# ("Hi", "OK", "Paris") says nothing, 介绍一下长城 (6 characters) or "Tell me a joke" does.
PROMPT_MIN_LETTERS = 6
# Repetition (see the module docstring); lengths in word equivalents.
MIN_REPEAT_WORDS = 6.0  # a repeated stretch shorter than this is emphasis ("no, no, no"), not a loop
TANDEM_COPIES = 3  # a unit this many times in a row is a loop whatever the answer's length
REPEAT_SHARE = 0.3  # a repeat covering this share of the answer is a loop even with fewer copies
SENTENCE_MIN_WORDS = 3.0  # a shorter recurring sentence is a label or an answer ("Answer: B")
SENTENCE_REPEATS = 3

_TABLE_ROW = re.compile(r"^\s*\|.*$", re.MULTILINE)
_LINE_NUMBER = re.compile(r"^[ \t]*[(（]?\d{1,3}[.)）、][ \t]*", re.MULTILINE)
_TRAILING_NONWORD = re.compile(r"[\W_]*$")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|[。！？；]+")
_CJK_WEIGHT = 1.0 / CJK_CHARS_PER_WORD


@dataclass(frozen=True)
class Answer:
    """One greedy answer to a held-out prompt."""

    prompt: str  # the final user instruction
    text: str  # the model's answer, special tokens stripped
    stopped: bool  # True: generation ended on an end-of-turn/eos token; False: it ran to the token limit


def defects(answer: Answer) -> dict[str, str]:
    """Kind -> short evidence, for every defect kind (:data:`KINDS`, in that order) found in
    ``answer``; an empty dict for a clean answer."""
    found: dict[str, str] = {}
    if not answer.stopped:
        found["no_stop"] = "ran to the token limit without an end-of-turn token"
    if not tokens(answer.text):
        found["empty"] = "blank" if not answer.text.strip() else f"no letter or digit: {answer.text.strip()[:40]!r}"
        return found
    # The data filter's checks read a record's facts; the answer becomes the record's response.
    facts = checks.Facts.of(Record.from_turns(answer.prompt, answer.text))
    ev = checks.refusal(facts, REFUSAL_MAX_WORDS)
    if ev:
        found["refusal"] = f"{ev['phrase']!r} at character {ev['at']}" + (" (weak phrase, short answer)" if ev.get("weak") else "")
    cut = truncated(facts) if answer.stopped else None
    if cut:
        found["truncated"] = cut
    loop = repetition(answer.text)
    if loop:
        found["repetition"] = loop
    lang = wrong_language(answer.prompt, facts)
    if lang:
        found["wrong_language"] = lang
    return found


def summarize(answers: Sequence[Answer]) -> dict[str, Any]:
    """``{"answers": n, "defect_rate": share of answers with any defect, "rates": {kind: share},
    "counts": {kind: n}, "clean": n}``, every kind present (0 when never found). Over no answers
    every share is 0.0: there is nothing to divide, and ``answers`` says so."""
    counts = dict.fromkeys(KINDS, 0)
    clean = 0
    for a in answers:
        found = defects(a)
        clean += not found
        for kind in found:
            counts[kind] += 1
    n = len(answers)
    return {
        "answers": n,
        "defect_rate": (n - clean) / n if n else 0.0,
        "rates": {k: c / n if n else 0.0 for k, c in counts.items()},
        "counts": counts,
        "clean": clean,
    }


# -- truncated ------------------------------------------------------------------------------------
def truncated(facts: checks.Facts) -> str | None:
    """The data filter's check in full from :data:`TRUNCATED_MIN_WORDS` words (and an open fence at
    any length); in a shorter answer of :data:`CUT_MIN_WORDS` or more, only an ending no sentence
    has: :func:`datagen.core.checks._cut_off` shown just the last token and what follows it, so
    that its rule for running text (a line of 6 words ending on a letter) cannot fire."""
    ev = checks.truncated(facts, TRUNCATED_MIN_WORDS)
    if ev and ev["how"] == "unbalanced_code_fence":
        return f"code fence left open ({ev['fences']} fences)"
    if ev:
        return f"ends mid-sentence: {ev.get('tail', '')!r}"
    if facts.response_words < CUT_MIN_WORDS:
        return None
    after = _TRAILING_NONWORD.search(facts.response.rstrip())
    tail = facts.response_tokens[-1] + (after.group(0) if after else "")  # "is", "sugar,", "x =", "程，"
    return f"ends on {tail.strip()!r}" if checks._cut_off(tail) else None


# -- wrong language -------------------------------------------------------------------------------
def wrong_language(prompt: str, facts: checks.Facts) -> str | None:
    """The data filter's language check, once the prompt too has letters enough to tell."""
    if sum(ch.isalpha() for ch in checks.prose(prompt)) < PROMPT_MIN_LETTERS:
        return None
    ev = checks.language_mismatch(facts, LANGUAGE_MIN_LETTERS)
    return f"prompt {ev['instruction']}, answer {ev['response']}" if ev else None


# -- repetition -----------------------------------------------------------------------------------
def prose_of(text: str) -> str:
    """What repetition is judged on: ``text`` without code, table rows and line-opening numbers."""
    return _LINE_NUMBER.sub("", _TABLE_ROW.sub("", checks.prose(text)))


def repetition(text: str) -> str | None:
    """Evidence of a degenerate loop in ``text`` (a tandem repeat or a recurring sentence, see the
    module docstring), or None."""
    prose = prose_of(text)
    toks = tokens(prose)
    if not toks:
        return None
    return _tandem(toks) or _recurring_sentence(prose, _weight(toks))


def _weight(toks: Sequence[str]) -> float:
    """Length in word equivalents: a CJK character counts 1/1.6, any other token 1."""
    return sum(_CJK_WEIGHT if len(t) == 1 and is_cjk(t) else 1.0 for t in toks)


def _tandem(toks: list[str]) -> str | None:
    """The longest qualifying back-to-back repeat, as evidence, or None.

    For each period ``p``, ``same[k]`` says token ``k + p`` equals token ``k``; a run of ``L``
    such positions from ``a`` is the unit ``toks[a:a + p]`` followed by ``L`` tokens that copy it
    (``L / p`` copies more). A run shorter than ``p`` is a shared opening, not a repeat."""
    index: dict[str, int] = {}
    ids = np.array([index.setdefault(t, len(index)) for t in toks], dtype=np.int64)
    weights = np.array([_CJK_WEIGHT if len(t) == 1 and is_cjk(t) else 1.0 for t in toks])
    cum_w = np.concatenate(([0.0], np.cumsum(weights)))
    cum_letter = np.concatenate(([0], np.cumsum([any(ch.isalpha() for ch in t) for t in toks])))
    total = cum_w[-1]
    best: tuple[float, int, int, int] | None = None  # (repeated weight, period, start, run length)
    for p in range(1, len(toks) // 2 + 1):
        same = np.concatenate(([False], ids[p:] == ids[:-p], [False])).astype(np.int8)
        edges = np.diff(same)
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        keep = ends - starts >= max(p, MIN_REPEAT_WORDS)  # else a partial copy, or too short even in words
        for a, length in zip(starts[keep].tolist(), (ends - starts)[keep].tolist()):
            rep = float(cum_w[a + p + length] - cum_w[a + p])
            if rep < MIN_REPEAT_WORDS or cum_letter[a + p] == cum_letter[a]:
                continue
            if (length >= (TANDEM_COPIES - 1) * p or rep >= REPEAT_SHARE * total) and (best is None or rep > best[0]):
                best = (rep, p, a, length)
    if best is None:
        return None
    rep, p, a, length = best
    return f"{_show(toks[a:a + p])!r} {1 + length / p:.3g} times in a row ({rep / total:.0%} of the answer repeats it)"


def _recurring_sentence(prose: str, total: float) -> str | None:
    """The most covering sentence or line that recurs :data:`SENTENCE_REPEATS` times, or None."""
    units: Counter[tuple[str, ...]] = Counter()
    for line in prose.splitlines():
        sentences = [key for key in (tuple(tokens(s)) for s in _SENTENCE_END.split(line)) if key]
        units.update(sentences)
        if len(sentences) > 1:  # the line as a whole too; a line of one sentence counts once
            units[tuple(tokens(line))] += 1
    best: tuple[float, tuple[str, ...], int] | None = None
    for key, n in units.items():
        w = _weight(key)
        if n >= SENTENCE_REPEATS and w >= SENTENCE_MIN_WORDS and n * w >= REPEAT_SHARE * total and (best is None or n * w > best[0]):
            best = (n * w, key, n)
    if best is None:
        return None
    covered, key, n = best
    return f"sentence {_show(key)!r} {n} times ({min(covered / total, 1.0):.0%} of the answer)"


def _show(toks: Sequence[str], width: int = 60) -> str:
    """Tokens as text for evidence: CJK characters joined without spaces, clipped."""
    s = "".join(toks) if all(len(t) == 1 and is_cjk(t) for t in toks) else " ".join(toks)
    return s if len(s) <= width else s[:width - 3] + "..."
