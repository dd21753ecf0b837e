"""The ``datagen`` command line. Parsing only: each subcommand's work lives in its own module and
is imported when that subcommand runs, so ``datagen --help`` never loads torch."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable, Sequence

from datagen import __version__

EXIT_USER = 2
EXIT_BUDGET = 3
EXIT_INTERRUPTED = 130


def _add_input(p: argparse.ArgumentParser, required: bool = True) -> None:
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


def out_dir(value: str) -> str:
    """argparse type of an output directory: refused at once if it cannot be created."""
    return _checked_output(value, directory=True)


def out_file(value: str) -> str:
    """argparse type of an output file: refused at once if it cannot be created."""
    return _checked_output(value, directory=False)


def _checked_output(value: str, directory: bool) -> str:
    from datagen.errors import UserError
    from datagen.io import check_output

    try:
        check_output(value, "", directory=directory)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e).strip()) from None
    return value


def _add_run_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", "-o", required=True, metavar="DIR", type=out_dir, help="run directory (records.jsonl, rejected.jsonl, stats.json, manifest.json)")
    p.add_argument("--force", action="store_true", help="replace a finished or different run in --out")


MODULE_COMMANDS = (
    ("self-instruct", "datagen.generators.self_instruct",
     "Self-Instruct: bootstrap new tasks from seed tasks (or the one-pass Alpaca variant)"),
    ("evolve", "datagen.generators.evol_instruct",
     "Evol-Instruct: evolve instructions in depth and breadth over several rounds, eliminating failed evolutions"),
    ("filter", "datagen.commands_filter",
     "curate: heuristic checks, exact and MinHash dedup, semantic dedup, quality scores; every drop recorded with its reason"),
    ("select", "datagen.commands_select",
     "LIMA-style selection: keep a budget of high-scoring, mutually dissimilar records (DEITA greedy or k-center)"),
    ("report", "datagen.report.command",
     "HTML quality report of run directories: funnel, scores, duplicates, embedding map, record browser"),
    ("ablate", "datagen.ablate",
     "prove the data: train on curated vs. random records of one pool (same steps, several seeds), compare gold loss and judged win rate"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="datagen",
        description="Build and curate supervised fine-tuning data. Every command writes a resumable run directory.",
    )
    parser.add_argument("--version", action="version", version=f"datagen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("convert", help="convert between alpaca, sharegpt, messages and record formats")
    _add_input(p)
    p.add_argument("--to", required=True, choices=("alpaca", "sharegpt", "messages", "record"), help="output format")
    p.add_argument("--out", "-o", required=True, metavar="FILE", type=out_file, help="output file: .jsonl, .json or .parquet")
    p.add_argument("--allow-no-answer", action="store_true", help="accept prompt-only rows (no assistant turn)")
    p.add_argument("--rejected", default=None, metavar="FILE", type=out_file,
                   help="with --on-error skip: where the skipped rows go (default: beside --out, its last suffix replaced by .rejected.jsonl)")
    p.set_defaults(func="datagen.commands:convert")

    p = sub.add_parser("distill", help="a teacher model answers the prompts (strong-model distillation)")
    _add_input(p)
    _add_run_out(p)
    add_llm_args(p)
    p.add_argument("--n", type=int, default=1, metavar="K",
                   help="candidate answers per prompt, each with its own seed; with K > 1 a judge rates them 1-5 and only the best is kept (default 1: no judging)")
    p.add_argument("--judge-prompt", default="distill/judge", help="prompt template the judge rates each candidate with (best-of-n)")
    p.add_argument("--system-prompt", default="distill/system", help="prompt template for the teacher's system message, or 'none'")
    p.add_argument("--chunk-size", type=int, default=64, help="records per resumable part")
    p.set_defaults(func="datagen.generators.distill:cli")

    # Commands whose module defines add_arguments(parser) and cli(args); the modules import
    # nothing heavy at load time, so building the parser stays fast.
    for name, module, help_text in MODULE_COMMANDS:
        p = sub.add_parser(name, help=help_text)
        importlib.import_module(module).add_arguments(p)
        p.set_defaults(func=f"{module}:cli")

    return parser


def _resolve(target: str) -> Callable[[argparse.Namespace], int | None]:
    mod, _, fn = target.partition(":")
    return getattr(importlib.import_module(mod), fn)


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv)


ResumeHint = Callable[[argparse.Namespace], str]


def _rerun(args: argparse.Namespace) -> str:
    return "finished work is saved; rerun the same command to resume"


def parse_and_run(parser: argparse.ArgumentParser, argv: Sequence[str] | None, resume_hint: ResumeHint = _rerun) -> int:
    """Shared entry of the ``datagen`` and ``train`` commands: offline defaults, parsing, and
    errors that speak to the user."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USER
    return run_command(args, resume_hint)


def say(message: str) -> None:
    """One line to stderr, whatever it holds (a lone surrogate from bad input is escaped)."""
    from datagen.errors import printable

    print(printable(message), file=sys.stderr)


def run_command(args: argparse.Namespace, resume_hint: ResumeHint = _rerun) -> int:
    from datagen.errors import BackendUnavailable, BudgetExceeded, UserError
    from datagen.llm.base import LLMError
    from datagen.core.rundir import AlreadyComplete

    try:
        rc = _resolve(args.func)(args)
        return int(rc or 0)
    except AlreadyComplete as e:
        say(f"already complete: {e} (pass --force to redo)")
        return 0
    except (BackendUnavailable, BudgetExceeded) as e:
        pending = f" {e.pending_text()}." if e.pending else ""
        when = "once the server answers" if isinstance(e, BackendUnavailable) else "with a larger budget"
        say(f"stopped: {e}.{pending} Finished work is saved; rerun the same command {when} to continue.")
        return EXIT_BUDGET
    except (UserError, LLMError) as e:
        say(f"error: {e}")
        return EXIT_USER
    except RecursionError:  # a pathological input no reader caught: refuse it, never a traceback
        say("error: the input is nested too deeply to process")
        return EXIT_USER
    except OSError as e:  # the file system refused: a full disk, a read-only or unreadable path
        where = f": {e.filename}" if e.filename else ""
        say(f"error: {e.strerror or e}{where}")
        return EXIT_USER
    except KeyboardInterrupt:
        say(f"\ninterrupted: {resume_hint(args)}.")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
