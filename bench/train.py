"""Training throughput: packed rows against padded batches, and against TRL's SFTTrainer, in one process.

The data mimics an Alpaca-style mix: the 175 bundled seed tasks (short answers, tens of tokens)
plus ``--long`` synthetic records whose answers run to hundreds of tokens. Each mode trains LoRA
on the embedded SmolLM2-135M for ``--steps`` optimizer steps with the same batch size, learning
rate and seed; a fresh model per mode. Throughput is *non-padding* tokens per second (real tokens
only, the work that teaches something), the median over steps after the first (warm-up);
padding waste is the share of the computed token slots that held padding.

    .venv/bin/python bench/train.py                      # packed vs padded (+ TRL when installed)
    .venv/bin/python bench/train.py --steps 8 --batch 8 --max-length 512

TRL is optional (``pip install trl``; it must not replace torch). Its SFTTrainer runs on the same
records as prompt/completion pairs (completion-only loss), packed with its BFD packing
(padding-free rows), and unpacked (padded), counted by the same meter.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DATAGEN_PROGRESS", "0")

from datagen.core.io import read_records
from datagen.core.record import Record

TOPICS = ["rivers", "bridges", "volcanoes", "printing", "bees", "tides", "glass", "chess", "comets", "bread"]
SENTENCES = [
    "It begins with a simple observation that anyone can make.",
    "Over the centuries people refined the idea, step by careful step.",
    "The details matter, because small changes add up to large effects.",
    "Engineers and scientists still argue about the best explanation.",
    "A worked example makes the principle much easier to follow.",
    "Finally, the practical consequences reach into everyday life.",
]


def dataset(n_long: int, seed: int) -> list[Record]:
    """The seed tasks plus ``n_long`` long-answer records (100-700 words)."""
    records = list(read_records(ROOT / "seeds" / "175.jsonl"))
    rng = random.Random(seed)
    for i in range(n_long):
        topic = TOPICS[i % len(TOPICS)]
        words = rng.randint(100, 700)
        body: list[str] = []
        while sum(len(s.split()) for s in body) < words:
            body.append(rng.choice(SENTENCES))
        records.append(Record.from_turns(f"Write a detailed explanation of {topic} (essay {i}).", " ".join(body)))
    rng.shuffle(records)
    return records


def step_rates(log_history: list[dict[str, Any]]) -> tuple[float, float]:
    """Median tokens/s over the logged steps after the first, and the mean padding waste."""
    logs = [h for h in log_history if "tokens_per_s" in h]
    rates = [h["tokens_per_s"] for h in logs[1:]] or [h["tokens_per_s"] for h in logs]
    waste = [h["padding_waste"] for h in logs]
    return statistics.median(rates), statistics.mean(waste)


def static_waste(records_path: str, max_length: int, batches: tuple[int, ...] = (2, 4, 8, 16)) -> list[str]:
    """Expected padding waste of shuffled batches, packed and padded, at several batch sizes:
    computed from the token counts alone (no training, no timing noise)."""
    from transformers import AutoTokenizer

    from datagen.llm.models import resolve_model
    from train.data import load_samples
    from train.packing import expected_padding, pack

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2"))
    samples, _ = load_samples(records_path, tokenizer, max_length=max_length)
    bins = pack(samples, max_length)
    lines = [f"{'batch':>5} {'packed waste':>13} {'padded waste':>13} {'slots padded/packed':>20}"]
    for b in batches:
        packed, padded = expected_padding(bins, batch_size=b), expected_padding(samples, batch_size=b)
        lines.append(f"{b:>5} {packed.padding_waste:>13.1%} {padded.padding_waste:>13.1%} {padded.capacity / packed.capacity:>20.2f}")
    return lines


def run_ours(records_path: str, packing: bool, args: argparse.Namespace) -> dict[str, Any]:
    from train.config import TrainConfig
    from train.model import load_for_training, resolve_runtime
    from train.run import build_trainer, load_data

    cfg = TrainConfig(
        method="lora", packing=packing, max_length=args.max_length, per_device_batch_size=args.batch,
        max_steps=args.steps, logging_steps=1, save_steps=10**6, learning_rate=2e-4, seed=0,
    )
    rt = resolve_runtime(cfg)
    model, tokenizer = load_for_training(cfg, rt)
    train, _, stats = load_data(cfg, records_path, tokenizer)
    with tempfile.TemporaryDirectory() as out:
        trainer, _ = build_trainer(cfg, rt, model, tokenizer, train, [], Path(out))
        trainer.args.save_strategy = "no"
        trainer.train()
    rate, waste = step_rates(trainer.state.log_history)
    return {"mode": "packed" if packing else "padded", "tokens_per_s": rate, "padding_waste": waste,
            "samples": stats["train_samples"], "rows": len(trainer.train_dataset)}


def run_trl(records: list[Record], packing: bool, args: argparse.Namespace) -> dict[str, Any]:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from train.config import TrainConfig
    from train.metrics import ThroughputCallback
    from train.model import load_for_training, resolve_runtime

    cfg = TrainConfig(method="lora", max_length=args.max_length, seed=0)
    rt = resolve_runtime(cfg)
    model, tokenizer = load_for_training(cfg, rt)  # the same LoRA model as ours
    rows = [
        {"prompt": [m.model_dump() for m in r.prompt_messages()], "completion": [{"role": "assistant", "content": r.response}]}
        for r in records
    ]
    with tempfile.TemporaryDirectory() as out:
        sft = SFTConfig(
            output_dir=out, max_length=args.max_length, packing=packing, per_device_train_batch_size=args.batch,
            max_steps=args.steps, logging_steps=1, save_strategy="no", report_to="none", learning_rate=2e-4,
            seed=0, use_cpu=True, bf16=False, completion_only_loss=True, dataset_num_proc=1,
            disable_tqdm=True,
        )
        meter = ThroughputCallback(n_params=0, pad_id=tokenizer.pad_token_id, peak=None)
        trainer = SFTTrainer(model=model, args=sft, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=[meter])
        inner = trainer.data_collator

        def counting(features: list[Any]) -> Any:
            batch = inner(features)
            meter.observe(batch)
            return batch

        trainer.data_collator = counting
        trainer.train()
    rate, waste = step_rates(trainer.state.log_history)
    return {"mode": f"trl {'packed' if packing else 'padded'}", "tokens_per_s": rate, "padding_waste": waste,
            "samples": len(rows), "rows": len(trainer.train_dataset)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5, help="optimizer steps per mode (the first is not timed)")
    ap.add_argument("--batch", type=int, default=4, help="rows per step, every mode")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--long", type=int, default=60, help="synthetic long-answer records added to the 175 seeds")
    ap.add_argument("--no-trl", action="store_true", help="skip TRL even when installed")
    args = ap.parse_args()

    records = dataset(args.long, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(r.to_json() + "\n" for r in records)
        waste_table = static_waste(path, args.max_length)
        use_trl = not args.no_trl and importlib.util.find_spec("trl") is not None
        if not use_trl:
            print("TRL: " + ("skipped (--no-trl)" if args.no_trl else "not installed (pip install trl, if it leaves torch alone); skipped"))
        # interleaved, so that a change in the machine's load does not favour one side
        results = []
        for packing in (True, False):
            results.append(run_ours(path, packing=packing, args=args))
            if use_trl:
                results.append(run_trl(records, packing=packing, args=args))

    base = results[0]["tokens_per_s"]
    print(f"\n{len(records)} records, batch {args.batch}, max_length {args.max_length}, {args.steps} steps per mode")
    print(f"{'mode':<12} {'tokens/s':>9} {'padding':>8} {'rows':>5} {'vs packed':>9}")
    for r in results:
        print(f"{r['mode']:<12} {r['tokens_per_s']:>9.1f} {r['padding_waste']:>8.1%} {r['rows']:>5} {r['tokens_per_s'] / base:>9.2f}")
    print("\nexpected padding waste over a shuffled epoch (token counts only):")
    print("\n".join(waste_table))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
