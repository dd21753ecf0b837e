"""Training each (arm, seed) and scoring it on the gold set: loss, greedy answers and their
defects, and the optional two-order judge."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datagen.report.ablation import BASELINE
from datagen.ablate.settings import AblationSettings, Arm, default_device, read_marker

if TYPE_CHECKING:
    from datagen.llm.base import LLM
    from datagen.core.record import Record


# -- training -------------------------------------------------------------------------------------------
def train_config(s: AblationSettings, seed: int) -> Any:
    """The recipe with ``--set`` overrides, ``max_steps`` fixed for every arm, the seed, and no
    evaluation or intermediate checkpoints during training (the gold set is scored afterwards)."""
    from train.config import build_config

    base = build_config(s.recipe, s.sets)
    steps = s.steps or base.max_steps or 40
    # eval_split goes through --set: a None flag would mean "not given"
    return build_config(s.recipe, [*s.sets, "eval_split=none"], {"max_steps": steps, "seed": seed, "save_steps": steps})


def train_arm(s: AblationSettings, arm: Arm, run_dir: Path) -> dict[str, Any]:
    """Train one (arm, seed) into ``run_dir``, unless its ``train.json`` marker says it is done."""
    from datagen.core.writing import write_json
    from datagen.core.rundir import fingerprint

    cfg = train_config(s, arm.seed)
    fp = fingerprint({"data": arm.sha256, "config": cfg.model_dump(mode="json")})
    marker = run_dir / "train.json"
    done = read_marker(marker, fp, s.force)
    if done is not None:
        print(f"ablate: {arm.name} seed {arm.seed} already trained", file=sys.stderr)
        return done
    from train.run import run

    marker.unlink(missing_ok=True)
    (run_dir / "eval.json").unlink(missing_ok=True)
    print(f"ablate: training {arm.name} seed {arm.seed} ({arm.size} records, {cfg.max_steps} steps)", file=sys.stderr)
    resume = (run_dir / "model").exists() and not s.force
    t0 = time.time()
    metrics = run(cfg, str(arm.path), str(run_dir / "model"), resume=resume, force=not resume)
    doc = {
        "fingerprint": fp, "arm": arm.name, "seed": arm.seed, "records": arm.size, "steps": cfg.max_steps,
        "epochs": metrics.get("epoch"), "train_loss": metrics.get("train_loss"), "seconds": round(time.time() - t0, 1),
    }
    write_json(marker, doc)
    return doc


# -- evaluation -----------------------------------------------------------------------------------------
def gold_loss(s: AblationSettings, folder: str, max_length: int, chat_template: str | None = None) -> Any:
    """:func:`train.evaluate.heldout_loss` of the plain model in ``folder`` on the gold set, cut to
    ``max_length`` tokens as in training; the model is released before returning. A base model
    without a chat template is scored in the format training gives it (``chat_template``)."""
    from train.data import load_samples, read_training_records
    from train.evaluate import heldout_loss
    from train.model import load_merged

    from datagen.llm.templates import apply_chat_template

    model, tokenizer = load_merged(folder, device=s.device or default_device())
    if chat_template is not None:
        apply_chat_template(tokenizer, model, chat_template)
    gold = read_training_records(s.gold, columns=s.map, roles=s.roles)
    samples, _ = load_samples(s.gold, tokenizer, max_length=max_length, overlong="truncate", records=gold)
    return heldout_loss(model, tokenizer, samples, batch_size=s.batch_size)


def eval_arm(s: AblationSettings, run_dir: Path, gold_sha: str) -> dict[str, Any]:
    """Gold-set loss and greedy answers of one trained model (``eval.json``), unless done."""
    import tempfile

    from datagen.core.writing import write_json
    from datagen.core.rundir import fingerprint

    trained = json.loads((run_dir / "train.json").read_text(encoding="utf-8"))
    fp = fingerprint({"trained": trained["fingerprint"], "gold": gold_sha, "prompts": s.answer_prompts, "max_new_tokens": s.max_new_tokens})
    marker = run_dir / "eval.json"
    done = read_marker(marker, fp, s.force)
    if done is not None:
        return done
    from train.merge import merge

    cfg = train_config(s, trained["seed"])
    with tempfile.TemporaryDirectory(prefix="ablate-") as tmp:
        folder = merge(str(run_dir / "model"), str(Path(tmp) / "merged"), dtype="fp32")
        loss = gold_loss(s, folder, cfg.max_length)
        doc = {"fingerprint": fp, **loss.to_dict(), **answer_gold(s, folder)}
    write_json(marker, doc)
    return doc


def answer_gold(s: AblationSettings, folder: str | Path) -> dict[str, Any]:
    """Greedy answers of the model in ``folder`` to the first ``--answer-prompts`` gold prompts,
    and what a user would see in them (:mod:`train.behaviour`): ``answers`` (texts, for the judge),
    ``stopped``, each answer's ``defects``, and ``behaviour`` (``defect_rate`` and a rate per kind)."""
    if s.answer_prompts <= 0:
        return {"answers": [], "stopped": [], "defects": [], "behaviour": None}
    from train.behaviour import defects, summarize
    from train.evaluate import answer, load_prompts

    from datagen.llm.local import LocalLLM

    records = load_prompts(s.gold, s.answer_prompts, columns=s.map, roles=s.roles)
    replies = answer(LocalLLM(str(folder), batch_size=s.batch_size, device=s.device or default_device()), records, s.max_new_tokens)
    return {"answers": [a.text for a in replies], "stopped": [a.stopped for a in replies],
            "defects": [defects(a) for a in replies], "behaviour": summarize(replies)}


