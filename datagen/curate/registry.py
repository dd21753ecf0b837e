"""Stage names -> stages built from the filter configuration.

The non-model stages are built directly. The model-based ones (``semantic``, ``quality``) are
imported only when requested, so ``--stages heuristics,exact,minhash`` never loads torch or a
model, and a build without those modules fails with a clear error only when one is asked for.
A lazily imported stage's config section is validated by its module's config model (e.g.
``datagen.curate.dedup.semantic:SemanticConfig``, ``extra="forbid"``) and passed to ``Stage(config)``.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel

from datagen.core.errors import UserError
from datagen.curate.base import FilterStage
from datagen.curate.config import FilterConfig, validate_section

STAGE_ORDER = ("heuristics", "pii", "decontaminate", "exact", "minhash", "semantic", "quality")
OPT_IN = ("pii", "decontaminate")  # run only when named (--stages, --pii; --decontaminate or decontaminate.files)
DEFAULT_STAGES = ",".join(s for s in STAGE_ORDER if s not in OPT_IN)
# name -> (module, stage class, config model)
LAZY = {
    "semantic": ("datagen.curate.dedup.semantic", "SemanticDedup", "SemanticConfig"),
    "quality": ("datagen.curate.stages.quality", "QualityStage", "QualityConfig"),
    "decontaminate": ("datagen.curate.stages.decontaminate", "Decontaminate", "DecontaminateConfig"),
}


def parse_stages(spec: str | None) -> list[str]:
    """``"minhash,heuristics"`` -> ``["heuristics", "minhash"]`` (canonical order, no repeats)."""
    names = [s.strip() for s in (spec or DEFAULT_STAGES).split(",") if s.strip()]
    unknown = [s for s in names if s not in STAGE_ORDER]
    if unknown:
        raise UserError(f"--stages: unknown stage {unknown[0]!r}; expected some of {', '.join(STAGE_ORDER)}")
    if not names:
        raise UserError("--stages: name at least one stage")
    return [s for s in STAGE_ORDER if s in names]


def build_stage(name: str, cfg: FilterConfig, source: str = "config") -> FilterStage:
    if name == "heuristics":
        from datagen.curate.stages.heuristics import Heuristics

        return Heuristics(cfg.heuristics)
    if name == "pii":
        from datagen.curate.stages.pii import PiiStage

        return PiiStage(cfg.pii)
    if name == "exact":
        from datagen.curate.dedup.exact import ExactDedup

        return ExactDedup(cfg.exact)
    if name == "minhash":
        from datagen.curate.dedup.minhash import MinHashDedup

        return MinHashDedup(cfg.minhash)
    return _build_lazy(name, getattr(cfg, name), source)


def _build_lazy(name: str, section: dict[str, Any], source: str) -> FilterStage:
    module, cls_name, cfg_name = LAZY[name]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise UserError(f"stage '{name}' is not available in this installation ({module} is missing); "
                        f"leave it out with --stages") from None
    cls = getattr(mod, cls_name, None)
    if cls is None:
        raise UserError(f"stage '{name}' is not available: {module} defines no {cls_name}")
    model = getattr(mod, cfg_name, None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return cls(validate_section(model, section, source, name))
    try:
        return cls(**section)
    except TypeError as e:
        raise UserError(f"{source}: {name}: {e}") from None


def build_stages(names: list[str], cfg: FilterConfig, source: str = "config") -> list[FilterStage]:
    return [build_stage(n, cfg, source) for n in names]
