"""``datagen select``: a LIMA-style budget of high-scoring, mutually dissimilar records
(:mod:`datagen.curate.select.run`)."""

from __future__ import annotations

import argparse
import sys

from datagen.commands.common import add_input, add_run_out
from datagen.core.source import InputSpec

HELP = "LIMA-style selection: keep a budget of high-scoring, mutually dissimilar records (DEITA greedy or k-center)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_input(p)
    add_run_out(p)
    g = p.add_argument_group("selection")
    g.add_argument("--budget", type=int, required=True, metavar="N", help="keep at most N records")
    g.add_argument("--strategy", choices=("deita", "kcenter"), default="deita",
                   help="deita (default): score-first greedy, skipping a record whose cosine to any selected one exceeds --tau; "
                        "kcenter: farthest-point greedy on cosine distance, seeded with the best-scoring record")
    g.add_argument("--tau", type=float, default=0.9,
                   help="most cosine similarity (all-MiniLM-L6-v2 embeddings of instruction + response) allowed between two selected records (default 0.9; 1 turns the rule off)")
    g.add_argument("--min", action="append", default=[], metavar="SCORE=X", help="reject records with SCORE < X (repeatable or comma-separated: --min judge=3.5,complexity=2)")
    g.add_argument("--max", action="append", default=[], metavar="SCORE=X", help="reject records with SCORE > X (e.g. --max ifd=1.0)")
    g.add_argument("--score", default="judge=1,complexity=1", metavar="SCORE=W,...",
                   help="scores that rank the records, with weights (default judge=1,complexity=1); a bare name weighs 1")
    g.add_argument("--combine", choices=("product", "sum"), default="product",
                   help="product (default, DEITA): prod score^weight over raw, positive scores; sum: sum weight * normalised score")
    g.add_argument("--norm", choices=("zscore", "minmax", "none"), default="zscore",
                   help="with --combine sum: normalise each score over the screened records by z-score (default), min-max to [0,1], or not at all")
    e = p.add_argument_group("embeddings")
    e.add_argument("--embed-model", default=None, metavar="NAME", help="sentence-transformers model (default: the embedded all-MiniLM-L6-v2, as datagen filter uses)")
    e.add_argument("--cache-dir", default=None, metavar="DIR", help="shared on-disk caches (embeddings); default $DATAGEN_CACHE_DIR or ~/.cache/datagen")
    e.add_argument("--no-embed", action="store_true", help="never load the embedding model: fail if an embedding is not cached")
    e.add_argument("--device", default=None, help="device for embedding missing records (cpu, cuda, ...)")
    e.add_argument("--batch-size", type=int, default=64, help="texts per embedding batch")


def cli(args: argparse.Namespace) -> int:
    from datagen.curate.select.run import run_select

    summary = run_select(InputSpec.from_args(args), args.out, budget=args.budget, score=args.score, tau=args.tau, strategy=args.strategy,
                         mins=args.min, maxs=args.max, combine=args.combine, norm=args.norm, embed_model=args.embed_model,
                         cache_dir=args.cache_dir, no_embed=args.no_embed, device=args.device, batch_size=args.batch_size, force=args.force)
    print(f"select: {summary['records']} of {summary['stages']['read']['out']} records kept ({args.strategy}, budget {args.budget}, "
          f"tau {args.tau:g}), {summary['rejected']} rejected -> {args.out}", file=sys.stderr)
    return 0
