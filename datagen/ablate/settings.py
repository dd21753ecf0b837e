"""The ablation's settings: its command-line flags, :class:`AblationSettings` (the parsed
command line), an arm's data file, and the resume markers."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datagen.report.ablation import BASELINE


DEFAULT_RECIPE = "lora-gemma3-cpu"  # the base student: SFT is what turns it into an assistant
DEFAULT_STAGES = "heuristics,exact,minhash,semantic,quality"
# Without --filter-config the quality stage runs only the model-free surface scorer, so curation
# needs no LLM on a CPU; pass a filter config with quality.scorers: [judge, ...] for the real one.
DEFAULT_FILTER_CONFIG = "quality:\n  scorers: [complexity_features]\n"
DEFAULT_SELECT_SCORE = "complexity_features"
def add_arguments(p: argparse.ArgumentParser) -> None:
    from datagen.core.cli import out_dir

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
    from datagen.core.errors import UserError

    if not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("fingerprint") == fp:
        return doc
    if force:
        return None
    raise UserError(f"{path}: was made with different settings; rerun with the same arguments, pass --force to redo it, or choose another --out")


def default_device() -> str:
    from datagen.llm.models import default_device

    return default_device()
