"""``datagen ablate``: does the curation help? Train on curated vs. random data and compare.

From one pool, :func:`build_arms` makes the arms:

* ``curated``: ``datagen filter`` (``--stages``, ``--filter-config``) then ``datagen select
  --budget N``, run in-process as run directories under ``DIR/arms/curated/{filter,select}``;
  deterministic, so one set serves every seed;
* ``random``: as many records as the curated arm holds, drawn uniformly from the pool with
  ``random.Random(seed)``: a new draw per seed (``DIR/arms/random-s<seed>/records.jsonl``);
* ``filtered`` (``--filtered``): as many records, drawn uniformly from the filter's survivors, a
  new draw per seed: it splits the curation's effect into the filter's (``filtered`` against
  ``random``) and the selection's (``curated`` against ``filtered``);
* ``removed`` (``--removed``): as many records, drawn uniformly from what the filter removed
  (its ``rejected.jsonl``), a new draw per seed: the positive control. If the trained models'
  metrics cannot tell this arm from ``random``, they cannot see the data's defects at all, and a
  tie between ``curated`` and ``random`` says nothing;
* ``full`` (``--full``): the whole pool.

Every (arm, seed) trains with the same recipe, the same ``--set`` overrides and the SAME number of
optimizer steps (``max_steps = --steps``; no evaluation during training), with training seed
``seed``. The arms therefore see the same number of tokens per step and of steps; a smaller arm
is repeated over more epochs (``epochs`` in ablation.json says how many).

Each trained model is then scored on the gold set (``DIR/runs/<arm>-s<seed>/eval.json``):

* ``loss``: held-out NLL of the gold answers (:func:`train.evaluate.heldout_loss`), lower is better;
* greedy answers to the first ``--answer-prompts`` gold prompts (default 40) and what a user sees
  in them (:mod:`train.behaviour`): ``defect_rate``, the share of answers that never end their
  turn, are empty, refuse, stop mid-sentence, loop or answer in another language, and a rate per
  kind; the untrained base model is answered too, as the reference. Answers may run to
  ``--max-new-tokens``, by default twice the longest gold answer in the base model's tokens (at
  least 64, :func:`answer_limit`): a model that answers at the references' length always has
  room to end its turn, so ``no_stop`` means it did not, not that the limit was short;
* with ``--judge-prompts K`` (default 0: no judge), a judge LLM compares each of the first K
  answers of an arm with the random arm's of the same seed (:func:`train.evaluate.judge_pairs`, both
  answer orders, ``prompts/train/pairwise.j2``). :func:`strict_scores` counts a prompt as a win
  (1) only when the arm wins in BOTH orders, a loss (0) only when it loses in both, and anything
  else (a split, a tie, an unreadable verdict) as a tie (0.5). ``win_rate`` is the mean: 0.5 means
  no difference, the random arm against itself is 0.5 by definition. ``debiased_win_rate`` reads
  the judge's probabilities instead of its verdicts, with position bias cancelled between the two
  orders (:func:`train.evaluate.debiased_preference`): a small judge that always writes "A" gives
  only ties by the strict rule, but its probabilities can still tell the answers apart.

The verdict compares each arm with the random arm on gold loss and on defect rate (lower is
better for both) against the seed noise, with a paired comparison item by item for each
(:func:`paired_loss` over gold items, :func:`paired_defects` over answers to the same prompt by
models of the same seed), then reads the two together.

``DIR/ablation.json`` holds per arm the mean, std (sample, ddof=1), min and max over seeds of
each metric, the per-seed values and the item-by-item comparison with the random arm
(:func:`paired_loss`); the untrained base model's gold loss (``base``, the reference); what each
arm, the gold set and the pool are made of (:func:`composition`); the curation funnel, and, when
the pool's records carry ``meta["injected"]`` (a known defect, see ``bench/noisy_pool.py``), how
many of each defect the filter removed, by which stage, and how many ended in each arm.
``DIR/report.html`` is the quality report of the curated arm's filter and select runs with the
ablation section (the one renderer, :mod:`datagen.report`); the command prints the same summary
as ``datagen report --ablation DIR --text``.

Resuming: each step leaves a marker holding the fingerprint of what it depends on (arm data
digest, training config, gold set, evaluation settings): ``train.json`` after training,
``eval.json`` after evaluation, ``DIR/judge/<arm>-s<seed>.json`` after judging. A rerun with the
same settings skips every finished step; a changed setting is refused unless ``--force``.

This module imports nothing heavy at the top: ``datagen.cli`` imports it for ``add_arguments``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .report.ablation import BASELINE, spread

if TYPE_CHECKING:
    from .llm.base import LLM
    from .record import Record

DEFAULT_RECIPE = "lora-gemma3-cpu"  # the base student: SFT is what turns it into an assistant
DEFAULT_STAGES = "heuristics,exact,minhash,semantic,quality"
# Without --filter-config the quality stage runs only the model-free surface scorer, so curation
# needs no LLM on a CPU; pass a filter config with quality.scorers: [judge, ...] for the real one.
DEFAULT_FILTER_CONFIG = "quality:\n  scorers: [complexity_features]\n"
DEFAULT_SELECT_SCORE = "complexity_features"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .cli import out_dir

    g = p.add_argument_group("data")
    g.add_argument("--pool", required=True, metavar="FILE", help="the record pool every arm is built from (any input format)")
    g.add_argument("--gold", required=True, metavar="FILE", help="gold set: held-out loss on its answers, judged answers to its prompts")
    g.add_argument("--budget", type=int, required=True, metavar="N", help="records per arm (the random arm matches the curated arm's size if the filter leaves fewer)")
    g.add_argument("--out", "-o", required=True, metavar="DIR", type=out_dir, help="ablation directory (arms/, runs/, judge/, ablation.json, report.html)")
    g.add_argument("--force", action="store_true", help="redo steps whose settings changed instead of refusing")
    c = p.add_argument_group("curated arm")
    c.add_argument("--stages", default=DEFAULT_STAGES, metavar="LIST", help=f"datagen filter stages (default {DEFAULT_STAGES})")
    c.add_argument("--filter-config", default=None, metavar="YAML",
                   help="datagen filter --config; default: stage defaults, quality stage with the model-free complexity_features scorer only")
    c.add_argument("--select-score", default=DEFAULT_SELECT_SCORE, metavar="SCORE=W,...", help=f"datagen select --score (default {DEFAULT_SELECT_SCORE})")
    c.add_argument("--tau", type=float, default=0.9, help="datagen select --tau")
    c.add_argument("--cache-dir", default=None, metavar="DIR", help="shared embedding/score caches (default as datagen filter)")
    t = p.add_argument_group("training")
    t.add_argument("--recipe", default=DEFAULT_RECIPE, metavar="R", help=f"train recipe, a file or a bundled name (default {DEFAULT_RECIPE})")
    t.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="recipe override, as in train run --set (repeatable)")
    t.add_argument("--steps", type=int, default=None, metavar="K", help="optimizer steps for EVERY arm (default: the recipe's max_steps, else 40)")
    t.add_argument("--seeds", type=int, default=3, metavar="K", help="seeds 0..K-1: training seed, and the random arm's draw (default 3)")
    t.add_argument("--filtered", action="store_true",
                   help="also train a 'filtered' arm: as many records drawn at random from the filter's survivors (the filter's effect without the selection)")
    t.add_argument("--removed", action="store_true",
                   help="also train a 'removed' arm: as many records drawn at random from what the filter removed (the positive control: "
                        "the metrics must tell it from random)")
    t.add_argument("--full", action="store_true", help="also train a 'full' arm on the whole pool")
    e = p.add_argument_group("evaluation")
    e.add_argument("--answer-prompts", type=int, default=40, metavar="K",
                   help="gold prompts each model answers greedily, for the behavioural defect rates (0: loss only; default 40)")
    e.add_argument("--judge-prompts", type=int, default=0, metavar="K",
                   help="of those, how many a judge compares with the random arm's answers, both orders (default 0: no judge)")
    e.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                   help="longest answer generated per gold prompt; an answer that reaches it never stopped "
                        "(default: twice the longest gold answer in the base model's tokens, at least 64)")
    e.add_argument("--judge-model", default=None, metavar="M", help="local judge model (default: the embedded SmolLM2-135M-Instruct)")
    e.add_argument("--batch-size", type=int, default=16, help="generation and loss batch size")
    e.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda if available)")
    e.add_argument("--llm-cache", default=None, metavar="PATH", help="judge request cache (default ~/.cache/datagen/llm_cache.sqlite)")


# -- settings ----------------------------------------------------------------------------------------
@dataclass
class AblationSettings:
    """Everything that decides an ablation (the parsed command line)."""

    pool: str
    gold: str
    budget: int
    out: Path
    stages: str = DEFAULT_STAGES
    filter_config: str | None = None
    select_score: str = DEFAULT_SELECT_SCORE
    tau: float = 0.9
    cache_dir: str | None = None
    recipe: str = DEFAULT_RECIPE
    sets: list[str] = field(default_factory=list)
    steps: int | None = None
    seeds: int = 3
    filtered: bool = False
    removed: bool = False
    full: bool = False
    answer_prompts: int = 40
    judge_prompts: int = 0
    max_new_tokens: int | None = None  # None: answer_limit() of the gold set
    judge_model: str | None = None
    batch_size: int = 16
    device: str | None = None
    llm_cache: str | None = None
    force: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> AblationSettings:
        names = [f for f in cls.__dataclass_fields__ if f != "out"]
        return cls(out=Path(args.out), **{n: getattr(args, n) for n in names})

    def arm_names(self) -> list[str]:
        extra = [name for name, on in (("filtered", self.filtered), ("removed", self.removed), ("full", self.full)) if on]
        return ["curated", BASELINE, *extra]


@dataclass
class Arm:
    """One arm's training data for one seed."""

    name: str
    seed: int
    path: Path
    size: int
    sha256: str


