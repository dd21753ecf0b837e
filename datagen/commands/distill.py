"""``datagen distill``: a teacher answers the prompts, best-of-n with a judge (:mod:`datagen.generate.distill`)."""

from __future__ import annotations

import argparse
import sys

from datagen.commands.common import add_executor_args, add_input, add_llm_args, add_run_out, add_settings_source, generator_executor, settings_from
from datagen.core.record import Rejection
from datagen.core.settings import add_flags
from datagen.generate.distill import Distill, Settings, Teacher, load_system_prompt, load_template
from datagen.score.judge import JudgeSelector
from datagen.score.rating import RATING_PARAMS

HELP = "a teacher model answers the prompts (strong-model distillation)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_input(p)
    add_run_out(p)
    add_llm_args(p)
    g = p.add_argument_group("distillation (YAML --config < --set KEY=VALUE < these flags)")
    add_settings_source(g)
    add_flags(g, Settings)
    add_executor_args(p, "the teacher's (and judge's) requests, a task per chunk of prompts, sent from the cluster; the parts are written here")


def cli(args: argparse.Namespace) -> int:
    from datagen.llm.config import LLMConfig, Sampling
    from datagen.commands.common import input_settings, read_input
    from datagen.llm import make_llm
    from datagen.core.rundir import RunDir

    s, cfg, sampling = settings_from(args, Settings, LLMConfig, Sampling)
    params = sampling.params()
    system, template = load_system_prompt(s.system_prompt)
    judge_template = load_template(s.judge_prompt) if s.n > 1 else None

    read_rejects: list[Rejection] = []
    records = read_input(args, read_rejects.append, require_answer=False)
    settings = {
        **input_settings(args), "llm": {"backend": cfg.backend, "model": cfg.model, "base_url": cfg.base_url},
        "params": params.to_dict(), "system_prompt": template, "n": s.n, "chunk_size": s.chunk_size,
        "judge": {"template": {"name": judge_template.name, "sha": judge_template.sha}, "params": RATING_PARAMS.to_dict()} if judge_template else None,
    }
    executor = generator_executor(args, cfg)
    try:
        llm = make_llm(cfg)  # before the run directory: a server that does not serve --model is refused first
        run = RunDir(args.out, "distill", settings, force=args.force)
        selector = JudgeSelector(llm, judge_template) if judge_template else None
        distill = Distill(Teacher(llm, params, system, template), n=s.n, selector=selector, chunk_size=s.chunk_size)
        manifest = {"llm_config": cfg.to_manifest()}
        if executor is not None:
            manifest["executor"] = distill.answer_on(executor, cfg, run, records)
    finally:
        if executor is not None:
            executor.close()
    summary = distill.run(run, records, read_rejects, manifest=manifest)
    print(f"distill: {summary['records']} answers, {summary['rejected']} rejected -> {args.out}", file=sys.stderr)
    return 0
