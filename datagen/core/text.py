"""Small, dependency-free text helpers shared by generators and filters.

Two facts drive everything here:

* Chinese, Japanese and Korean text (and Thai, Lao, Khmer, Myanmar) is not written with spaces
  between words, so "words" are counted as *characters* in those scripts, and similarity measures
  tokenize them into characters. A tokenizer that keeps only ``[a-z0-9]+`` sees nothing at all in
  a Chinese sentence, so two unrelated Chinese instructions would look identical (both empty).
* Everything else is tokenized into lowercased runs of letters and digits in any alphabet
  (Latin, Cyrillic, Greek, ... including accented letters), without punctuation.

:func:`tokens` is the tokenization for ROUGE and other token-overlap measures;
:func:`count_words_or_chars` is the length measure for length filters.
"""

from __future__ import annotations

import re
import unicodedata

# Han ideographs (unified, extension A, compatibility), kana, Hangul syllables and jamo.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_KANA = "\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f"
_HANGUL = "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"
_CJK = _HAN + _KANA + _HANGUL
# Other scripts written without spaces between words: tokenized into characters as well.
_UNSPACED = _CJK + "\u0e00-\u0e7f\u0e80-\u0eff\u1780-\u17ff\u1000-\u109f"

_CJK_RE = re.compile(f"[{_CJK}]")
_HAN_RE = re.compile(f"[{_HAN}]")
_KANA_RE = re.compile(f"[{_KANA}]")
_HANGUL_RE = re.compile(f"[{_HANGUL}]")
_LATIN_RE = re.compile(r"[A-Za-z\u00c0-\u024f]")
_ASCII_LETTER_RE = re.compile(r"[A-Za-z]")
# One unspaced-script character, or a run of word characters that are neither '_' nor unspaced.
_TOKEN_RE = re.compile(f"[{_UNSPACED}]|[^\\W_{_UNSPACED}]+")
_WS_RE = re.compile(r"\s+")


def is_cjk(ch: str) -> bool:
    """True for a Chinese, Japanese (kana) or Korean character."""
    return bool(_CJK_RE.fullmatch(ch))


def has_cjk(text: str) -> bool:
    return _CJK_RE.search(text) is not None


def tokens(text: str) -> list[str]:
    """Tokens for overlap measures (ROUGE, Jaccard...): each CJK (or other unspaced-script)
    character is a token; elsewhere, lowercased runs of letters and digits. Punctuation and
    symbols are dropped.

    >>> tokens("Write a poem about 秋天, in 3 lines!")
    ['write', 'a', 'poem', 'about', '秋', '天', 'in', '3', 'lines']
    """
    return _TOKEN_RE.findall(text.casefold())


def count_words_or_chars(text: str) -> int:
    """Length for length filters: words, except that each CJK (or other unspaced-script)
    character counts as one. Mixed text adds both."""
    return len(_TOKEN_RE.findall(text))


# Chinese characters per English word, roughly: the mean word length of segmented Chinese corpora
# is about 1.6 characters, and a Chinese text and its English translation compare about so.
CJK_CHARS_PER_WORD = 1.6


def word_equivalents(text: str) -> float:
    """Length in English-word equivalents: words, plus CJK (or other unspaced-script) characters
    divided by :data:`CJK_CHARS_PER_WORD`, so that a Chinese instruction and its English
    translation measure about the same. For comparing lengths across languages (a complexity
    score); length *filters* use :func:`count_words_or_chars`."""
    found = _TOKEN_RE.findall(text)
    unspaced = sum(1 for t in found if len(t) == 1 and is_cjk(t))
    return len(found) - unspaced + unspaced / CJK_CHARS_PER_WORD


def detect_language(text: str) -> str:
    """A rough guess of the writing system: ``"ja"`` (any kana), ``"ko"`` (Hangul), ``"zh"`` (Han
    without kana), ``"latin"`` (Latin letters dominate), ``"other"`` (other alphabets) or ``""``
    (no letters at all). Based on character counts; good enough to pick a length rule, not a
    language identifier."""
    if text.isascii():  # most text: letters are Latin letters, and there is no CJK to count
        return "latin" if _ASCII_LETTER_RE.search(text) else ""
    letters = sum(map(str.isalpha, text))
    if not letters:
        return ""
    cjk = cjk_language(text)
    if cjk is not None:
        return cjk[0]
    if len(_LATIN_RE.findall(text)) * 2 >= letters:
        return "latin"
    return "other"


def cjk_language(text: str) -> tuple[str, float] | None:
    """``("ja" | "ko" | "zh", share)`` when CJK characters dominate ``text``'s letters, else None:
    Japanese with any kana, Korean when Hangul is most of the CJK, else Chinese. A CJK character
    weighs as three Latin letters, so Latin text with a few CJK terms in it is not CJK while a CJK
    sentence with Latin names is; ``share`` is the CJK weight over all (0.5 at the boundary, 1 for
    pure CJK)."""
    cjk = len(_CJK_RE.findall(text))  # kana + Hangul + Han: the three ranges are disjoint
    if not cjk:
        return None
    latin = len(_LATIN_RE.findall(text))
    if cjk * 3 < latin:
        return None
    if _KANA_RE.search(text):
        code = "ja"
    else:
        hangul = len(_HANGUL_RE.findall(text))
        code = "ko" if hangul >= cjk - hangul else "zh"
    return code, cjk * 3 / (cjk * 3 + latin)


def normalize_space(text: str) -> str:
    """Collapse every run of whitespace (newlines included) into one space, and strip."""
    return _WS_RE.sub(" ", text).strip()


def starts_with_punctuation(text: str) -> bool:
    """True when the first non-space character is punctuation or a symbol (ASCII or Unicode:
    ``"``, ``-``, ``(``, ``，``, ``「``...)."""
    s = text.lstrip()
    if not s:
        return False
    return unicodedata.category(s[0])[0] in "PS"
