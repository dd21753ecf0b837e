"""``datagen filter``: the curation stages in order, every drop recorded with its reason
(:mod:`datagen.curate.pipeline`)."""

from __future__ import annotations

import argparse
import os
import sys

from datagen.commands.common import add_input, add_llm_args, add_run_out
from datagen.core.source import InputSpec

HELP = "curate: heuristic checks, exact and MinHash dedup, semantic dedup, quality scores; every drop recorded with its reason"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_input(p)
    add_run_out(p)
    g = p.add_argument_group("filtering")
    g.add_argument("--config", default=None, metavar="YAML", help="stage settings, one section per stage (see examples/filter.yaml); defaults when absent")
    g.add_argument("--set", action="append", default=[], dest="sets", metavar="STAGE.KEY=VALUE",
                   help="one stage setting, its value parsed as YAML (repeatable; above --config): --set minhash.threshold=0.8")
    g.add_argument("--stages", default=None, metavar="LIST",
                   help="comma-separated subset of heuristics,exact,minhash,semantic,quality (default: all), always run in that order")
    g.add_argument("--minhash-engine", choices=("auto", "datasketch", "rensa"), default=None,
                   help="MinHash signatures: datasketch, or rensa (faster; pip install 'datagen-train[fast]'; may decide pairs near the threshold differently). auto = datasketch (overrides minhash.engine)")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes for the heuristics, exact and MinHash stages (default: every core; with --executor ray, the cluster's CPUs); "
                        "the output is the same for any N")
    g.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where those stages run: local processes, or Ray tasks on a cluster (pip install 'datagen-train[ray]'), the semantic and "
                        "quality stages' models then on Ray actors (semantic.num_gpus, quality.num_gpus...); the same output. "
                        "On a cluster of several machines, --input and --out must be on a file system every node mounts at the same path (NFS, EFS, ...)")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="the Ray cluster for --executor ray: auto (the one this machine is part of), HOST:PORT or ray://HOST:10001; default: a local one")
    g.add_argument("--cache-dir", default=None, metavar="DIR", help="shared on-disk caches (embeddings, scores); default $DATAGEN_CACHE_DIR or ~/.cache/datagen")
    add_llm_args(p, sampling=False)  # the quality stage's judge and IFD sample as their scorers say, not by flags


def cli(args: argparse.Namespace) -> int:
    from datagen.commands.common import llm_config
    from datagen.curate.pipeline import funnel, run_filter
    from datagen.curate.registry import parse_stages

    llm = llm_config(args) if "quality" in parse_stages(args.stages) else None
    workers = args.workers if args.workers is not None or args.executor == "ray" else (os.cpu_count() or 1)  # ray: the cluster's CPUs
    doc = run_filter(InputSpec.from_args(args), args.out, stages=args.stages, config=args.config, sets=args.sets, cache_dir=args.cache_dir,
                     force=args.force, llm=llm, minhash_engine=args.minhash_engine, workers=workers, executor=args.executor,
                     ray_address=args.ray_address)
    print(f"filter: {doc['records']} kept, {doc['rejected']} rejected -> {args.out}\n{funnel(doc)}", file=sys.stderr)
    return 0
