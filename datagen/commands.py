"""Small commands and the argument plumbing the bigger ones share."""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from datagen.errors import UserError
from datagen.record import Record, Rejection


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


@dataclass(frozen=True)
class InputSpec:
    """The records a command reads: the file, its format (None: detected), ``--limit`` and
    ``--on-error``."""

    path: str
    format: str | None = None
    limit: int | None = None
    on_error: str = "raise"

    @classmethod
    def from_args(cls, args: argparse.Namespace, path: str | Path | None = None) -> InputSpec:
        return cls(str(args.input if path is None else path), getattr(args, "format", None), getattr(args, "limit", None),
                   getattr(args, "on_error", "raise"))

    def read(self, on_reject: Callable[[Rejection], None], require_answer: bool = True) -> list[Record]:
        from datagen.io import read_records

        if self.limit is not None and self.limit < 1:
            raise UserError("--limit must be >= 1")
        return list(read_records(self.path, self.format, on_error=self.on_error, on_reject=on_reject, limit=self.limit,
                                 require_answer=require_answer))

    def settings(self, key: str = "input") -> dict[str, Any]:
        """What of a run's settings the records it reads decide: the file and its sha256 (an
        edited input is a different run), the format, ``--limit`` and ``--on-error``."""
        from datagen.core.rundir import file_digest

        return {key: self.path, f"{key}_sha256": file_digest(self.path), "format": self.format, "limit": self.limit, "on_error": self.on_error}


def read_input(args: argparse.Namespace, on_reject: Callable[[Rejection], None], require_answer: bool = True) -> list[Record]:
    return InputSpec.from_args(args).read(on_reject, require_answer)


def input_settings(args: argparse.Namespace, path: str | Path | None = None, key: str = "input") -> dict[str, Any]:
    return InputSpec.from_args(args, path).settings(key)


def convert(args: argparse.Namespace) -> int:
    from datagen.io import atomic_open, check_output, output_kind, rejects_path, same_file, write_records

    out = check_output(args.out, directory=False)
    rej_path = Path(args.rejected) if args.rejected else rejects_path(out)
    check_output(rej_path, "--rejected", directory=False)
    for label, path in (("--out", out), ("the rejects file", rej_path)):
        if same_file(args.input, path):
            raise UserError(f"{label} {path} is the input file; choose another path (inputs are never overwritten)")
    if same_file(out, rej_path):
        raise UserError(f"--out {out} and --rejected {rej_path} are the same file; choose another --rejected")
    rejected: list[Rejection] = []
    records = read_input(args, rejected.append, require_answer=not args.allow_no_answer)
    # Both files are complete before either appears: the rejects go to a temp file first, and are
    # renamed into place only once the output is written.
    msg = ""
    with contextlib.ExitStack() as stack:
        rej_file = stack.enter_context(atomic_open(rej_path)) if rejected else None
        if rej_file is not None:
            for rej in rejected:
                rej_file.write(rej.to_json() + "\n")
        n = write_records(out, records, args.to)
        msg = f"wrote {n} records to {out} ({args.to}, {output_kind(out)})"
        if rejected:
            msg += f"; {len(rejected)} bad rows skipped into {rej_path}"
    print(msg, file=sys.stderr)
    return 0
