"""``datagen filter``: the curation stages in order, every drop recorded with its reason
(:mod:`datagen.curate.pipeline`)."""

from __future__ import annotations

import argparse
import json
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
                   help="comma-separated subset of heuristics,pii,decontaminate,exact,minhash,semantic,quality (default: all but pii and decontaminate, which --pii and --decontaminate add), always run in that order")
    g.add_argument("--pii", choices=("flag", "drop", "redact"), default=None,
                   help="add the pii stage (e-mail, phone, IP, card, IBAN, API keys) with this action (overrides pii.action): "
                        "flag with masked evidence, drop (reason pii_<kind>), or redact with placeholders such as <EMAIL_ADDRESS>")
    g.add_argument("--languages", default=None, metavar="LIST",
                   help="keep only records whose instruction and response are in these languages (ISO 639-1 codes: en,zh); "
                        "the others are dropped as language_not_allowed (overrides heuristics.languages)")
    g.add_argument("--decontaminate", nargs="+", default=None, metavar="FILE",
                   help="benchmark files (JSONL, JSON, Parquet or text lines; the prompt field found or named by decontaminate.field): "
                        "adds the decontaminate stage, which drops records sharing n-grams with, or paraphrasing, their prompts")
    g.add_argument("--minhash-engine", choices=("auto", "datasketch", "rensa"), default=None,
                   help="MinHash signatures: datasketch, or rensa (faster; pip install 'datagen-train[fast]'; may decide pairs near the threshold differently). auto = datasketch (overrides minhash.engine)")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes for the heuristics, decontaminate, exact and MinHash stages (default: every core; with --executor ray, the cluster's CPUs); "
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
    from datagen.core.errors import UserError
    from datagen.curate.pipeline import funnel, run_filter
    from datagen.curate.registry import parse_stages

    llm = llm_config(args) if "quality" in parse_stages(args.stages) else None
    sets = args.sets
    workers = args.workers if args.workers is not None or args.executor == "ray" else (os.cpu_count() or 1)  # ray: the cluster's CPUs
    if args.languages is not None:  # a JSON list: YAML would read the code "no" as false
        if "heuristics" not in parse_stages(args.stages):
            raise UserError("--languages: the keep-list is a check of the heuristics stage, which --stages leaves out")
        sets = [*sets, f"heuristics.languages={json.dumps(args.languages.split(','))}"]
    doc = run_filter(InputSpec.from_args(args), args.out, stages=args.stages, config=args.config, sets=sets, cache_dir=args.cache_dir,
                     force=args.force, llm=llm, minhash_engine=args.minhash_engine, workers=workers, executor=args.executor,
                     ray_address=args.ray_address, decontaminate=args.decontaminate or (), pii=args.pii)
    print(f"filter: {doc['records']} kept, {doc['rejected']} rejected -> {args.out}\n{funnel(doc)}", file=sys.stderr)
    return 0
