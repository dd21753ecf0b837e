"""Generation throughput of the embedded model: batch 1 against a larger batch, same process.

The same prompts are decoded greedily at each batch size, so both runs produce (nearly) the same
tokens; throughput is the number of tokens actually generated divided by wall time, so a row that
ends early is not counted as work. The prompts ask for long essays so that most rows run to
``--max-tokens``; the finish reasons are printed to show it. Figures are medians over ``--repeats``
timed runs after one untimed warm-up.

    .venv/bin/python bench/local_generation.py                    # 16 prompts, 64 tokens, batch 1 vs 16
    .venv/bin/python bench/local_generation.py --batch 8 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datagen.llm import ChatRequest, GenParams  # noqa: E402
from datagen.llm.local import LocalLLM  # noqa: E402

TOPICS = [
    "the history of the printing press", "how bees make honey", "the water cycle", "the Roman Empire",
    "volcanoes", "the invention of the telephone", "how vaccines work", "the life of a star",
    "the French Revolution", "photosynthesis", "the history of chess", "ocean currents",
    "the Silk Road", "how airplanes fly", "the human heart", "the discovery of penicillin",
]


def measure(llm: LocalLLM, requests: list[ChatRequest], params: GenParams, batch: int, repeats: int) -> dict:
    """Median tokens/s over ``repeats`` runs at one batch size."""
    llm.batch_size = batch
    rates, seconds = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        out = llm.generate(requests, params)
        elapsed = time.perf_counter() - start
        rates.append(sum(c.completion_tokens for c in out) / elapsed)
        seconds.append(elapsed)
    return {
        "batch": batch,
        "tok_s": statistics.median(rates),
        "seconds": statistics.median(seconds),
        "tokens": sum(c.completion_tokens for c in out),
        "finish": dict(Counter(c.finish_reason for c in out)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=16, help=f"prompts per run (at most {len(TOPICS)})")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16, help="the batch size compared with batch 1")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    os.environ["DATAGEN_PROGRESS"] = "0"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    import torch

    requests = [ChatRequest.of([("user", f"Write a long, detailed essay about {t}.")]) for t in TOPICS[: args.prompts]]
    params = GenParams(max_tokens=args.max_tokens, temperature=0)
    llm = LocalLLM("smollm2", device=args.device)
    llm.generate(requests[:2], GenParams(max_tokens=8, temperature=0))  # load + warm up
    print(f"model {llm.model_id} on {llm.describe()['device']}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {len(requests)} prompts x {args.max_tokens} new tokens, greedy, "
          f"median of {args.repeats}")
    base = measure(llm, requests, params, 1, args.repeats)
    batched = measure(llm, requests, params, args.batch, args.repeats)
    for row in (base, batched):
        print(f"  batch {row['batch']:>3}: {row['tok_s']:7.1f} tok/s  ({row['tokens']} tokens in "
              f"{row['seconds']:.1f} s, finish {row['finish']})")
    print(f"  ratio batch {args.batch} / batch 1: {batched['tok_s'] / base['tok_s']:.2f}x")


if __name__ == "__main__":
    main()
