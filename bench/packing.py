"""Padding waste of packed against padded batches, on real and synthetic length mixes.

Two length mixes, both rendered with the embedded SmolLM2 tokenizer's chat template:

* ``seeds``: the bundled ``seeds/175.jsonl``, rendered by :func:`train.data.load_samples`;
* ``alpaca-like``: ``--n`` synthetic lengths, log-normal around 150 tokens with a long tail
  (median ~150, p95 ~550), plus the template's overhead measured on a real render.

For each ``--max-length`` the script prints, with batches of ``--batch-size`` rows in a shuffled
order (as the trainer's sampler gives them): rows, computed token slots and padding waste for
padded batches (one sample per row) and for packed batches (best-fit-decreasing bins, each batch
padded to its longest bin), and the ratio of slots: how many fewer token positions a packed epoch
computes. Attention cost is not modelled (it grows with the row length, which packing raises).

    .venv/bin/python bench/packing.py
    .venv/bin/python bench/packing.py --max-length 512 1024 2048 --batch-size 8 --n 20000
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from datagen.core.record import Record
from train.data import IGNORE_INDEX, Sample, load_samples, render
from train.packing import expected_padding, pack


def synthetic(n: int, overhead: int, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        n_tok = overhead + min(4000, max(8, int(rng.lognormvariate(5.0, 0.8))))
        out.append(Sample([0] * n_tok, [IGNORE_INDEX] + [0] * (n_tok - 1), f"syn{i}"))
    return out


def report(name: str, samples: list[Sample], max_lengths: list[int], batch_size: int) -> None:
    for max_length in max_lengths:
        fits = [s for s in samples if len(s) <= max_length]
        padded = expected_padding(fits, batch_size=batch_size)
        packed = expected_padding(pack(fits, max_length), batch_size=batch_size)
        print(
            f"{name:12s} max_length={max_length:5d} samples={len(fits):6d} (dropped {len(samples) - len(fits)})  "
            f"padded: {padded.n_bins} rows, {padded.capacity} slots, waste {padded.padding_waste:5.1%}  |  "
            f"packed: {packed.n_bins} rows, {packed.capacity} slots, waste {packed.padding_waste:5.1%}  |  "
            f"slots padded/packed = {padded.capacity / packed.capacity:.2f}x"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-length", type=int, nargs="+", default=[512, 1024, 2048])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--n", type=int, default=20000, help="synthetic samples")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from datagen.llm.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2"))
    seeds, problems = load_samples(str(ROOT / "seeds" / "175.jsonl"), tokenizer)
    lengths = sorted(len(s) for s in seeds)
    print(f"seeds: {len(seeds)} samples, tokens min {lengths[0]} median {lengths[len(lengths) // 2]} max {lengths[-1]}; {len(problems)} problems")
    # the template's tokens around one exchange (default system prompt included): render "a" -> "b"
    overhead = len(render(Record.from_turns("a", "b"), tokenizer)) - 2
    report("seeds", seeds, args.max_length, args.batch_size)
    report("alpaca-like", synthetic(args.n, overhead), args.max_length, args.batch_size)


if __name__ == "__main__":
    main()
