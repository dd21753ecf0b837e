"""What the ``datagen`` and ``train`` command lines share: offline defaults, argument types that
refuse an output path at once, and errors that speak to the user (exit 2 for bad input, 3 for a
stop that a rerun resumes, 130 for an interrupt), never a traceback."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable, Sequence

EXIT_USER = 2
EXIT_BUDGET = 3
EXIT_INTERRUPTED = 130


def out_dir(value: str) -> str:
    """argparse type of an output directory: refused at once if it cannot be created."""
    return _checked_output(value, directory=True)


def out_file(value: str) -> str:
    """argparse type of an output file: refused at once if it cannot be created."""
    return _checked_output(value, directory=False)


def _checked_output(value: str, directory: bool) -> str:
    from datagen.core.errors import UserError
    from datagen.core.writing import check_output

    try:
        check_output(value, "", directory=directory)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e).strip()) from None
    return value


def _resolve(target: str) -> Callable[[argparse.Namespace], int | None]:
    mod, _, fn = target.partition(":")
    return getattr(importlib.import_module(mod), fn)


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
    from datagen.core.errors import printable

    print(printable(message), file=sys.stderr)


def run_command(args: argparse.Namespace, resume_hint: ResumeHint = _rerun) -> int:
    from datagen.core.errors import BackendUnavailable, BudgetExceeded, LLMError, UserError
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
