"""The ablation's settings: :class:`AblationSettings`, which ``datagen ablate``'s flags are derived
from (:func:`datagen.core.settings.add_flags`), an arm's data file, and the resume markers."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from datagen.report.ablation import BASELINE


DEFAULT_RECIPE = "lora-gemma3-cpu"  # the base student: SFT is what turns it into an assistant
DEFAULT_STAGES = "heuristics,exact,minhash,semantic,quality"
# Without --filter-config the quality stage runs only the model-free surface scorer, so curation
# needs no LLM on a CPU; pass a filter config with quality.scorers: [judge, ...] for the real one.
DEFAULT_FILTER_CONFIG = "quality:\n  scorers: [complexity_features]\n"
DEFAULT_SELECT_SCORE = "complexity_features"
# the flags' groups in --help, each a list of AblationSettings' fields
GROUPS = {
    "data": ("pool", "gold", "map", "roles", "budget", "limit", "out", "force"),
    "curated arm": ("stages", "filter_config", "select_score", "tau", "cache_dir"),
    "training": ("recipe", "sets", "steps", "seeds", "filtered", "removed", "full"),
    "evaluation": ("answer_prompts", "judge_prompts", "max_new_tokens", "judge_model", "batch_size", "device", "llm_cache"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from datagen.core.settings import add_flags

    p.add_argument("--config", default=None, metavar="YAML",
                   help="the ablation's settings from a YAML file (keys: the flags' names, with underscores; the flags given win)")
    for title, names in GROUPS.items():
        add_flags(p.add_argument_group(title), AblationSettings, only=names)


# -- settings ----------------------------------------------------------------------------------------
class AblationSettings(BaseModel):
    """Everything that decides an ablation; ``datagen ablate``'s flags are derived from it."""

    model_config = ConfigDict(extra="forbid")

    pool: str = Field(description="the record pool every arm is built from (any input format)", json_schema_extra={"metavar": "FILE"})
    gold: str = Field(description="gold set: held-out loss on its answers, judged answers to its prompts", json_schema_extra={"metavar": "FILE"})
    map: str | None = Field(None, json_schema_extra={"metavar": "SRC=DST,..."}, description=(
        "rename columns of --pool and --gold before reading: response=output,context=input"))
    roles: str | None = Field(None, json_schema_extra={"metavar": "SRC=DST,..."}, description=(
        "rename turn roles of --pool and --gold before reading: bot=assistant"))
    budget: int = Field(ge=1, description="records per arm (the random arm matches the curated arm's size if the filter leaves fewer)")
    limit: int | None = Field(None, ge=1, json_schema_extra={"metavar": "K"}, description=(
        "use only the first K records of the pool (try an ablation in minutes)"))
    out: Path = Field(description="ablation directory (arms/, runs/, judge/, ablation.json, report.html)",
                      json_schema_extra={"metavar": "DIR", "short": "-o"})
    force: bool = Field(False, description="redo steps whose settings changed instead of refusing", json_schema_extra={"negatable": False})
    stages: str = Field(DEFAULT_STAGES, description="datagen filter stages", json_schema_extra={"metavar": "LIST"})
    filter_config: str | None = Field(None, json_schema_extra={"metavar": "YAML"}, description=(
        "datagen filter --config (default: stage defaults, quality stage with the model-free complexity_features scorer only)"))
    select_score: str = Field(DEFAULT_SELECT_SCORE, description="datagen select --score", json_schema_extra={"metavar": "SCORE=W,..."})
    tau: float = Field(0.9, description="datagen select --tau")
    cache_dir: str | None = Field(None, json_schema_extra={"metavar": "DIR"}, description="shared embedding/score caches (default as datagen filter)")
    recipe: str = Field(DEFAULT_RECIPE, description="train recipe, a file or a bundled name", json_schema_extra={"metavar": "R"})
    sets: list[str] = Field(default_factory=list, json_schema_extra={"flag": "--set", "metavar": "KEY=VALUE", "split": False}, description=(
        "recipe override, as in train run --set (repeatable)"))
    steps: int | None = Field(None, ge=1, json_schema_extra={"metavar": "K"}, description=(
        "optimizer steps for EVERY arm (default: the recipe's max_steps, else 40)"))
    seeds: int = Field(3, ge=1, json_schema_extra={"metavar": "K"}, description="seeds 0..K-1: training seed, and the random arm's draw")
    filtered: bool = Field(False, description=(
        "also train a 'filtered' arm: as many records drawn at random from the filter's survivors (the filter's effect without the selection)"))
    removed: bool = Field(False, description=(
        "also train a 'removed' arm: as many records drawn at random from what the filter removed (the positive control: "
        "the metrics must tell it from random)"))
    full: bool = Field(False, description="also train a 'full' arm on the whole pool")
    answer_prompts: int = Field(40, ge=0, json_schema_extra={"metavar": "K"}, description=(
        "gold prompts each model answers greedily, for the behavioural defect rates (0: loss only)"))
    judge_prompts: int = Field(0, ge=0, json_schema_extra={"metavar": "K"}, description=(
        "of those, how many a judge compares with the random arm's answers, both orders (0: no judge)"))
    max_new_tokens: int | None = Field(None, ge=1, description=(
        "longest answer generated per gold prompt; an answer that reaches it never stopped "
        "(default: twice the longest gold answer in the base model's tokens, at least 64)"))
    judge_model: str | None = Field(None, json_schema_extra={"metavar": "M"}, description=(
        "local judge model (default: the embedded SmolLM2-135M-Instruct)"))
    batch_size: int = Field(16, ge=1, description="generation and loss batch size")
    device: str | None = Field(None, description="cpu, cuda ... (default: cuda if available)")
    llm_cache: str | None = Field(None, json_schema_extra={"metavar": "PATH"}, description=(
        "judge request cache (default ~/.cache/datagen/llm_cache.sqlite)"))

    @field_validator("out")
    @classmethod
    def _writable(cls, out: Path) -> Path:
        from datagen.core.errors import UserError
        from datagen.core.writing import check_output

        try:
            check_output(str(out), "", directory=True)
        except UserError as e:
            raise ValueError(str(e).strip()) from None
        return out

    def arm_names(self) -> list[str]:
        extra = [name for name, on in (("filtered", self.filtered), ("removed", self.removed), ("full", self.full)) if on]
        return ["curated", BASELINE, *extra]

    def pool_input(self) -> Any:
        """The pool as an input (its first ``limit`` records, ``--map`` and ``--roles`` applied)."""
        from datagen.core.source import InputSpec

        return InputSpec(self.pool, None, self.limit, "raise", None, self.map, self.roles)

    def gold_input(self, limit: int | None = None) -> Any:
        """The gold set as an input (``--map`` and ``--roles`` applied)."""
        from datagen.core.source import InputSpec

        return InputSpec(self.gold, None, limit, "raise", None, self.map, self.roles)


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
