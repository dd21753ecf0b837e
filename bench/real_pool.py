"""Build "a pool we did not build": real answers by three real LLMs, tagged defects, a disjoint gold set.

:mod:`bench.noisy_pool` damages the bundled seed tasks, whose answers we wrote ourselves. This
script does the same to instruction/answer pairs that other people's models wrote, so that a filter
is tested on text it was not tuned on.

Where the data comes from
    The public repository ``tatsu-lab/alpaca_eval``, folder ``results/<model>/model_outputs.json``:
    one JSON list per model, the same 805 AlpacaEval instructions in the same order for every model.
    The pool takes consecutive list positions and gives each instruction to one model only:

    * ``text_davinci_003`` (OpenAI): positions 0-61, 60 pairs (skipped 9 and 60);
    * ``Mixtral-8x7B-Instruct-v0.1_concise`` (Mistral): positions 62-126, 60 pairs
      (skipped 62, 68, 76, 92, 110);
    * ``falcon-7b-instruct`` (TII Falcon): positions 127-191, 60 pairs (skipped 136, 138, 146, 156, 171).

    The gold set is ``gpt4_0613_concise`` (GPT-4, a stronger model than the three) at positions
    192-246, 40 pairs (skipped 193, 203, 205, 206, 208, 217, 221, 222, 226, 228, 229, 235, 239, 240,
    243): no gold instruction is in the pool. A pair was skipped, and the next position taken in
    its place, when its answer has more than 220 words or instruction + answer more than 1,400
    characters (the student trains on rows of 512 tokens). Text is verbatim, never edited.

Why it is not in this repository
    The AlpacaEval instructions are CC BY-NC 4.0 and the answers are the outputs of third-party
    models under their providers' terms, so the extracted pairs are not redistributed here. They
    live in the git-ignored ``runs/real-pool/``:

    * ``source.jsonl``: the 180 pool pairs, one ``{"instruction", "output", "generator", "position"}``
      object a line (``generator`` is the ``results/`` folder name, ``position`` the list index);
    * ``gold_source.jsonl``: the 40 gold pairs, same fields.

    To rebuild them, take those positions of those files from the alpaca_eval repository (for
    example ``results/text_davinci_003/model_outputs.json``) and write the fields above.

What it writes (``--out-dir``, default ``runs/real-pool``)
    * ``pool.jsonl`` (record format): the 180 real pairs, untagged and clean, plus ``--per-kind``
      damaged copies of each kind, tagged ``meta["injected"] = <kind>`` and
      ``meta["injected_from"] = <source record id>`` as in :mod:`bench.noisy_pool`:

      - ``truncation``: an answer of >= 40 words cut at 55-70% of its words, mid-sentence;
      - ``refusal``: the answer replaced by a canned English refusal;
      - ``near_duplicate``: the record again with one small edit;
      - ``off_topic``: the answer of another pool record by the same model (so the style still
        matches the label);
      - ``wrong_language``: the pool is English only, so the wrong-language answer is a Chinese
        answer of a bundled seed task (``seeds/175.jsonl``, Chinese instruction and answer).

      Every record, clean or copy, keeps ``meta["generator"]`` (the model that wrote the
      instruction's answer in the source) and ``meta["position"]``. Each kind's copies are spread
      evenly over the three generators (:func:`bench.noisy_pool.stratified`, by generator), so removing the defects cannot change the
      share of any model in the pool: defects concentrated on one model would confound "the filter
      removed defects" with "the filter removed that model".
    * ``gold.jsonl`` (messages format, like ``bench/data/gold.jsonl``): the 40 gold pairs.

Commands::

    .venv/bin/python bench/real_pool.py --source runs/real-pool/source.jsonl \\
        --gold-source runs/real-pool/gold_source.jsonl --out-dir runs/real-pool --per-kind 15
    datagen ablate --pool runs/real-pool/pool.jsonl --gold runs/real-pool/gold.jsonl --budget 60 --out runs/ablate-real
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from datagen.core.io import read_records
from datagen.core.writing import write_records
from datagen.core.record import Record
from datagen.core.text import word_equivalents
from noisy_pool import KINDS, REFUSALS, is_chinese, near_duplicate, stratified, truncate

SOURCE = "alpaca_eval"


def generator(r: Record) -> str:
    return str(r.meta.get("generator"))


def load_pairs(path: str) -> list[Record]:
    """Real pairs from a ``{"instruction", "output", "generator", "position"}`` JSONL file, as
    records with ``meta["generator"]`` and ``meta["position"]``; text as it is in the file."""
    out = []
    for r in read_records(path, "alpaca"):
        extra = r.meta.get("extra") or {}
        if "generator" not in extra or "position" not in extra:
            raise SystemExit(f"{path}: every row needs 'generator' and 'position' (see this script's docstring)")
        out.append(Record.from_turns(r.instruction, r.response, source=SOURCE, meta={"generator": extra["generator"], "position": extra["position"]}))
    return out


def build(pairs: list[Record], chinese_answers: list[str], per_kind: int, seed: int) -> list[Record]:
    """The clean real pairs plus ``per_kind`` tagged defects of each kind, shuffled."""
    rng = random.Random(seed)
    counts = Counter(generator(r) for r in pairs)
    shares = {k: v / len(pairs) for k, v in counts.items()}
    by_generator: dict[str, list[Record]] = {}
    for r in pairs:
        by_generator.setdefault(generator(r), []).append(r)
    pool = list(pairs)

    def tagged(src: Record, answer: str, kind: str, **extra: object) -> Record:
        meta = {"generator": generator(src), "position": src.meta.get("position"), "injected": kind, "injected_from": src.id, **extra}
        return src.with_answer(answer, source="real-pool", meta=meta)

    eligible = {
        "truncation": [r for r in pairs if word_equivalents(r.response) >= 40],
        "refusal": pairs,
        "near_duplicate": [r for r in pairs if word_equivalents(r.response) >= 8],
        "off_topic": pairs,
        "wrong_language": pairs,
    }
    for kind in KINDS:
        for src in stratified(eligible[kind], per_kind, shares, rng, key=generator):
            extra: dict[str, object] = {}
            if kind == "truncation":
                bad = truncate(src.response, rng)
            elif kind == "refusal":
                bad = rng.choice(REFUSALS[:3])  # the English ones: the pool is English
            elif kind == "near_duplicate":
                bad = near_duplicate(src.response, rng)
            elif kind == "off_topic":  # another record's answer, by the same model
                donor = rng.choice([r for r in by_generator[generator(src)] if r.id != src.id and len(r.response) >= 30])
                bad, extra = donor.response, {"answer_from": donor.id}
            else:  # a Chinese seed-task answer: the pool has no Chinese source of its own
                bad, extra = rng.choice(chinese_answers), {"answer_from": "seeds/175.jsonl"}
            pool.append(tagged(src, bad, kind, **extra))
    rng.shuffle(pool)
    return pool


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=str(ROOT / "runs" / "real-pool" / "source.jsonl"), help="real pool pairs (see above)")
    ap.add_argument("--gold-source", default=str(ROOT / "runs" / "real-pool" / "gold_source.jsonl"), help="real gold pairs (see above)")
    ap.add_argument("--out-dir", default=str(ROOT / "runs" / "real-pool"), help="where pool.jsonl and gold.jsonl go (default runs/real-pool)")
    ap.add_argument("--seeds", default=str(ROOT / "seeds" / "175.jsonl"), help="seed tasks whose Chinese answers serve as wrong-language answers")
    ap.add_argument("--per-kind", type=int, default=15, help="injected records per defect kind (default 15)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    pairs, gold = load_pairs(args.source), load_pairs(args.gold_source)
    overlap = {r.instruction for r in pairs} & {r.instruction for r in gold}
    if overlap:
        raise SystemExit(f"{len(overlap)} gold instruction(s) also in the pool; the gold set must be disjoint")
    chinese = [r.response for r in read_records(args.seeds) if is_chinese(r.instruction) and is_chinese(r.response) and len(r.response) >= 30]
    if not chinese:
        raise SystemExit(f"{args.seeds}: no seed task with a Chinese instruction and answer")

    pool = build(pairs, chinese, args.per_kind, args.seed)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_records(out / "pool.jsonl", pool)
    write_records(out / "gold.jsonl", [Record.from_turns(r.instruction, r.response) for r in gold], fmt="messages")
    kinds = Counter(str(r.meta.get("injected") or "clean") for r in pool)
    gens = Counter(generator(r) for r in pool)
    print(f"{len(pool)} records -> {out / 'pool.jsonl'}: {dict(sorted(kinds.items()))}; by generator {dict(sorted(gens.items()))}")
    print(f"{len(gold)} gold pairs -> {out / 'gold.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
