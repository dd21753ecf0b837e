"""The arguments that several commands share (input, run directory, model backend, sampling),
and what they become: an :class:`~datagen.llm.LLMConfig`, :class:`~datagen.llm.GenParams`, an
:class:`~datagen.core.source.InputSpec`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from datagen.core.cli import out_dir
from datagen.core.record import Record, Rejection
from datagen.core.shapes import INPUT_FORMATS
from datagen.core.source import InputSpec

if TYPE_CHECKING:
    from pydantic import BaseModel


def add_input(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("input")
    g.add_argument("--input", "-i", required=required, metavar="FILE",
                   help="JSONL, JSON array, Parquet or Arrow file, a folder saved by datasets' save_to_disk, "
                        "or hf:ORG/NAME from the local Hugging Face cache (offline)")
    add_row_mapping(g)
    g.add_argument(
        "--on-error", choices=("raise", "skip"), default="raise",
        help="bad input rows: stop with an error naming file, line and field (default), or skip them into rejected.jsonl",
    )
    g.add_argument("--limit", type=int, default=None, metavar="K", help="process only the first K records (try a pipeline in seconds)")


def add_row_mapping(g: Any) -> None:
    """``--format``, ``--split``, ``--map`` and ``--roles``: how the rows of an input are read."""
    g.add_argument("--format", choices=INPUT_FORMATS, default=None, help="input format (default: detected from the first row)")
    g.add_argument("--split", default=None, metavar="NAME", help="the split to read from a DatasetDict folder or a cached dataset with several")
    g.add_argument("--map", default=None, metavar="SRC=DST,...",
                   help="rename columns before the format is detected: --map response=output,context=input")
    g.add_argument("--roles", default=None, metavar="SRC=DST,...",
                   help="rename turn roles (from/role) before reading: --roles bot=assistant,customer=user")


def add_executor_args(p: argparse.ArgumentParser, what: str) -> None:
    """``--executor``, ``--ray-address`` and ``--workers``: where ``what`` runs
    (:func:`datagen.core.shards.make_executor`); the output is the same on either."""
    g = p.add_argument_group("executor")
    g.add_argument("--executor", choices=("local", "ray"), default="local",
                   help=f"{what}: in local processes, or as Ray tasks on a cluster (pip install 'datagen-train[ray]'); the same output. "
                        "On a cluster of several machines, --input and --out must be on a file system every node mounts at the same path")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="the Ray cluster for --executor ray: auto (the one this machine is part of), HOST:PORT or ray://HOST:10001; default: a local one")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local processes (default 1), or with --executor ray how many tasks the work is cut into at least (default: the cluster's CPUs)")


def generator_executor(args: argparse.Namespace, cfg: Any) -> Any:
    """A generator's Ray executor under ``--executor ray`` (after checking that its backend
    settings can run there), else None: the generator runs in this process."""
    if args.executor != "ray":
        return None
    from datagen.core.shards import make_executor
    from datagen.generate.remote import check_config

    check_config(cfg)
    return make_executor("ray", args.workers, args.ray_address)


def add_llm_args(p: argparse.ArgumentParser, sampling: bool = True) -> None:
    """The model backend's flags and (``sampling``) the sampling flags, from
    :class:`~datagen.llm.LLMConfig` and :class:`~datagen.llm.Sampling`."""
    from datagen.core.settings import add_flags
    from datagen.llm.config import LLMConfig, Sampling

    add_flags(p.add_argument_group("model backend"), LLMConfig)
    if sampling:
        add_flags(p.add_argument_group("sampling"), Sampling)


def add_run_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", "-o", required=True, metavar="DIR", type=out_dir, help="run directory (records.jsonl, rejected.jsonl, stats.json, manifest.json)")
    p.add_argument("--force", action="store_true", help="replace a finished or different run in --out")


def llm_config(args: argparse.Namespace):
    """The :class:`~datagen.llm.LLMConfig` of the flags given (a command without ``--config``
    for its backend: ``filter``, whose ``--config`` holds its stages)."""
    from datagen.core.settings import build, given
    from datagen.llm.config import LLMConfig

    return build(LLMConfig, flags=given(args, LLMConfig))


def read_input(args: argparse.Namespace, on_reject: Callable[[Rejection], None], require_answer: bool = True,
               check: Callable[[Record], None] | None = None) -> list[Record]:
    return InputSpec.from_args(args).read(on_reject, require_answer, check)


def input_settings(args: argparse.Namespace, path: str | Path | None = None, key: str = "input") -> dict[str, Any]:
    return InputSpec.from_args(args, path).settings(key)


def add_settings_source(group: Any) -> None:
    """``--config FILE`` and ``--set KEY=VALUE``: the layers below the flags (:mod:`datagen.core.settings`)."""
    group.add_argument("--config", default=None, metavar="YAML", help="settings from a YAML file (keys: the flags' names, with underscores)")
    group.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE",
                       help="one setting, its value parsed as YAML (repeatable; above --config, below the flags)")


def settings_from(args: argparse.Namespace, *models: type[BaseModel]) -> Any:
    """Each of ``models`` from its defaults, ``--config``, ``--set`` and the flags given, in that
    order; one model is returned as itself, several as a list (a key of the file or of ``--set``
    goes to the model that has it)."""
    from datagen.core.settings import build_all, given

    built = build_all(models, file=getattr(args, "config", None), sets=getattr(args, "sets", None) or (),
                      flags=[given(args, m) for m in models])
    return built[0] if len(built) == 1 else built
