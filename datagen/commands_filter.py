"""``datagen filter``: the command line of the curation pipeline (:mod:`datagen.filters.pipeline`).

This module imports nothing heavy at the top: ``datagen.cli`` imports it for ``add_arguments``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from datagen.commands import InputSpec
    from datagen.llm import LLMConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    from datagen.cli import _add_input, _add_run_out, add_llm_args

    _add_input(p)
    _add_run_out(p)
    g = p.add_argument_group("filtering")
    g.add_argument("--config", default=None, metavar="YAML", help="stage settings, one section per stage (see examples/filter.yaml); defaults when absent")
    g.add_argument("--stages", default=None, metavar="LIST",
                   help="comma-separated subset of heuristics,exact,minhash,semantic,quality (default: all), always run in that order")
    g.add_argument("--minhash-engine", choices=("auto", "datasketch", "rensa"), default=None,
                   help="MinHash signatures: datasketch, or rensa (faster; pip install 'datagen-train[fast]'; may decide pairs near the threshold differently). auto = datasketch (overrides minhash.engine)")
    g.add_argument("--cache-dir", default=None, metavar="DIR", help="shared on-disk caches (embeddings, scores); default $DATAGEN_CACHE_DIR or ~/.cache/datagen")
    add_llm_args(p)


def cli(args: argparse.Namespace) -> int:
    from datagen.commands import InputSpec, llm_config
    from datagen.filters.pipeline import funnel
    from datagen.filters.registry import parse_stages

    llm = llm_config(args) if "quality" in parse_stages(args.stages) else None
    doc = run_filter(InputSpec.from_args(args), args.out, stages=args.stages, config=args.config, cache_dir=args.cache_dir,
                     force=args.force, llm=llm, minhash_engine=args.minhash_engine)
    print(f"filter: {doc['records']} kept, {doc['rejected']} rejected -> {args.out}\n{funnel(doc)}", file=sys.stderr)
    return 0


def run_filter(source: InputSpec, out: str | Path, *, stages: str | None = None, config: str | None = None,
               cache_dir: str | Path | None = None, force: bool = False, llm: LLMConfig | None = None,
               minhash_engine: str | None = None) -> dict[str, Any]:
    """``datagen filter`` as a function: the records of ``source`` through ``stages`` (a
    comma-separated list, default all) configured by the YAML file ``config``, into the run
    directory ``out``; ``llm`` is the quality stage's judge (default: the embedded model). Returns
    the final stats; raises :class:`~datagen.core.rundir.AlreadyComplete` when ``out`` already holds
    this run."""
    from datagen.commands_select import default_cache_dir
    from datagen.filters.config import load_config
    from datagen.filters.pipeline import FilterPipeline
    from datagen.filters.registry import build_stages, parse_stages
    from datagen.llm import LLMConfig, make_llm
    from datagen.record import Rejection
    from datagen.core.rundir import RunDir

    names = parse_stages(stages)
    cfg = load_config(config)
    if minhash_engine:
        cfg.minhash.engine = minhash_engine
    built_stages = build_stages(names, cfg, source=config or "config")
    read_rejects: list[Rejection] = []
    records = source.read(read_rejects.append)
    settings: dict[str, Any] = {
        **source.settings(), "stages": names,
        "config": cfg.model_dump(mode="json"), "describe": [s.describe() for s in built_stages],
    }
    llm_factory: Callable[[], Any] | None = None
    if "quality" in names:
        llm_cfg = llm or LLMConfig()
        settings["llm"] = {"backend": llm_cfg.backend, "model": llm_cfg.model, "base_url": llm_cfg.base_url}
        # a server is asked now which models it serves, before the run directory is made; the
        # embedded model is loaded only if the quality stage runs
        built = make_llm(llm_cfg) if llm_cfg.backend == "openai" else None

        def judge() -> Any:
            return built if built is not None else make_llm(llm_cfg)

        llm_factory = judge

    run = RunDir(out, "filter", settings, force=force)
    pipeline = FilterPipeline(built_stages, Path(cache_dir) if cache_dir else default_cache_dir(), llm_factory=llm_factory)
    return pipeline.run(run, records, read_rejects, manifest={"config": settings["config"], "config_file": config})
