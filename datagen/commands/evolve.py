"""``datagen evolve``: Evol-Instruct over several rounds (:mod:`datagen.generate.evol_instruct`)."""

from __future__ import annotations

import argparse
import sys

from datagen.commands.common import add_executor_args, add_llm_args, add_row_mapping, add_settings_source, generator_executor, settings_from
from datagen.core.cli import out_dir
from datagen.core.settings import add_flags
from datagen.generate.evol_instruct import EQUALITY_TEMPLATE, EvolInstruct, Settings

HELP = "Evol-Instruct: evolve instructions in depth and breadth over several rounds, eliminating failed evolutions"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", default="seeds/175.jsonl", metavar="FILE",
                   help="instructions to evolve: a Self-Instruct seed-task file (instruction + input) or any records file (alpaca, sharegpt, messages, record: its last user turn); default: the bundled seeds/175.jsonl")
    add_row_mapping(p)
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise", help="bad rows in --seeds: stop with an error, or skip them into rejected.jsonl")
    p.add_argument("--limit", type=int, default=None, metavar="K", help="evolve only the first K instructions")
    p.add_argument("--out", "-o", required=True, metavar="DIR", type=out_dir, help="run directory (records.jsonl, rejected.jsonl, stats.json, manifest.json)")
    p.add_argument("--force", action="store_true", help="replace a finished or different run in --out")
    g = p.add_argument_group("Evol-Instruct (YAML --config < --set KEY=VALUE < these flags)")
    add_settings_source(g)
    add_flags(g, Settings)
    add_llm_args(p)
    add_executor_args(p, "each round's chunks: a task per chunk sends its requests from the cluster; the parts are written here")


def cli(args: argparse.Namespace) -> int:
    from datagen.llm.config import LLMConfig, Sampling
    from datagen.core import prompts
    from datagen.core.assets import resolve_seed_file
    from datagen.commands.common import input_settings
    from datagen.core.errors import UserError
    from datagen.core.source import InputSpec
    from datagen.llm import make_llm
    from datagen.core.record import Rejection
    from datagen.core.rundir import RunDir
    from datagen.generate.distill import Teacher, load_system_prompt

    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be >= 1")
    s, cfg, sampling = settings_from(args, Settings, LLMConfig, Sampling)
    ops = tuple(s.operations)
    params = sampling.params()
    system, template = load_system_prompt(s.system_prompt) if s.answer else (None, None)

    seeds_path = resolve_seed_file(args.seeds)
    read_rejects: list[Rejection] = []
    pool = InputSpec.from_args(args, seeds_path).read(read_rejects.append, require_answer=False)
    settings = {
        **input_settings(args, seeds_path, key="seeds"), "rounds": s.rounds, "operations": list(ops), "answer": s.answer,
        "chunk_size": s.chunk_size, "llm": {"backend": cfg.backend, "model": cfg.model, "base_url": cfg.base_url},
        "params": params.to_dict(), "system_prompt": template,
        "prompt_templates": {f"evol/{op}": prompts.load(f"evol/{op}").sha for op in ops} | {EQUALITY_TEMPLATE: prompts.load(EQUALITY_TEMPLATE).sha},
    }
    executor = generator_executor(args, cfg)
    try:
        llm = make_llm(cfg)  # before the run directory: a server that does not serve --model is refused first
        run = RunDir(args.out, "evolve", settings, force=args.force)
        teacher = Teacher(llm, params, system, template) if s.answer else None
        evol = EvolInstruct(llm, params, teacher=teacher, operations=ops, rounds=s.rounds, chunk_size=s.chunk_size)
        manifest = {"llm_config": cfg.to_manifest()}
        if executor is not None:
            manifest["executor"] = evol.answer_on(executor, cfg, run)  # filled in round by round
        summary = evol.run(run, pool, read_rejects, manifest=manifest)
    finally:
        if executor is not None:
            executor.close()
    overall = summary["extra"]["pass_rate"]["overall"]
    by_op = ", ".join(f"{op} {v['passed']}/{v['tried']}" for op, v in summary["extra"]["pass_rate"]["by_operation"].items())
    print(
        f"evolve: {summary['records']} evolved instructions kept, {summary['rejected']} rejected; "
        f"pass rate {overall['passed']}/{overall['tried']} ({by_op}) -> {args.out}",
        file=sys.stderr,
    )
    return 0
