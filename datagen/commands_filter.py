"""``datagen filter``: the command line of the curation pipeline (:mod:`datagen.filters.pipeline`).

This module imports nothing heavy at the top: ``datagen.cli`` imports it for ``add_arguments``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .cli import _add_input, _add_run_out, add_llm_args

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
    from .commands import read_input
    from .commands_select import default_cache_dir
    from .filters.config import load_config
    from .filters.pipeline import FilterPipeline, funnel
    from .filters.registry import build_stages, parse_stages
    from .record import Rejection
    from .rundir import RunDir, file_digest

    names = parse_stages(args.stages)
    cfg = load_config(args.config)
    if args.minhash_engine:
        cfg.minhash.engine = args.minhash_engine
    stages = build_stages(names, cfg, source=args.config or "config")
    read_rejects: list[Rejection] = []
    records = read_input(args, read_rejects.append)
    settings: dict[str, Any] = {
        "input": str(args.input), "input_sha256": file_digest(args.input), "format": args.format,
        "limit": args.limit, "on_error": args.on_error, "stages": names,
        "config": cfg.model_dump(mode="json"), "describe": [s.describe() for s in stages],
    }
    llm_factory = None
    if "quality" in names:
        from .commands import llm_config

        llm_cfg = llm_config(args)
        settings["llm"] = {"backend": llm_cfg.backend, "model": llm_cfg.model, "base_url": llm_cfg.base_url}

        from .llm import make_llm

        # a server is asked now which models it serves, before the run directory is made; the
        # embedded model is loaded only if the quality stage runs
        built = make_llm(llm_cfg) if llm_cfg.backend == "openai" else None

        def llm_factory() -> Any:
            return built if built is not None else make_llm(llm_cfg)

    run = RunDir(args.out, "filter", settings, force=args.force)
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    pipeline = FilterPipeline(stages, cache_dir, llm_factory=llm_factory)
    doc = pipeline.run(run, records, read_rejects, manifest={"config": settings["config"], "config_file": args.config})
    print(f"filter: {doc['records']} kept, {doc['rejected']} rejected -> {args.out}\n{funnel(doc)}", file=sys.stderr)
    return 0
