"""Build a noisy record pool with known, tagged defects, for ``datagen ablate``.

The clean records are the bundled seed tasks (``seeds/175.jsonl``: instruction + reference
answer, English and Chinese). Copies of seed records are then damaged in five ways, each copy
tagged ``meta["injected"] = <kind>`` (and ``meta["injected_from"]`` = the source record's id):

* ``truncation``: a long answer cut at 55-70% of its words (characters, for Chinese), mid-sentence;
* ``refusal``: the answer replaced by a canned refusal in the instruction's language;
* ``near_duplicate``: the record again with one small edit (a word changed, punctuation);
* ``off_topic``: the answer of another, unrelated seed task in the same language;
* ``wrong_language``: an English instruction answered in Chinese or a Chinese one in English
  (the answer of another seed task in the other language).

Each kind's copies are spread over languages and task types in the clean pool's proportions
(:func:`stratified`): removing them leaves the mix as it was, so a gold loss cannot move merely
because the filter changed the share of Chinese tasks. Untagged records are clean. ``datagen ablate`` reads the tags and reports, per kind, how many the
filter removed and how many reached each arm::

    .venv/bin/python bench/noisy_pool.py --out bench/data/noisy_pool.jsonl --per-kind 25
    datagen ablate --pool bench/data/noisy_pool.jsonl --gold bench/data/gold.jsonl --budget 60 --out runs/ablate
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datagen.core.io import read_records
from datagen.core.writing import write_records
from datagen.core.record import Record
from datagen.core.text import word_equivalents

KINDS = ("truncation", "refusal", "near_duplicate", "off_topic", "wrong_language")
REFUSALS = (
    "I'm sorry, but I can't help with that request.",
    "As an AI language model, I am unable to answer this question.",
    "I cannot provide that information. Is there anything else I can help you with?",
    "抱歉，我无法回答这个问题。",
)
_CJK = re.compile(r"[\u4e00-\u9fff]")
_EDITS = (("the", "a"), (".", "!"), (",", ";"), ("is", "was"), ("and", "as well as"), ("，", "；"), ("。", "！"))


def is_chinese(text: str) -> bool:
    return len(_CJK.findall(text)) >= 4


def truncate(answer: str, rng: random.Random) -> str:
    """The first 55-70% of the answer, ending inside a sentence: on a word for spaced text, on a
    character for Chinese (no spaces to cut at)."""
    if is_chinese(answer):
        cut = int(len(answer) * rng.uniform(0.55, 0.7))
        while cut > 1 and answer[cut - 1] in "。！？：；）.!?:;)\n ，,":
            cut -= 1
        return answer[:cut]
    words = list(re.finditer(r"\S+", answer))
    cut = int(len(words) * rng.uniform(0.55, 0.7))
    while cut > 1 and words[cut - 1].group()[-1] in ".!?。！？:;)":
        cut -= 1
    return answer[: words[cut - 1].end()]


def near_duplicate(answer: str, rng: random.Random) -> str:
    """One small edit: a swapped function word or punctuation mark, or a trailing remark."""
    for old, new in rng.sample(_EDITS, len(_EDITS)):
        if f" {old} " in answer or (not old.isalpha() and old in answer):
            spaced = old.isalpha()  # a word is replaced between its spaces, punctuation as it is
            return answer.replace(f" {old} " if spaced else old, f" {new} " if spaced else new, 1)
    return answer + ("希望对你有帮助。" if is_chinese(answer) else " Hope this helps.")


def stratum(r: Record) -> tuple[str, str]:
    """(language, task type) of a seed task: its instruction's language (zh or en) and whether it is
    a classification task (a fixed label set) or open generation."""
    seed = r.meta.get("seed") if isinstance(r.meta.get("seed"), dict) else {}
    return ("zh" if is_chinese(r.instruction) else "en", "classification" if seed.get("is_classification") else "generation")


def stratified(candidates: list[Record], n: int, shares: dict[Any, float], rng: random.Random,
               key: Callable[[Record], Any] = stratum) -> list[Record]:
    """``n`` records from ``candidates`` whose strata (``key``: :func:`stratum` by default) follow
    ``shares`` (the clean pool's): each stratum gets its share of ``n`` by largest remainder, drawn
    without replacement while it lasts (then with replacement); a stratum with no candidate passes
    its quota to the others."""
    by: dict[Any, list[Record]] = {}
    for r in candidates:
        by.setdefault(key(r), []).append(r)
    live = {k: v for k, v in shares.items() if by.get(k)}
    total = sum(live.values())
    exact = {k: n * v / total for k, v in live.items()}
    quota = {k: int(x) for k, x in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - quota[k], reverse=True)[: n - sum(quota.values())]:
        quota[k] += 1
    out = []
    for k in sorted(quota):
        group = by[k]
        picked = rng.sample(group, min(quota[k], len(group)))
        picked += [rng.choice(group) for _ in range(quota[k] - len(picked))]
        out += picked
    rng.shuffle(out)
    return out


def build(seeds: list[Record], per_kind: int, seed: int) -> list[Record]:
    """The clean seeds plus ``per_kind`` tagged defects of each kind, shuffled.

    Every kind's damaged copies are spread over languages and task types as the clean pool is
    (:func:`stratified`), so that removing the defects leaves the pool's mix unchanged: a filter
    that removes them must not, as a side effect, change the share of Chinese or of classification
    tasks (the confound an earlier version of this pool had: every refusal sat on an English task).
    """
    rng = random.Random(seed)
    counts: dict[tuple[str, str], int] = {}
    for r in seeds:
        counts[stratum(r)] = counts.get(stratum(r), 0) + 1
    shares = {k: v / len(seeds) for k, v in counts.items()}
    by_language: dict[str, list[Record]] = {"zh": [], "en": []}
    for r in seeds:
        by_language[stratum(r)[0]].append(r)
    pool = list(seeds)

    def tagged(src: Record, answer: str, kind: str) -> Record:
        return src.with_answer(answer, source="noisy-pool", meta={"injected": kind, "injected_from": src.id})

    eligible = {
        "truncation": [r for r in seeds if word_equivalents(r.response) >= 40],
        "refusal": seeds,
        "near_duplicate": [r for r in seeds if word_equivalents(r.response) >= 8],
        "off_topic": seeds,
        "wrong_language": seeds,
    }
    for kind in KINDS:
        for src in stratified(eligible[kind], per_kind, shares, rng):
            lang = stratum(src)[0]
            if kind == "truncation":
                bad = truncate(src.response, rng)
            elif kind == "refusal":
                bad = REFUSALS[3] if lang == "zh" else rng.choice(REFUSALS[:3])
            elif kind == "near_duplicate":
                bad = near_duplicate(src.response, rng)
            elif kind == "off_topic":  # another task's answer, in the same language
                bad = rng.choice([r for r in by_language[lang] if r.id != src.id and len(r.response) >= 30]).response
            else:  # another task's answer, in the other language
                bad = rng.choice([r for r in by_language["en" if lang == "zh" else "zh"] if len(r.response) >= 30]).response
            pool.append(tagged(src, bad, kind))
    rng.shuffle(pool)
    return pool


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default=str(ROOT / "seeds" / "175.jsonl"), help="clean records (default: the bundled seed tasks)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "data" / "noisy_pool.jsonl"), help="pool file to write (record format)")
    ap.add_argument("--per-kind", type=int, default=25, help="injected records per defect kind (default 25)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    pool = build(list(read_records(args.seeds)), args.per_kind, args.seed)
    write_records(args.out, pool)
    counts = Counter(str(r.meta.get("injected") or "clean") for r in pool)
    print(f"{len(pool)} records -> {args.out}: {dict(sorted(counts.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
