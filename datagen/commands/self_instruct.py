"""``datagen self-instruct``: bootstrap new tasks from seed tasks (:mod:`datagen.generate.self_instruct`)."""

from __future__ import annotations

import argparse
import sys

from datagen.commands.common import add_llm_args, add_settings_source, settings_from
from datagen.core.cli import out_dir
from datagen.core.settings import add_flags
from datagen.generate.self_instruct_settings import Settings

HELP = "Self-Instruct: bootstrap new tasks from seed tasks (or the one-pass Alpaca variant)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", default="seeds/175.jsonl", metavar="FILE", help="seed tasks in Self-Instruct format {id, name, instruction, instances: [{input, output}], is_classification} (default: the bundled seeds/175.jsonl)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", type=out_dir, help="run directory (records.jsonl, rejected.jsonl, stats.json, manifest.json)")
    p.add_argument("--force", action="store_true", help="replace a finished or different run in --out")
    p.add_argument("--limit", type=int, default=None, metavar="K", help="use only the first K seed tasks")
    g = p.add_argument_group("Self-Instruct (YAML --config < --set KEY=VALUE < these flags)")
    add_settings_source(g)
    add_flags(g, Settings, skip=("classify_max_tokens",))
    add_llm_args(p)


def cli(args: argparse.Namespace) -> int:
    from datagen.llm.config import LLMConfig, Sampling
    from datagen.core.assets import resolve_seed_file
    from datagen.core.errors import UserError
    from datagen.llm import make_llm
    from datagen.core.rundir import RunDir, file_digest
    from datagen.generate.self_instruct import SelfInstruct
    from datagen.generate.self_instruct_parsing import load_seed_tasks

    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be >= 1")
    settings, cfg, sampling = settings_from(args, Settings, LLMConfig, Sampling)
    params = sampling.params()
    seed_path = resolve_seed_file(args.seeds)
    seeds = load_seed_tasks(seed_path, args.limit)
    llm = make_llm(cfg)
    gen = SelfInstruct(llm, params, seeds, settings)
    run_settings = {
        "seeds": str(seed_path), "seeds_sha256": file_digest(seed_path), "limit": args.limit,
        "settings": settings.model_dump(), "params": params.to_dict(), "prompt_templates": gen.template_hashes,
        "llm": {"backend": cfg.backend, "model": cfg.model, "base_url": cfg.base_url},
    }
    run = RunDir(args.out, "self-instruct", run_settings, force=args.force)
    manifest = {
        "models": {"generator": llm.describe()},
        "llm_config": cfg.to_manifest(),
        "seeds": {"sampling": params.seed, "seed_file": str(seed_path), "seed_tasks": len(seeds)},
    }
    res = gen.run(run, manifest, progress=True)
    s = res.summary
    msg = f"self-instruct: {res.accepted} tasks -> {s['records']} records, {s['rejected']} rejected, {res.rounds} rounds -> {args.out}"
    if res.stop_reason == "stalled":
        msg += (
            f"\nstopped early: no task was accepted in the last {settings.patience} rounds, so the model is not producing "
            f"usable tasks ({res.accepted}/{settings.num}); see stats.json and rejected.jsonl for the reasons"
        )
    elif res.stop_reason == "max_rounds":
        msg += f"\nstopped early: reached the safety limit of {settings.rounds_limit()} rounds with {res.accepted}/{settings.num} tasks (raise --max-rounds to go on)"
    print(msg, file=sys.stderr)
    return 0