ANSWER_LIMIT_FACTOR, ANSWER_LIMIT_MIN, ANSWER_LIMIT_STEP = 2, 64, 32
def answer_limit(s: AblationSettings) -> int:
    """The default ``--max-new-tokens``: twice the longest gold answer among the answered prompts,
    counted in the base model's tokens, rounded up to a multiple of 32 and at least 64."""
    import math

    from transformers import AutoTokenizer

    from datagen.llm.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model(train_config(s, 0).model)))
    longest = max((len(tokenizer(r.response, add_special_tokens=False)["input_ids"])
                   for r in s.gold_input(s.answer_prompts).iter(lambda _: None) if r.has_answer), default=0)
    return max(ANSWER_LIMIT_MIN, math.ceil(ANSWER_LIMIT_FACTOR * longest / ANSWER_LIMIT_STEP) * ANSWER_LIMIT_STEP)


def eval_base(s: AblationSettings, gold_sha: str) -> dict[str, Any]:
    """Gold-set loss of the untrained base model (``DIR/base/eval.json``), unless done: the
    reference that shows how far training moved the loss, against which the arms' differences
    can be read."""
    from datagen.core.writing import write_json
    from datagen.llm.models import resolve_model
    from datagen.core.rundir import fingerprint

    cfg = train_config(s, 0)
    fp = fingerprint({"model": cfg.model, "gold": gold_sha, "max_length": cfg.max_length, "chat_template": cfg.chat_template,
                      "prompts": s.answer_prompts, "max_new_tokens": s.max_new_tokens})
    marker = s.out / "base" / "eval.json"
    done = read_marker(marker, fp, s.force)
    if done is not None:
        return done
    print(f"ablate: gold loss and answers of the untrained base model ({cfg.model})", file=sys.stderr)
    folder = str(resolve_model(cfg.model))
    loss = gold_loss(s, folder, cfg.max_length, chat_template=cfg.chat_template)
    doc = {"fingerprint": fp, "model": cfg.model, **loss.to_dict(), **answer_gold(s, folder)}
    write_json(marker, doc)
    return doc


def strict_scores(result: dict[str, Any]) -> list[float]:
    """Per-prompt scores from :func:`datagen.score.pairwise.judge_pairs` items, where the arm under test
    was answer A in the first order and B in the second: 1 only for a win in both orders, 0 only
    for a loss in both, else 0.5 (split, tie or unreadable verdict)."""
    out = []
    for item in result["items"]:
        first, second = item["verdicts"]
        if first == "A" and second == "B":
            out.append(1.0)
        elif first == "B" and second == "A":
            out.append(0.0)
        else:
            out.append(0.5)
    return out


def judge_arm(s: AblationSettings, judge: LLM, name: str, seed: int, mine: dict[str, Any], theirs: dict[str, Any], records: Sequence[Record]) -> dict[str, Any]:
    """Win rate of one arm's answers over the random arm's (same seed), both orders asked."""
    from datagen.score.pairwise import judge_pairs

    from datagen.core.writing import write_json
    from datagen.core.rundir import fingerprint

    fp = fingerprint({"mine": mine["fingerprint"], "theirs": theirs["fingerprint"], "judge": judge.model_id})
    marker = s.out / "judge" / f"{name}-s{seed}.json"
    done = read_marker(marker, fp, s.force)
    if done is not None:
        return done
    n = len(records)
    result = judge_pairs(judge, records, mine["answers"][:n], theirs["answers"][:n])
    scores = strict_scores(result)
    doc = {
        "fingerprint": fp, "arm": name, "seed": seed, "against": BASELINE,
        "win_rate": sum(scores) / len(scores) if scores else None,
        "wins": scores.count(1.0), "losses": scores.count(0.0), "ties": scores.count(0.5),
        "debiased_win_rate": result["debiased_win_rate"], "position_bias": result["position_bias"],
        "judge_pairs": result,
    }
    write_json(marker, doc)
    return doc


def judge_llm(s: AblationSettings) -> LLM:
    from datagen.llm import LLMConfig, make_llm

    return make_llm(LLMConfig(backend="local", model=s.judge_model, batch_size=s.batch_size, device=s.device, cache=s.llm_cache))
