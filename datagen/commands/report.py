"""``datagen report``: write ``report.html`` into the last run directory, or print a summary."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from datagen.core.cli import out_file

HELP = "HTML quality report of run directories: funnel, scores, duplicates, embedding map, record browser"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="+", metavar="DIR",
                   help="run directories in pipeline order (e.g. evolve filter select); the report goes into the last one")
    p.add_argument("--train", default=None, metavar="RUN_DIR", help="a 'train run' output directory: loss curve, eval loss, metrics")
    p.add_argument("--eval", default=None, dest="eval_path", metavar="RESULTS_JSON", help="a 'train eval' results file: metrics and sample generations")
    p.add_argument("--ablation", default=None, metavar="PATH",
                   help="a 'datagen ablate' directory or its ablation.json: arms, gold loss per seed, verdict, defect accounting")
    p.add_argument("--text", action="store_true", help="print the funnel and the top reasons instead of writing HTML")
    p.add_argument("--out", "-o", default=None, metavar="FILE", type=out_file, help="where to write the HTML (default: DIR/report.html of the last DIR)")
    p.add_argument("--title", default=None, help="page title")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="embedding cache for the map (default: the one the runs used, else $DATAGEN_CACHE_DIR or ~/.cache/datagen); no model is ever loaded")
    p.add_argument("--no-map", action="store_true", help="skip the embedding map (reads no embedding cache)")
    p.add_argument("--limit", type=int, default=None, metavar="K",
                   help="read only the first K records and rejections of each run (a quick look at a large run; the funnel stays whole)")


def cli(args: argparse.Namespace) -> int:
    from datagen.report import data

    if args.text:
        from datagen.report.text import ablation_summary, summary

        text = summary(data.load_runs(args.dirs, args.limit))
        if args.ablation:
            from datagen.report.ablation_file import read_ablation

            text += "\n\n" + ablation_summary(read_ablation(args.ablation))
        print(text)
        return 0
    from datagen.report import html

    t0 = time.time()
    report = data.build(args.dirs, cache_dir=Path(args.cache_dir) if args.cache_dir else None, train=args.train,
                        eval_path=args.eval_path, embeddings=not args.no_map, ablation=args.ablation, limit=args.limit)
    out = Path(args.out) if args.out else Path(args.dirs[-1]) / "report.html"
    html.write(report, out, title=args.title)
    size = out.stat().st_size
    print(f"report: {len(report.index)} records from {len(report.runs)} run(s) -> {out} ({size / 1e6:.1f} MB, {time.time() - t0:.1f}s)", file=sys.stderr)
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0
