"""``datagen ablate``: build, train, evaluate and judge every arm over every seed; write
``ablation.json`` and the report."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from datagen.report.ablation import BASELINE
from datagen.ablate.arms import build_arms, read_pool
from datagen.ablate.runs import judge_llm, answer_limit, eval_arm, eval_base, judge_arm, train_arm, train_config
from datagen.ablate.settings import AblationSettings
from datagen.ablate.summary import behaviour_row, composition, curation_summary, paired_defects, paired_loss, summarize


# -- the command ------------------------------------------------------------------------------------------
def ablate(s: AblationSettings) -> dict[str, Any]:
    """Build, train, evaluate and judge every arm over every seed; write ablation.json and the report."""
    from datagen.core.errors import UserError
    from datagen.core.io import read_records
    from datagen.core.writing import write_json
    from datagen.core.rundir import package_versions

    from datagen.core.hfdata import input_digest, input_files

    for label, path in (("--pool", s.pool), ("--gold", s.gold)):
        if not all(f.is_file() for f in input_files(path)):  # a file, a save_to_disk folder, hf:ORG/NAME
            raise UserError(f"{label} {path}: no such file")
    if s.budget < 1 or s.seeds < 1:
        raise UserError("--budget and --seeds must be >= 1")
    started = time.time()
    seeds = list(range(s.seeds))
    arms = build_arms(s, seeds)
    gold_sha = input_digest(s.gold)
    if s.max_new_tokens is None and s.answer_prompts > 0:
        s.max_new_tokens = answer_limit(s)
        print(f"ablate: answers may run to {s.max_new_tokens} new tokens (twice the longest gold answer)", file=sys.stderr)
    base = eval_base(s, gold_sha)
    per_run: dict[str, list[dict[str, Any]]] = {}
    evals: dict[tuple[str, int], dict[str, Any]] = {}
    for name, group in arms.items():
        for arm in group:
            run_dir = s.out / "runs" / f"{name}-s{arm.seed}"
            trained = train_arm(s, arm, run_dir)
            evals[name, arm.seed] = ev = eval_arm(s, run_dir, gold_sha)
            row = {k: trained[k] for k in ("seed", "records", "steps", "epochs", "train_loss")}
            even = 0.5 if name == BASELINE and s.judge_prompts else None  # the baseline against itself
            row.update(loss=ev["loss"], perplexity=ev["perplexity"], win_rate=even, debiased_win_rate=even,
                       **behaviour_row(ev.get("behaviour")))
            per_run.setdefault(name, []).append(row)
    if s.judge_prompts > 0:
        from train.evaluate import load_prompts

        records = load_prompts(s.gold, min(s.judge_prompts, s.answer_prompts), columns=s.map, roles=s.roles)
        judge = judge_llm(s)
        for name in arms:
            if name == BASELINE:
                continue
            for row in per_run[name]:
                k = row["seed"]
                j = judge_arm(s, judge, name, k, evals[name, k], evals[BASELINE, k], records)
                row.update({key: j.get(key) for key in ("win_rate", "wins", "losses", "ties", "debiased_win_rate", "position_bias")})
    arms_doc = summarize(per_run)
    for name in arms:
        if name != BASELINE:
            arms_doc[name]["paired_vs_random"] = paired_loss(evals, name, seeds)
            arms_doc[name]["paired_defects_vs_random"] = paired_defects(evals, name, seeds)
    pool_records = read_pool(s)
    # each arm's records, read once for the defect accounting and the composition (a shared file once)
    draws = {name: [list(read_records(path)) for path in dict.fromkeys(a.path for a in group)] for name, group in arms.items()}
    doc = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in s.__dict__.items()},
        "train_config": train_config(s, 0).model_dump(mode="json"),
        "gold": {"path": s.gold, "sha256": gold_sha},
        "base": {**{k: base[k] for k in ("model", "loss", "perplexity")}, **behaviour_row(base.get("behaviour"))},
        "win_rate_definition": "per prompt: 1 if the arm beats the random arm of the same seed in both answer orders, "
                               "0 if it loses in both, else 0.5; mean over prompts",
        "debiased_win_rate_definition": "per prompt: sigmoid((l1 - l2) / 2), where l = log P(A) - log P(B) at the judge's "
                                        "verdict position with the arm's answer first (l1) and second (l2), which cancels "
                                        "a constant position bias; mean over prompts",
        "curation": curation_summary(s, pool_records, draws),
        "composition": composition({"gold": [s.gold_input().read(lambda _: None)], "pool": [pool_records], **draws}),
        "arms": arms_doc,
        "versions": package_versions(),
        "seconds_this_invocation": round(time.time() - started, 1),
    }
    write_json(s.out / "ablation.json", doc)
    from datagen.report import data as report_data
    from datagen.report import html as report_html

    curated = s.out / "arms" / "curated"  # the full report: why each pool record was kept or dropped, and the ablation
    report = report_data.build([curated / "filter", curated / "select"], cache_dir=Path(s.cache_dir) if s.cache_dir else None, ablation=doc)
    report_html.write(report, s.out / "report.html", title=f"datagen ablate: {s.out}")
    return doc
