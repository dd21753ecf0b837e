"""The ``train`` command line: ``run``, ``eval``, ``merge`` and ``config``.

Parsing only, like :mod:`datagen.cli`: each subcommand's work is imported when it runs, so
``train --help`` never loads torch. User mistakes (bad config, bad data, QLoRA on a CPU) print one
line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from datagen.core.cli import out_dir, out_file, parse_and_run
from datagen.core.settings import add_flags
from datagen.llm.config import LLMConfig

# the judge's backend settings, as --judge-llm, --judge-model ... (the cache flags keep their names)
JUDGE_BACKEND = ("backend", "model", "base_url", "api_key_env", "concurrency", "rpm", "tpm", "timeout", "max_retries")

# named flags of `train run` -> config fields; they override the recipe and --set
RUN_FLAGS: tuple[tuple[str, str, type, str], ...] = (
    ("--model", "model", str, "base model: 'smollm2' (embedded) or a local HF model folder"),
    ("--method", "method", str, "full | lora | dora | qlora"),
    ("--max-steps", "max_steps", int, "optimizer steps (overrides --epochs)"),
    ("--epochs", "num_epochs", float, "passes over the data"),
    ("--lr", "learning_rate", float, "peak learning rate"),
    ("--batch-size", "per_device_batch_size", int, "rows per device per forward pass"),
    ("--grad-accum", "gradient_accumulation_steps", int, "forward passes per optimizer step"),
    ("--max-length", "max_length", int, "longest sample / packed row, in tokens"),
    ("--eval-split", "eval_split", str, "held-out fraction (0.05) or an eval data file"),
    ("--save-steps", "save_steps", int, "checkpoint every N steps"),
    ("--seed", "seed", int, "seed for init, data order and dropout"),
    ("--split", "data_split", str, "the split of a DatasetDict folder or of --data hf:ORG/NAME"),
    ("--map", "data_map", str, "rename columns before reading: response=output,context=input"),
    ("--roles", "data_roles", str, "rename turn roles before reading: bot=assistant"),
    ("--limit", "limit", int, "train on the first K records only (try a recipe in seconds)"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train", description="Fine-tune a model on curated SFT data (transformers Trainer + peft).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="fine-tune: full, LoRA, DoRA or QLoRA; packed batches; checkpoints and --resume")
    p.add_argument("--data", required=True, metavar="FILE", help="training records (any datagen input: a file, a save_to_disk folder or hf:ORG/NAME; any format it reads)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", type=out_dir, help="output folder: checkpoints, the model or adapter, train_manifest.json, metrics.json")
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out (a larger --max-steps trains further)")
    p.add_argument("--force", action="store_true", help="train from scratch even if --out holds a run")
    p.set_defaults(func="train.run:cli")

    p = sub.add_parser("config", help="print the resolved configuration (defaults < recipe < --set < flags) with each setting's help")
    _add_config_args(p)
    p.set_defaults(func="train.config:cli_show")

    p = sub.add_parser("merge", help="merge a LoRA/DoRA adapter into its base; saves a plain 16-bit model folder")
    p.add_argument("--adapter", required=True, metavar="DIR", help="a `train run` output folder of a lora/dora run")
    p.add_argument("--out", "-o", required=True, metavar="DIR", type=out_dir, help="folder for the merged model")
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16", help="dtype of the saved weights (merging itself runs in fp32)")
    p.add_argument("--base", default=None, metavar="MODEL", help="base model, if not the one named in adapter_config.json")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func="train.merge:cli")

    p = sub.add_parser("eval", help="held-out loss and perplexity on a gold set, sample generations, optional judge win rate vs the base")
    p.add_argument("--model", required=True, metavar="DIR", help="a `train run` output (adapter or full) or any model folder")
    p.add_argument("--data", required=True, metavar="FILE", help="gold set with answers (any datagen format)")
    p.add_argument("--out", "-o", default=None, metavar="FILE", type=out_file, help="write the results as JSON here")
    p.add_argument("--prompts", default=None, metavar="FILE", help="prompts to answer (default: the gold set's first --n-prompts)")
    p.add_argument("--n-prompts", type=int, default=32, metavar="N", help="how many prompts to answer (the behavioural defect rates are shares of these)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--max-length", type=int, default=None, help="truncate gold samples to this many tokens")
    p.add_argument("--format", choices=("alpaca", "sharegpt", "messages", "record", "dolly", "ultrachat", "prompt-completion"), default=None, help="gold-set format (default: detected)")
    p.add_argument("--limit", type=int, default=None, metavar="K", help="score only the first K gold records")
    p.add_argument("--split", default=None, metavar="NAME", help="the split of a DatasetDict folder or of --data hf:ORG/NAME (also for --prompts)")
    p.add_argument("--map", default=None, metavar="SRC=DST,...", help="rename columns before reading (--data and --prompts): response=output,context=input")
    p.add_argument("--roles", default=None, metavar="SRC=DST,...", help="rename turn roles before reading (--data and --prompts): bot=assistant")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default=None, help="cpu, cuda... (default: cuda if available)")
    p.add_argument("--base", default=None, metavar="MODEL", help="base of an adapter, if not the one named in adapter_config.json")
    p.add_argument("--compare-base", action="store_true",
                   help="the base model answers the same prompts too: its answers and defect rates sit beside the model's (before vs after)")
    j = p.add_argument_group("judge (win rate against the base model)")
    j.add_argument("--judge", action="store_true", help="have a judge compare each answer with the base model's, in both orders")
    j.add_argument("--base-model", default=None, metavar="MODEL", help="the model to compare against (default: the base the model was trained from)")
    add_flags(j, LLMConfig, only=JUDGE_BACKEND, prefix="judge_")
    add_flags(j, LLMConfig, only=("cache", "no_cache"))
    p.set_defaults(func="train.evaluate:cli")
    return parser


def _add_config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration (defaults < --config < --set < named flags)")
    g.add_argument("--config", "-c", default=None, metavar="RECIPE", help="YAML recipe: a file, or a bundled one (lora-smollm2-cpu, lora, dora, qlora, full)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets", help="override one setting (repeatable); `train config` lists them")
    for flag, dest, typ, help_ in RUN_FLAGS:
        g.add_argument(flag, dest=f"cfg_{dest}", type=typ, default=None, help=help_)
    g.add_argument("--packing", dest="cfg_packing", action=argparse.BooleanOptionalAction, default=None, help="pack samples into full rows (default on)")


def config_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given as named flags (None: not given)."""
    return {k[len("cfg_"):]: v for k, v in vars(args).items() if k.startswith("cfg_")}


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv, resume_hint=_resume_hint)


def _resume_hint(args: argparse.Namespace) -> str:
    if args.command == "run":
        return "rerun with --resume to continue from the last checkpoint"
    return "the command did not finish; run it again"


if __name__ == "__main__":
    sys.exit(main())
