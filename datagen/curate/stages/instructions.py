"""Cheap checks on a generated instruction, from Self-Instruct (Wang et al., 2022) and Stanford
Alpaca: too short or too long, a task a text model cannot do, starting with punctuation, or
"write a program". Each check returns a reason code and its evidence, or None.

Length counts words, except that CJK characters count one each (:mod:`datagen.core.text`), so a
Chinese instruction is not "one word long".
"""

from __future__ import annotations

import re
from typing import Any

from datagen.core.text import count_words_or_chars, starts_with_punctuation

# Tasks a text-only model cannot carry out (Self-Instruct's list), matched as whole words.
BLACKLIST = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
)
# Their Chinese equivalents, matched as substrings (Chinese has no word boundaries).
BLACKLIST_ZH = (
    "图片", "图像", "照片", "画", "绘制", "图表", "视频", "音频", "音乐", "流程图", "示意图", "地图", "文件", "录音",
)
_BLACKLIST_RE = re.compile(r"\b(" + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in BLACKLIST) + r")\b", re.IGNORECASE)
_BLACKLIST_ZH_RE = re.compile("|".join(BLACKLIST_ZH))
_PROGRAM_RE = re.compile(r"^\s*write\s+a\s+program\b", re.IGNORECASE)

MIN_WORDS = 3
MAX_WORDS = 150


def blacklisted(text: str) -> str | None:
    """The first blacklisted word or phrase in ``text``, or None."""
    m = _BLACKLIST_RE.search(text)
    if m:
        return m.group(1).lower()
    m = _BLACKLIST_ZH_RE.search(text)
    return m.group(0) if m else None


def check_instruction(text: str, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> tuple[str, dict[str, Any]] | None:
    """(reason, evidence) when ``text`` is not a usable instruction, else None."""
    if not text.strip():
        return "empty", {}
    n = count_words_or_chars(text)
    if n < min_words:
        return "too_short", {"words": n, "min": min_words}
    if n > max_words:
        return "too_long", {"words": n, "max": max_words}
    word = blacklisted(text)
    if word:
        return "blacklisted", {"word": word}
    if starts_with_punctuation(text):
        return "starts_with_punctuation", {"char": text.lstrip()[0]}
    if _PROGRAM_RE.match(text):
        return "write_a_program", {}
    return None
