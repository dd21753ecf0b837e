"""``datagen evolve``: Evol-Instruct over several rounds (:mod:`datagen.generate.evol_instruct`)."""

from __future__ import annotations

import argparse
import sys

from datagen.commands.common import add_llm_args
from datagen.core.cli import out_dir
from datagen.generate.evol_instruct import EQUALITY_TEMPLATE, OPERATIONS, EvolInstruct

HELP = "Evol-Instruct: evolve instructions in depth and breadth over several rounds, eliminating failed evolutions"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", default="seeds/175.jsonl", metavar="FILE",
                   help="instructions to evolve: a Self-Instruct seed-task file (instruction + input) or any records file (alpaca, sharegpt, messages, record: its last user turn); default: the bundled seeds/175.jsonl")
    p.add_argument("--format", choices=("alpaca", "sharegpt", "messages", "seed", "record"), default=None, help="format of --seeds (default: detected)")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise", help="bad rows in --seeds: stop with an error, or skip them into rejected.jsonl")
    p.add_argument("--limit", type=int, default=None, metavar="K", help="evolve only the first K instructions")
    p.add_argument("--out", "-o", required=True, metavar="DIR", type=out_dir, help="run directory (records.jsonl, rejected.jsonl, stats.json, manifest.json)")
    p.add_argument("--force", action="store_true", help="replace a finished or different run in --out")
    p.add_argument("--rounds", type=int, default=4, help="evolution rounds; each evolves the survivors of the round before (default 4)")
    p.add_argument("--operations", default=",".join(OPERATIONS), metavar="OPS",
                   help=f"comma-separated operations to draw from (default: all): {', '.join(OPERATIONS)}")
    p.add_argument("--answer", action=argparse.BooleanOptionalAction, default=True,
                   help="answer each evolution with the teacher (needed for the refusal and stop-word rules; default: on)")
    p.add_argument("--system-prompt", default="distill/system", help="prompt template for the teacher's system message, or 'none'")
    p.add_argument("--chunk-size", type=int, default=32, help="instructions per resumable part")
    add_llm_args(p)


def _operations(spec: str) -> tuple[str, ...]:
    from datagen.core.errors import UserError

    ops = tuple(dict.fromkeys(o.strip() for o in spec.split(",") if o.strip()))
    unknown = [o for o in ops if o not in OPERATIONS]
    if unknown or not ops:
        raise UserError(f"--operations: unknown operation(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(OPERATIONS)}")
    return ops


def cli(args: argparse.Namespace) -> int:
    from datagen.core import prompts
    from datagen.core.assets import resolve_seed_file
    from datagen.commands.common import gen_params, input_settings, llm_config
    from datagen.core.errors import UserError
    from datagen.core.io import read_records
    from datagen.llm import make_llm
    from datagen.core.record import Rejection
    from datagen.core.rundir import RunDir
    from datagen.generate.distill import Teacher, load_system_prompt

    if args.rounds < 1 or args.chunk_size < 1:
        raise UserError("--rounds and --chunk-size must be >= 1")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be >= 1")
    ops = _operations(args.operations)
    cfg = llm_config(args)
    params = gen_params(args)
    system, template = load_system_prompt(args.system_prompt) if args.answer else (None, None)

    seeds_path = resolve_seed_file(args.seeds)
    read_rejects: list[Rejection] = []
    pool = list(read_records(seeds_path, args.format, on_error=args.on_error, on_reject=read_rejects.append, limit=args.limit, require_answer=False))
    settings = {
        **input_settings(args, seeds_path, key="seeds"), "rounds": args.rounds, "operations": list(ops), "answer": args.answer,
        "chunk_size": args.chunk_size, "llm": {"backend": cfg.backend, "model": cfg.model, "base_url": cfg.base_url},
        "params": params.to_dict(), "system_prompt": template,
        "prompt_templates": {f"evol/{op}": prompts.load(f"evol/{op}").sha for op in ops} | {EQUALITY_TEMPLATE: prompts.load(EQUALITY_TEMPLATE).sha},
    }
    llm = make_llm(cfg)  # before the run directory: a server that does not serve --model is refused first
    run = RunDir(args.out, "evolve", settings, force=args.force)
    teacher = Teacher(llm, params, system, template) if args.answer else None
    evol = EvolInstruct(llm, params, teacher=teacher, operations=ops, rounds=args.rounds, chunk_size=args.chunk_size)
    summary = evol.run(run, pool, read_rejects, manifest={"llm_config": cfg.to_manifest()})
    overall = summary["extra"]["pass_rate"]["overall"]
    by_op = ", ".join(f"{op} {v['passed']}/{v['tried']}" for op, v in summary["extra"]["pass_rate"]["by_operation"].items())
    print(
        f"evolve: {summary['records']} evolved instructions kept, {summary['rejected']} rejected; "
        f"pass rate {overall['passed']}/{overall['tried']} ({by_op}) -> {args.out}",
        file=sys.stderr,
    )
    return 0
