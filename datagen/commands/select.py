"""``datagen select``: a LIMA-style budget of high-scoring, mutually dissimilar records
(:mod:`datagen.curate.select.run`)."""

from __future__ import annotations

import argparse
import sys

from datagen.commands.common import add_executor_args, add_input, add_run_out, add_settings_source, settings_from
from datagen.core.settings import add_flags
from datagen.curate.select.run import Cluster, Settings
from datagen.core.source import InputSpec

HELP = "LIMA-style selection: keep a budget of high-scoring, mutually dissimilar records (DEITA greedy or k-center)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_input(p)
    add_run_out(p)
    g = p.add_argument_group("selection (YAML --config < --set KEY=VALUE < these flags)")
    add_settings_source(g)
    add_flags(g, Settings, flags={"mins": "--min", "maxs": "--max"})
    e = p.add_argument_group("embeddings")
    e.add_argument("--embed-model", default=None, metavar="NAME", help="sentence-transformers model (default: the embedded all-MiniLM-L6-v2, as datagen filter uses)")
    e.add_argument("--cache-dir", default=None, metavar="DIR", help="shared on-disk caches (embeddings); default $DATAGEN_CACHE_DIR or ~/.cache/datagen")
    e.add_argument("--no-embed", action="store_true", help="never load the embedding model: fail if an embedding is not cached")
    e.add_argument("--device", default=None, help="device for embedding missing records (cpu, cuda, ...)")
    e.add_argument("--batch-size", type=int, default=64, help="texts per embedding batch")
    add_executor_args(p, "the reading of the input and the embedding of records missing from the cache (the selection runs here)")
    add_flags(p.add_argument_group("embedding on Ray (--executor ray; YAML --config keys too)"), Cluster)


def cli(args: argparse.Namespace) -> int:
    from datagen.curate.select.run import run_select

    s, cluster = settings_from(args, Settings, Cluster)
    summary = run_select(InputSpec.from_args(args), args.out, **s.model_dump(), embed_model=args.embed_model, cache_dir=args.cache_dir,
                         no_embed=args.no_embed, device=args.device, batch_size=args.batch_size, force=args.force,
                         executor=args.executor, workers=args.workers, ray_address=args.ray_address, cluster=cluster)
    print(f"select: {summary['records']} of {summary['stages']['read']['out']} records kept ({s.strategy}, budget {s.budget}, "
          f"tau {s.tau:g}), {summary['rejected']} rejected -> {args.out}", file=sys.stderr)
    return 0