# -- markers ------------------------------------------------------------------------------------------
def read_marker(path: Path, fp: str, force: bool) -> dict[str, Any] | None:
    """The marker's content if it holds fingerprint ``fp``; None if absent (or stale under
    ``force``); a UserError if it belongs to other settings."""
    from .errors import UserError

    if not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("fingerprint") == fp:
        return doc
    if force:
        return None
    raise UserError(f"{path}: was made with different settings; rerun with the same arguments, pass --force to redo it, or choose another --out")


# -- arms -----------------------------------------------------------------------------------------------
def curate(s: AblationSettings) -> Path:
    """The curated arm: filter then select, as run directories under DIR/arms/curated/.
    Returns the selected records file. A finished run directory is reused."""
    from .commands import InputSpec
    from .commands_filter import run_filter
    from .commands_select import run_select
    from .io import atomic_open
    from .core.rundir import AlreadyComplete

    base = s.out / "arms" / "curated"
    base.mkdir(parents=True, exist_ok=True)
    config = s.filter_config
    if config is None:
        config = str(base / "filter.yaml")
        with atomic_open(config) as f:
            f.write(DEFAULT_FILTER_CONFIG)
    filtered, selected = base / "filter", base / "select"
    steps = (
        (filtered, lambda: run_filter(InputSpec(s.pool), filtered, stages=s.stages, config=config, cache_dir=s.cache_dir, force=s.force)),
        (selected, lambda: run_select(InputSpec(str(filtered / "records.jsonl")), selected, budget=s.budget, score=s.select_score,
                                      tau=s.tau, cache_dir=s.cache_dir, force=s.force)),
    )
    for out, step in steps:
        try:
            step()
        except AlreadyComplete:
            print(f"ablate: {out} already complete", file=sys.stderr)
    return selected / "records.jsonl"


