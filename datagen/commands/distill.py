"""``datagen distill``: a teacher answers the prompts, best-of-n with a judge (:mod:`datagen.generate.distill`)."""

from __future__ import annotations

import argparse
import sys

from datagen.commands.common import add_input, add_llm_args, add_run_out
from datagen.core.record import Rejection
from datagen.generate.distill import Distill, Teacher, load_system_prompt, load_template
from datagen.score.judge import JudgeSelector
from datagen.score.rating import RATING_PARAMS

HELP = "a teacher model answers the prompts (strong-model distillation)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_input(p)
    add_run_out(p)
    add_llm_args(p)
    p.add_argument("--n", type=int, default=1, metavar="K",
                   help="candidate answers per prompt, each with its own seed; with K > 1 a judge rates them 1-5 and only the best is kept (default 1: no judging)")
    p.add_argument("--judge-prompt", default="distill/judge", help="prompt template the judge rates each candidate with (best-of-n)")
    p.add_argument("--system-prompt", default="distill/system", help="prompt template for the teacher's system message, or 'none'")
    p.add_argument("--chunk-size", type=int, default=64, help="records per resumable part")


def cli(args: argparse.Namespace) -> int:
    from datagen.commands.common import gen_params, input_settings, llm_config, read_input
    from datagen.core.errors import UserError
    from datagen.llm import make_llm
    from datagen.core.rundir import RunDir

    if args.n < 1 or args.chunk_size < 1:
        raise UserError("--n and --chunk-size must be >= 1")
    cfg = llm_config(args)
    params = gen_params(args)
    system, template = load_system_prompt(args.system_prompt)
    judge_template = load_template(args.judge_prompt) if args.n > 1 else None

    read_rejects: list[Rejection] = []
    records = read_input(args, read_rejects.append, require_answer=False)
    settings = {
        **input_settings(args), "llm": {"backend": cfg.backend, "model": cfg.model, "base_url": cfg.base_url},
        "params": params.to_dict(), "system_prompt": template, "n": args.n, "chunk_size": args.chunk_size,
        "judge": {"template": {"name": judge_template.name, "sha": judge_template.sha}, "params": RATING_PARAMS.to_dict()} if judge_template else None,
    }
    llm = make_llm(cfg)  # before the run directory: a server that does not serve --model is refused first
    run = RunDir(args.out, "distill", settings, force=args.force)
    selector = JudgeSelector(llm, judge_template) if judge_template else None
    distill = Distill(Teacher(llm, params, system, template), n=args.n, selector=selector, chunk_size=args.chunk_size)
    summary = distill.run(run, records, read_rejects, manifest={"llm_config": cfg.to_manifest()})
    print(f"distill: {summary['records']} answers, {summary['rejected']} rejected -> {args.out}", file=sys.stderr)
    return 0
