"""``datagen convert``: between alpaca, sharegpt, messages and record formats, and to TRL's
prompt-completion rows; an alpaca or sharegpt export is declared in LLaMA-Factory's
``dataset_info.json`` beside it, and ``--card`` writes a dataset card."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from datagen.commands.common import add_input, read_input
from datagen.core.cli import out_file
from datagen.core.errors import UserError
from datagen.core.record import Rejection

HELP = "convert between alpaca, sharegpt, messages and record formats, or to TRL's prompt-completion; optional dataset card"
TO = ("alpaca", "sharegpt", "messages", "record", "prompt-completion", "prompt-completion-text")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_input(p)
    p.add_argument("--to", required=True, choices=TO, help=(
        "output format; prompt-completion: TRL's conversational {prompt: [messages], completion: [the last answer]}; "
        "prompt-completion-text: {prompt: str, completion: str}, single-turn records without a system message only"))
    p.add_argument("--out", "-o", required=True, metavar="FILE", type=out_file, help="output file: .jsonl, .json or .parquet")
    p.add_argument("--allow-no-answer", action="store_true", help="accept prompt-only rows (no assistant turn)")
    p.add_argument("--rejected", default=None, metavar="FILE", type=out_file,
                   help="with --on-error skip: where the skipped rows go (default: beside --out, its last suffix replaced by .rejected.jsonl)")
    g = p.add_argument_group("trainers and the Hub")
    g.add_argument("--merge-input", action="store_true", help=(
        "alpaca: write instruction and input joined by a blank line into 'instruction' (input empty), as the record and "
        "`train` have them; LLaMA-Factory joins the two fields with one newline"))
    g.add_argument("--no-dataset-info", action="store_true", help="alpaca, sharegpt: do not write LLaMA-Factory's dataset_info.json beside --out")
    g.add_argument("--card", nargs="?", const="", default=None, metavar="FILE", type=lambda v: v and out_file(v),
                   help="write a dataset card (README.md with the Hub's YAML front matter; default: README.md beside --out)")
    g.add_argument("--license", default=None, metavar="ID", help="the card's licence (a Hub licence id, e.g. apache-2.0); default: unknown")
    g.add_argument("--language", action="append", default=None, metavar="CODE",
                   help="the card's language (ISO 639-1, repeatable); default: from the writing system where it names one")


def cli(args: argparse.Namespace) -> int:
    from datagen.core.exports import DATASET_INFO, TRAINER_FORMATS, alpaca_merged, check_export, export_row, read_dataset_info, write_dataset_info
    from datagen.core.writing import atomic_open, check_output, output_kind, rejects_path, write_records, write_rows

    out = check_output(args.out, directory=False)
    rej_path = Path(args.rejected) if args.rejected else rejects_path(out)
    check_output(rej_path, "--rejected", directory=False)
    info = args.to in ("alpaca", "sharegpt") and not args.no_dataset_info
    card = None if args.card is None else Path(args.card) if args.card else out.parent / "README.md"
    if args.merge_input and args.to != "alpaca":
        raise UserError("--merge-input applies to --to alpaca only")
    if (args.license or args.language) and card is None:
        raise UserError("--license and --language describe the dataset card: pass --card too")
    written = [("--out", out), ("the rejects file", rej_path)] + ([(DATASET_INFO, out.parent / DATASET_INFO)] if info else [])
    if card is not None:
        check_output(card, "--card", directory=False)
        written.append(("--card", card))
    _refuse_clashes(args.input, written)
    if info:
        read_dataset_info(out.parent / DATASET_INFO)  # a damaged one is refused before any work
    if card is not None and card.exists():
        from datagen.core.card import ours

        if not ours(card):
            raise UserError(f"--card {card}: exists and was not written by datagen; choose another --card FILE (it is never overwritten)")
    rejected: list[Rejection] = []
    records = read_input(args, rejected.append, require_answer=not args.allow_no_answer, check=check_export(args.to))
    # Both files are complete before either appears: the rejects go to a temp file first, and are
    # renamed into place only once the output is written.
    msg = ""
    with contextlib.ExitStack() as stack:
        rej_file = stack.enter_context(atomic_open(rej_path)) if rejected else None
        if rej_file is not None:
            for rej in rejected:
                rej_file.write(rej.to_json() + "\n")
        if args.to in TRAINER_FORMATS:
            n = write_rows(out, (export_row(r, args.to) for r in records))
        elif args.merge_input:
            n = write_rows(out, (alpaca_merged(r) for r in records))
        else:
            n = write_records(out, records, args.to)
        msg = f"wrote {n} records to {out} ({args.to}, {output_kind(out)})"
        if rejected:
            msg += f"; {len(rejected)} bad rows skipped into {rej_path}"
    if info:
        path, name = write_dataset_info(out, args.to, records)
        msg += f"; LLaMA-Factory entry '{name}' in {path}"
    if card is not None:
        from datagen.core.card import export_card
        from datagen.core.stats import Stats

        export_card(card, out, records, Stats.of_read(len(records), (r.reason for r in rejected)).to_dict(), input=str(args.input),
                    argv=[os.path.basename(sys.argv[0])] + sys.argv[1:], license=args.license, languages=args.language)
        msg += f"; dataset card {card}"
    print(msg, file=sys.stderr)
    return 0



def _refuse_clashes(input_path: str, written: list[tuple[str, Path]]) -> None:
    """Before any work: no output may be the input, nor another output."""
    from datagen.core.writing import same_file

    for label, path in written:
        if same_file(input_path, path):
            raise UserError(f"{label} {path} is the input file; choose another path (inputs are never overwritten)")
        if Path(input_path).is_dir() and Path(input_path).resolve() in Path(path).resolve().parents:  # a save_to_disk folder
            raise UserError(f"{label} {path} is inside the input folder {input_path}; choose a path outside it (inputs are never overwritten)")
    for i, (label, path) in enumerate(written):
        for other, path2 in written[i + 1:]:
            if same_file(path, path2):
                raise UserError(f"{label} {path} and {other} {path2} are the same file; choose another path")