def random_arm(pool: Sequence[Record], n: int, seed: int) -> list[Record]:
    """``n`` records drawn uniformly without replacement from ``pool`` with ``random.Random(seed)``."""
    return random.Random(seed).sample(list(pool), min(n, len(pool)))


def build_arms(s: AblationSettings, seeds: Sequence[int]) -> dict[str, list[Arm]]:
    """Every arm's data file, per seed (the curated and full arms share one file across seeds)."""
    from .io import iter_jsonl, read_records, write_records
    from .record import Record
    from .core.rundir import file_digest

    curated = curate(s)
    pool = list(read_records(s.pool))
    n = sum(1 for _ in read_records(curated))
    if n < s.budget:
        print(f"ablate: the filter left only {n} records for a budget of {s.budget}; every arm gets {n}", file=sys.stderr)
    arms: dict[str, list[Arm]] = {"curated": [Arm("curated", k, curated, n, file_digest(curated)) for k in seeds]}
    draws = {BASELINE: pool}
    filtered = s.out / "arms" / "curated" / "filter"
    if s.filtered:
        draws["filtered"] = list(read_records(filtered / "records.jsonl"))
    if s.removed:
        draws["removed"] = [Record.model_validate(row["record"]) for row in iter_jsonl(filtered / "rejected.jsonl")]
        if len(draws["removed"]) < n:
            print(f"ablate: the filter removed only {len(draws['removed'])} records; the removed arm gets them all", file=sys.stderr)
    for name, source in draws.items():
        arms[name] = []
        for k in seeds:
            path = s.out / "arms" / f"{name}-s{k}" / "records.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            drawn = random_arm(source, n, k)
            write_records(path, drawn)  # cheap and deterministic: always rewritten
            arms[name].append(Arm(name, k, path, len(drawn), file_digest(path)))
    if s.full:
        arms["full"] = [Arm("full", k, Path(s.pool), len(pool), file_digest(s.pool)) for k in seeds]
    return arms


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
    from .io import write_json
    from .core.rundir import fingerprint

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
    from train.data import load_samples
    from train.evaluate import heldout_loss
    from train.model import load_merged

    from .llm.templates import apply_chat_template

    model, tokenizer = load_merged(folder, device=s.device or _default_device())
    if chat_template is not None:
        apply_chat_template(tokenizer, model, chat_template)
    samples, _ = load_samples(s.gold, tokenizer, max_length=max_length, overlong="truncate")
    return heldout_loss(model, tokenizer, samples, batch_size=s.batch_size)


