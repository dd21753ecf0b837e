"""The text helpers' fast paths give what the general paths give.

``detect_language`` and exact dedup's ``normalize`` take a shortcut for ASCII text (most of any
pool); these tests hold each shortcut to the general rule on every ASCII character and on mixed
text, so a speed-up can never change a decision.
"""

from __future__ import annotations

import random
import re
import unicodedata

from datagen.core.text import detect_language
from datagen.curate.dedup.exact import _punctuation_table, normalize

ASCII = "".join(chr(c) for c in range(128))


def general_normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold().translate(_punctuation_table())
    return re.sub(r"\s+", " ", text).strip()


def general_detect(text: str) -> str:
    """The rule by its definition: counts of each script among the letters."""
    kana = sum(1 for ch in text if "\u3040" <= ch <= "\u30ff" or "\u31f0" <= ch <= "\u31ff" or "\uff66" <= ch <= "\uff9f")
    hangul = sum(1 for ch in text if "\u1100" <= ch <= "\u11ff" or "\u3130" <= ch <= "\u318f" or "\uac00" <= ch <= "\ud7af")
    han = sum(1 for ch in text if "\u3400" <= ch <= "\u4dbf" or "\u4e00" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff")
    latin = sum(1 for ch in text if ch.isascii() and ch.isalpha() or "\u00c0" <= ch <= "\u024f")
    letters = sum(1 for ch in text if ch.isalpha())
    if not letters:
        return ""
    cjk = kana + hangul + han
    if cjk and cjk * 3 >= latin:
        return "ja" if kana else "ko" if hangul >= han else "zh"
    return "latin" if latin * 2 >= letters else "other"


def samples() -> list[str]:
    rng = random.Random(0)
    alphabet = list(ASCII) + [chr(c) for c in range(0xA0, 0x3100, 7)] + list("中文日本語ひらがなカタカナ한국어，。！？「」ﾊﾝｶｸ")
    out = [ASCII, ASCII[::-1], "", "   ", "Hello, World!", "hello world", "Ｈｅｌｌｏ，　Ｗｏｒｌｄ！", "Straße", "naïve café"]
    out += ["".join(rng.choice(ASCII) for _ in range(rng.randint(0, 60))) for _ in range(2000)]
    out += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(3000)]
    return out


def test_normalize_fast_path_matches_the_general_rule():
    for text in samples():
        assert normalize(text) == general_normalize(text), repr(text)
    assert normalize("Hello, World!") == normalize("hello world") == normalize("Ｈｅｌｌｏ，　Ｗｏｒｌｄ！")


def test_detect_language_matches_its_definition():
    for text in samples():
        assert detect_language(text) == general_detect(text), repr(text)
    assert [detect_language(t) for t in ("Hello", "如何反转列表", "リストを逆にする", "목록을 뒤집다", "Привет", "123 !")] == \
        ["latin", "zh", "ja", "ko", "other", ""]
