"""The arguments that several commands share (input, run directory, model backend, sampling),
and what they become: an :class:`~datagen.llm.LLMConfig`, :class:`~datagen.llm.GenParams`, an
:class:`~datagen.core.source.InputSpec`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from datagen.core.cli import out_dir
from datagen.core.errors import UserError
from datagen.core.record import Record, Rejection
from datagen.core.source import InputSpec

if TYPE_CHECKING:
    from pydantic import BaseModel

M = TypeVar("M", bound="BaseModel")


def add_input(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("input")
    g.add_argument("--input", "-i", required=required, metavar="FILE", help="JSONL, JSON array or Parquet file")
    g.add_argument(
        "--format", choices=("alpaca", "sharegpt", "messages", "seed", "record"), default=None,
        help="input format (default: detected from the first row)",
    )
    g.add_argument(
        "--on-error", choices=("raise", "skip"), default="raise",
        help="bad input rows: stop with an error naming file, line and field (default), or skip them into rejected.jsonl",
    )
    g.add_argument("--limit", type=int, default=None, metavar="K", help="process only the first K records (try a pipeline in seconds)")


def add_llm_args(p: argparse.ArgumentParser, default_max_new_tokens: int = 512) -> None:
    g = p.add_argument_group("model backend")
    g.add_argument("--llm", choices=("local", "openai"), default="local", help="local: embedded SmolLM2-135M-Instruct or a local HF folder; openai: any OpenAI-compatible server")
    g.add_argument("--model", default=None, help="local: 'smollm2' (default) or a model folder; openai: the served model name")
    g.add_argument("--base-url", default=None, help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (vLLM), http://localhost:11434/v1 (Ollama)")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR", help="environment variable holding the API key (the key itself is never logged or stored)")
    g.add_argument("--concurrency", type=int, default=16, help="openai: requests in flight")
    g.add_argument("--rpm", type=float, default=None, help="openai: requests-per-minute limit")
    g.add_argument("--tpm", type=float, default=None, help="openai: tokens-per-minute limit")
    g.add_argument("--timeout", type=float, default=120.0, help="openai: seconds per request before retrying")
    g.add_argument("--max-retries", type=int, default=6, help="openai: retries on 429/5xx/timeouts")
    g.add_argument("--max-consecutive-failures", type=int, default=None, metavar="N",
                   help="openai: stop sending after N requests in a row failed for good (default max(20, 2 x concurrency); 0: finish the batch). Either way a request the server failed stays pending: the command stops with exit 3 and a rerun sends it")
    g.add_argument("--max-tokens", type=int, default=None, dest="max_tokens_budget", metavar="N", help="budget: stop cleanly (resumable) after N tokens")
    g.add_argument("--max-cost", type=float, default=None, help="budget: stop cleanly (resumable) after this cost; needs --price-in/--price-out")
    g.add_argument("--price-in", type=float, default=0.0, help="price per 1M prompt tokens")
    g.add_argument("--price-out", type=float, default=0.0, help="price per 1M completion tokens")
    g.add_argument("--batch-size", type=int, default=8, help="local: prompts per generation batch")
    g.add_argument("--device", default=None, help="local: cpu, cuda, cuda:1 ... (default: cuda if available)")
    g.add_argument("--cache", default=None, metavar="PATH", help="request cache (sqlite); default ~/.cache/datagen/llm_cache.sqlite")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the request cache")
    s = p.add_argument_group("sampling")
    s.add_argument("--max-new-tokens", type=int, default=default_max_new_tokens, help="longest generation per request")
    s.add_argument("--temperature", type=float, default=0.7)
    s.add_argument("--top-p", type=float, default=0.95)
    s.add_argument("--seed", type=int, default=0)


def add_run_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", "-o", required=True, metavar="DIR", type=out_dir, help="run directory (records.jsonl, rejected.jsonl, stats.json, manifest.json)")
    p.add_argument("--force", action="store_true", help="replace a finished or different run in --out")


def llm_config(args: argparse.Namespace):
    from datagen.llm import LLMConfig

    if args.max_cost is not None and not (args.price_in or args.price_out):
        raise UserError("--max-cost needs --price-in and/or --price-out (price per 1M tokens)")
    return LLMConfig(
        backend=args.llm, model=args.model, base_url=args.base_url, api_key_env=args.api_key_env,
        concurrency=args.concurrency, rpm=args.rpm, tpm=args.tpm, timeout=args.timeout,
        max_retries=args.max_retries, max_consecutive_failures=args.max_consecutive_failures,
        max_tokens_budget=args.max_tokens_budget, max_cost=args.max_cost,
        price_in=args.price_in, price_out=args.price_out, batch_size=args.batch_size, device=args.device,
        cache=args.cache, no_cache=args.no_cache,
    )


def gen_params(args: argparse.Namespace, **overrides: Any):
    from datagen.llm import GenParams

    kw = dict(max_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    kw.update(overrides)
    try:
        return GenParams(**kw)
    except ValueError as e:
        raise UserError(str(e)) from None


def read_input(args: argparse.Namespace, on_reject: Callable[[Rejection], None], require_answer: bool = True) -> list[Record]:
    return InputSpec.from_args(args).read(on_reject, require_answer)


def input_settings(args: argparse.Namespace, path: str | Path | None = None, key: str = "input") -> dict[str, Any]:
    return InputSpec.from_args(args, path).settings(key)


def add_settings_source(group: Any) -> None:
    """``--config FILE`` and ``--set KEY=VALUE``: the layers below the flags (:mod:`datagen.core.settings`)."""
    group.add_argument("--config", default=None, metavar="YAML", help="settings from a YAML file (keys: the flags' names, with underscores)")
    group.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE",
                       help="one setting, its value parsed as YAML (repeatable; above --config, below the flags)")


def settings_from(args: argparse.Namespace, model: type[M]) -> M:
    """``model`` from its defaults, ``--config``, ``--set`` and the flags given, in that order."""
    from datagen.core.settings import build, given

    return build(model, file=getattr(args, "config", None), sets=getattr(args, "sets", None) or (), flags=given(args, model))