def eval_arm(s: AblationSettings, run_dir: Path, gold_sha: str) -> dict[str, Any]:
    """Gold-set loss and greedy answers of one trained model (``eval.json``), unless done."""
    import tempfile

    from .io import write_json
    from .core.rundir import fingerprint

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

    from .llm.local import LocalLLM

    records = load_prompts(s.gold, s.answer_prompts)
    replies = answer(LocalLLM(str(folder), batch_size=s.batch_size, device=s.device or _default_device()), records, s.max_new_tokens)
    return {"answers": [a.text for a in replies], "stopped": [a.stopped for a in replies],
            "defects": [defects(a) for a in replies], "behaviour": summarize(replies)}


ANSWER_LIMIT_FACTOR, ANSWER_LIMIT_MIN, ANSWER_LIMIT_STEP = 2, 64, 32


def answer_limit(s: AblationSettings) -> int:
    """The default ``--max-new-tokens``: twice the longest gold answer among the answered prompts,
    counted in the base model's tokens, rounded up to a multiple of 32 and at least 64."""
    import math

    from transformers import AutoTokenizer

    from .io import read_records
    from .llm.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model(train_config(s, 0).model)))
    longest = max((len(tokenizer(r.response, add_special_tokens=False)["input_ids"])
                   for r in read_records(s.gold, limit=s.answer_prompts) if r.has_answer), default=0)
    return max(ANSWER_LIMIT_MIN, math.ceil(ANSWER_LIMIT_FACTOR * longest / ANSWER_LIMIT_STEP) * ANSWER_LIMIT_STEP)


