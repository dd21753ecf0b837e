"""``datagen convert``: between alpaca, sharegpt, messages and record formats."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from datagen.commands.common import add_input, read_input
from datagen.core.cli import out_file
from datagen.core.errors import UserError
from datagen.core.record import Rejection

HELP = "convert between alpaca, sharegpt, messages and record formats"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_input(p)
    p.add_argument("--to", required=True, choices=("alpaca", "sharegpt", "messages", "record"), help="output format")
    p.add_argument("--out", "-o", required=True, metavar="FILE", type=out_file, help="output file: .jsonl, .json or .parquet")
    p.add_argument("--allow-no-answer", action="store_true", help="accept prompt-only rows (no assistant turn)")
    p.add_argument("--rejected", default=None, metavar="FILE", type=out_file,
                   help="with --on-error skip: where the skipped rows go (default: beside --out, its last suffix replaced by .rejected.jsonl)")


def cli(args: argparse.Namespace) -> int:
    from datagen.core.writing import atomic_open, check_output, output_kind, rejects_path, same_file, write_records

    out = check_output(args.out, directory=False)
    rej_path = Path(args.rejected) if args.rejected else rejects_path(out)
    check_output(rej_path, "--rejected", directory=False)
    for label, path in (("--out", out), ("the rejects file", rej_path)):
        if same_file(args.input, path):
            raise UserError(f"{label} {path} is the input file; choose another path (inputs are never overwritten)")
        if Path(args.input).is_dir() and Path(args.input).resolve() in Path(path).resolve().parents:  # a save_to_disk folder
            raise UserError(f"{label} {path} is inside the input folder {args.input}; choose a path outside it (inputs are never overwritten)")
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
