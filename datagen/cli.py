"""The ``datagen`` command line: one subcommand per module of :mod:`datagen.commands`; what to do
with errors is :mod:`datagen.core.cli`'s, shared with ``train``."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from datagen import __version__
from datagen.commands import COMMANDS
from datagen.core.cli import parse_and_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="datagen",
        description="Build and curate supervised fine-tuning data. Every command writes a resumable run directory.",
    )
    parser.add_argument("--version", action="version", version=f"datagen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS:
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(func=f"{module}:cli")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