def eval_base(s: AblationSettings, gold_sha: str) -> dict[str, Any]:
    """Gold-set loss of the untrained base model (``DIR/base/eval.json``), unless done: the
    reference that shows how far training moved the loss, against which the arms' differences
    can be read."""
    from .io import write_json
    from .llm.models import resolve_model
    from .core.rundir import fingerprint

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
    """Per-prompt scores from :func:`train.evaluate.judge_pairs` items, where the arm under test
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
    from train.evaluate import judge_pairs

    from .io import write_json
    from .core.rundir import fingerprint

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


# -- summary --------------------------------------------------------------------------------------------
def injected_counts(records: Sequence[Record]) -> dict[str, int]:
    """Records per ``meta["injected"]`` tag ("clean" when untagged)."""
    counts: dict[str, int] = {}
    for r in records:
        tag = str(r.meta.get("injected") or "clean")
        counts[tag] = counts.get(tag, 0) + 1
    return dict(sorted(counts.items()))


def composition(groups: dict[str, Sequence[Sequence[Record]]]) -> dict[str, dict[str, Any]]:
    """What each record set is made of, as spreads over its draws (one draw for the gold set, the
    pool and the curated arm; one per seed for a random arm): the share of each instruction
    language (:func:`datagen.text.detect_language`) and the mean answer length in English-word
    equivalents. A gold loss rewards matching the gold set's mix, so read it next to this."""
    from .text import detect_language, word_equivalents

    langs = sorted({detect_language(r.instruction) or "none" for draws in groups.values() for d in draws for r in d})
    out: dict[str, dict[str, Any]] = {}
    for name, draws in groups.items():
        row: dict[str, Any] = {}
        for lang in langs:
            row[f"share_{lang}"] = spread([sum((detect_language(r.instruction) or "none") == lang for r in d) / len(d) for d in draws if d])
        row["answer_words"] = spread([statistics.fmean(word_equivalents(r.response) for r in d) for d in draws if d])
        out[name] = row
    return out


def curation_summary(s: AblationSettings, pool_records: Sequence[Record], draws: dict[str, list[list[Record]]]) -> dict[str, Any]:
    """The filter's funnel and, for a pool with tagged defects, what each step let through:
    per tag, the share the filter removed (or, for clean records, kept) and the count in each arm;
    which stage removed what (``removed_by``); and how the near-duplicate groups (a clean record
    and its tagged near-copies) fared, since dedup keeps one record of a group, the copy or the
    original, and either way the group is reduced to one. ``draws`` holds each arm's records, one
    list per distinct file (one per seed for a random draw, one for the curated arm)."""
    from .io import read_records

    base = s.out / "arms" / "curated"
    stats = json.loads((base / "filter" / "stats.json").read_text(encoding="utf-8"))
    doc: dict[str, Any] = {"filter_funnel": {k: {"in": v["in"], "out": v["out"], "rejected": v["rejected"]} for k, v in stats["stages"].items()}}
    pool = injected_counts(pool_records)
    if set(pool) == {"clean"}:
        return doc
    kept_records = list(read_records(base / "filter" / "records.jsonl"))
    after_filter = injected_counts(kept_records)
    per_arm = {name: [injected_counts(d) for d in group] for name, group in draws.items()}
    defects = {}
    for tag, n in pool.items():
        kept = after_filter.get(tag, 0)
        row: dict[str, Any] = {"pool": n, "after_filter": kept}
        if tag == "clean":
            row["kept_by_filter"] = kept / n
        else:
            row["removed_by_filter"] = (n - kept) / n
        row["in_arm"] = {name: spread([c.get(tag, 0) for c in counts]) for name, counts in per_arm.items()}
        defects[tag] = row
    total_bad = sum(n for t, n in pool.items() if t != "clean")
    kept_bad = sum(n for t, n in after_filter.items() if t != "clean")
    doc["defects"] = defects
    doc["removed_by_filter_all_defects"] = (total_bad - kept_bad) / total_bad
    doc["filter_precision"] = _precision(pool, after_filter)
    doc["removed_by"] = removed_by(base / "filter" / "rejected.jsonl")
    groups = near_duplicate_groups(pool_records, {r.id for r in kept_records})
    if groups["groups"]:
        doc["near_duplicate_pairs"] = groups
        clean_removed = pool["clean"] - after_filter.get("clean", 0)
        doc["notes"] = [
            (f"{groups['groups']} near-duplicate groups (a clean record and its tagged near-copies): "
             f"{groups['reduced_to_one']} reduced to one record, {groups['all_removed']} removed entirely, "
             f"{groups['more_than_one_kept']} left with more than one."),
            (f"Of the {clean_removed} clean records the filter removed, {groups['clean_removed_copy_kept']} were the original of "
             "a group whose near-copy was kept: the content stayed in the set."),
        ]
    return doc


