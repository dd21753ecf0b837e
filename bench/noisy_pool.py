"""Build a noisy record pool with known, tagged defects, for ``datagen ablate``.

The clean records are the bundled seed tasks (``seeds/175.jsonl``: instruction + reference
answer, English and Chinese). Copies of seed records are then damaged in five ways, each copy
tagged ``meta["injected"] = <kind>`` (and ``meta["injected_from"]`` = the source record's id):

* ``truncation``: a long answer cut at 55-70% of its words, mid-sentence;
* ``refusal``: the answer replaced by a canned refusal;
* ``near_duplicate``: the record again with one small edit (a word changed, punctuation);
* ``off_topic``: the answer of another, unrelated seed task;
* ``wrong_language``: an English instruction answered in Chinese or a Chinese one in English
  (the answer of another seed task in the other language).

Untagged records are clean. ``datagen ablate`` reads the tags and reports, per kind, how many the
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datagen.io import read_records, write_records
from datagen.record import Record

KINDS = ("truncation", "refusal", "near_duplicate", "off_topic", "wrong_language")
REFUSALS = (
    "I'm sorry, but I can't help with that request.",
    "As an AI language model, I am unable to answer this question.",
    "I cannot provide that information. Is there anything else I can help you with?",
    "抱歉，我无法回答这个问题。",
)
_CJK = re.compile(r"[\u4e00-\u9fff]")
_EDITS = (("the", "a"), (".", "!"), (",", ";"), ("is", "was"), ("and", "as well as"))


def is_chinese(text: str) -> bool:
    return len(_CJK.findall(text)) >= 4


def truncate(answer: str, rng: random.Random) -> str:
    """The first 55-70% of the words, ending on a word that does not end a sentence."""
    words = list(re.finditer(r"\S+", answer))
    cut = int(len(words) * rng.uniform(0.55, 0.7))
    while cut > 1 and words[cut - 1].group()[-1] in ".!?。！？:;)":
        cut -= 1
    return answer[: words[cut - 1].end()]


def near_duplicate(answer: str, rng: random.Random) -> str:
    """One small edit: a swapped function word or punctuation mark, or a trailing remark."""
    for old, new in rng.sample(_EDITS, len(_EDITS)):
        if f" {old} " in answer or (old in ".,;" and old in answer):
            return answer.replace(f" {old} " if old.isalpha() else old, f" {new} " if new.isalpha() else new, 1)
    return answer + " Hope this helps."


def build(seeds: list[Record], per_kind: int, seed: int) -> list[Record]:
    """The clean seeds plus ``per_kind`` tagged defects of each kind, shuffled."""
    rng = random.Random(seed)
    english = [r for r in seeds if not is_chinese(r.instruction)]
    chinese = [r for r in seeds if is_chinese(r.instruction)]
    long_ones = [r for r in seeds if len(r.response.split()) >= 70]
    pool = list(seeds)

    def tagged(src: Record, answer: str, kind: str) -> Record:
        return src.with_answer(answer, source="noisy-pool", meta={"injected": kind, "injected_from": src.id})

    for kind in KINDS:
        for i in range(per_kind):
            if kind == "truncation":
                src = long_ones[i % len(long_ones)]
                bad = truncate(src.response, rng) if i < len(long_ones) else truncate(src.response, rng) + " and"
            elif kind == "refusal":
                src = rng.choice(english)
                bad = rng.choice(REFUSALS[:3])
            elif kind == "near_duplicate":
                src = rng.choice([r for r in seeds if len(r.response.split()) >= 8])
                bad = near_duplicate(src.response, rng)
            elif kind == "off_topic":
                src, other = rng.sample(english, 2)
                bad = other.response
            else:
                src = rng.choice(english if i % 3 else chinese)
                others = [r for r in (chinese if src in english else english) if len(r.response) >= 30]
                bad = rng.choice(others).response
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