def removed_by(rejected: Path) -> dict[str, dict[str, int]]:
    """Per pool tag, how many records each ``stage/reason`` removed (from ``rejected.jsonl``)."""
    out: dict[str, dict[str, int]] = {}
    if not rejected.is_file():
        return out
    with rejected.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            tag = str((row.get("record", {}).get("meta") or {}).get("injected") or "clean")
            key = f"{row.get('stage')}/{row.get('reason')}"
            out.setdefault(tag, {})[key] = out.get(tag, {}).get(key, 0) + 1
    return {t: dict(sorted(v.items())) for t, v in sorted(out.items())}


def near_duplicate_groups(pool: Sequence[Record], kept_ids: set[str]) -> dict[str, int]:
    """How the filter treated each group of a clean record and its ``near_duplicate`` copies
    (``meta["injected_from"]`` names the original)."""
    groups: dict[str, list[str]] = {}
    for r in pool:
        if r.meta.get("injected") == "near_duplicate" and r.meta.get("injected_from"):
            groups.setdefault(str(r.meta["injected_from"]), []).append(r.id)
    out = dict.fromkeys(("groups", "reduced_to_one", "all_removed", "more_than_one_kept", "clean_removed_copy_kept"), 0)
    for original, copies in groups.items():
        survivors = sum(i in kept_ids for i in [original, *copies])
        out["groups"] += 1
        out["reduced_to_one" if survivors == 1 else "all_removed" if survivors == 0 else "more_than_one_kept"] += 1
        if original not in kept_ids and any(c in kept_ids for c in copies):
            out["clean_removed_copy_kept"] += 1
    return out


def _precision(pool: dict[str, int], kept: dict[str, int]) -> float | None:
    """Of the records the filter removed, the share that were injected defects."""
    removed = sum(pool.values()) - sum(kept.values())
    removed_bad = sum(n - kept.get(t, 0) for t, n in pool.items() if t != "clean")
    return removed_bad / removed if removed else None


def paired_loss(evals: dict[tuple[str, int], dict[str, Any]], name: str, seeds: Sequence[int]) -> dict[str, Any] | None:
    """The arm against the random arm item by item: per gold item, the arm's loss minus the random
    arm's of the same seed, averaged over seeds. How many items are lower and higher, a two-sided
    sign test, and the mean difference with a 95% bootstrap interval over items (2,000 resamples,
    seeded). None when an evaluation holds no per-item losses."""
    rows = []
    for k in seeds:
        mine, theirs = evals[name, k].get("per_sample_loss"), evals[BASELINE, k].get("per_sample_loss")
        if not mine or not theirs or len(mine) != len(theirs):
            return None
        rows.append([None if a is None or b is None else a - b for a, b in zip(mine, theirs)])
    per_item = [statistics.fmean(col) for col in zip(*rows) if None not in col]
    if not per_item:
        return None
    rng = random.Random(0)
    boots = sorted(statistics.fmean(rng.choices(per_item, k=len(per_item))) for _ in range(2000))
    lower, higher = sum(d < 0 for d in per_item), sum(d > 0 for d in per_item)
    return {
        "items": len(per_item), "seeds": len(seeds), "lower": lower, "higher": higher,
        "sign_test_p": sign_test(lower, higher), "mean_diff": statistics.fmean(per_item),
        "ci95": [boots[int(0.025 * len(boots))], boots[int(0.975 * len(boots)) - 1]],
    }


def paired_defects(evals: dict[tuple[str, int], dict[str, Any]], name: str, seeds: Sequence[int]) -> dict[str, Any] | None:
    """The arm against the random arm answer by answer: for each gold prompt and seed, whether the
    arm's answer has a defect and the random arm's (same prompt, same seed) has none (``more``), or
    the reverse (``fewer``); answers that agree carry no information. A two-sided sign test on the
    discordant pairs (McNemar's exact test), per kind as well. None without answers."""
    from train.behaviour import KINDS

    pairs = []
    for k in seeds:
        mine, theirs = evals[name, k].get("defects"), evals[BASELINE, k].get("defects")
        if not mine or not theirs or len(mine) != len(theirs):
            return None
        pairs += zip(mine, theirs)

    def count(has: Any) -> dict[str, Any]:
        fewer = sum(1 for a, b in pairs if not has(a) and has(b))
        more = sum(1 for a, b in pairs if has(a) and not has(b))
        return {"fewer": fewer, "more": more, "sign_test_p": sign_test(fewer, more)}

    return {"answers": len(pairs), "seeds": len(seeds), **count(bool),
            "kinds": {kind: count(lambda d, kind=kind: kind in d) for kind in KINDS}}


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: the chance of a split at least this uneven if both were equally likely."""
    import math

    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def behaviour_row(behaviour: dict[str, Any] | None) -> dict[str, Any]:
    """``defect_rate`` and ``defect_<kind>`` (a rate each) of one evaluation's behaviour summary."""
    from train.behaviour import KINDS

    if not behaviour:
        return {}
    return {"defect_rate": behaviour["defect_rate"], **{f"defect_{k}": behaviour["rates"][k] for k in KINDS}}


def summarize(per_run: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per arm: the spread over seeds of loss, perplexity, defect rates, win rate, train loss and epochs."""
    from train.behaviour import KINDS

    metrics = ("loss", "perplexity", "defect_rate", *(f"defect_{k}" for k in KINDS), "win_rate", "debiased_win_rate", "train_loss", "epochs")
    out = {}
    for name, rows in per_run.items():
        out[name] = {
            "records": rows[0]["records"], "steps": rows[0]["steps"],
            **{m: spread([r.get(m) for r in rows]) for m in metrics},
            "per_seed": rows,
        }
    return out


# -- the command ------------------------------------------------------------------------------------------
def ablate(s: AblationSettings) -> dict[str, Any]:
    """Build, train, evaluate and judge every arm over every seed; write ablation.json and .html."""
    from .errors import UserError
    from .io import read_records, write_json
    from .core.rundir import file_digest, package_versions

    for label, path in (("--pool", s.pool), ("--gold", s.gold)):
        if not Path(path).is_file():
            raise UserError(f"{label} {path}: no such file")
    if s.budget < 1 or s.seeds < 1:
        raise UserError("--budget and --seeds must be >= 1")
    started = time.time()
    seeds = list(range(s.seeds))
    arms = build_arms(s, seeds)
    gold_sha = file_digest(s.gold)
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

        records = load_prompts(s.gold, min(s.judge_prompts, s.answer_prompts))
        judge = _judge(s)
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
    pool_records = list(read_records(s.pool))
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
        "composition": composition({"gold": [list(read_records(s.gold))], "pool": [pool_records], **draws}),
        "arms": arms_doc,
        "versions": package_versions(),
        "seconds_this_invocation": round(time.time() - started, 1),
    }
    write_json(s.out / "ablation.json", doc)
    from .report import data as report_data
    from .report import html as report_html

    curated = s.out / "arms" / "curated"  # the full report: why each pool record was kept or dropped, and the ablation
    report = report_data.build([curated / "filter", curated / "select"], cache_dir=Path(s.cache_dir) if s.cache_dir else None, ablation=doc)
    report_html.write(report, s.out / "report.html", title=f"datagen ablate: {s.out}")
    return doc


def _judge(s: AblationSettings) -> LLM:
    from .llm import LLMConfig, make_llm

    return make_llm(LLMConfig(backend="local", model=s.judge_model, batch_size=s.batch_size, device=s.device, cache=s.llm_cache))


def _default_device() -> str:
    from .llm.models import default_device

    return default_device()


def cli(args: argparse.Namespace) -> int:
    s = AblationSettings.from_args(args)
    from .report.ablation import parse_ablation
    from .report.text import ablation_summary

    doc = ablate(s)
    print(ablation_summary(parse_ablation(doc, str(s.out / "ablation.json"))))
    print(f"ablation written to {s.out / 'ablation.json'}; the report (the curated arm's records, and the ablation): {s.out / 'report.html'}",
          file=sys.stderr)
    return 0
