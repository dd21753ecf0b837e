"""Reading ``ablation.json`` (a ``datagen ablate`` result) by shape into an :class:`AblationView`:
the arms and their spreads over seeds, the settings line, the defect accounting, and the verdicts
computed from the numbers (:mod:`datagen.report.ablation`), never read from the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datagen.core.errors import UserError
from datagen.report.ablation import (
    ALWAYS_SHOWN, METRICS, SEED_FIELDS, ArmView, DefectRow, Spread, Verdict, _int, as_spread, format_value, metric_label, verdicts,
)
from datagen.report.runs import read_json
from datagen.report.training import _flat_scalars, _num


@dataclass
class AblationView:
    """What the report shows of an ablation."""

    path: str
    settings: list[tuple[str, str]]
    definitions: list[tuple[str, str]]  # (metric label, how it is computed): the file's "<metric>_definition" texts
    arms: list[ArmView]
    metrics: list[str]  # the spread-shaped metrics shown as columns, in order
    defects: list[DefectRow] = field(default_factory=list)
    removed_by_filter_all_defects: float | None = None
    filter_precision: float | None = None
    near_duplicate_pairs: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    composition: list[tuple[str, dict[str, Spread]]] = field(default_factory=list)  # (set, metric -> spread): gold, pool, arms

    def composition_columns(self) -> list[str]:
        """The composition metrics, in first-seen order."""
        seen: dict[str, None] = {}
        for _, row in self.composition:
            seen.update((k, None) for k in row)
        return list(seen)

    def seed_fields(self) -> list[str]:
        """The scalar fields of the per-seed rows: the known ones first, then the others."""
        seen: dict[str, None] = {}
        for arm in self.arms:
            for row in arm.per_seed:
                seen.update((k, None) for k, v in row.items() if v is None or isinstance(v, (int, float, str, bool)))
        return [k for k in SEED_FIELDS if k in seen] + [k for k in seen if k not in SEED_FIELDS]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _settings(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """pool, gold, budget, recipe, steps, seeds, judge, the answer limit and the untrained base
    model's gold loss and defect rate, each only when the file says it."""
    s, cfg = _dict(doc.get("settings")), _dict(doc.get("train_config"))
    gold = s.get("gold") or _dict(doc.get("gold")).get("path")
    steps = s.get("steps") or cfg.get("max_steps")
    judge = None
    if "judge_prompts" in s or "judge_model" in s:
        prompts = _int(s.get("judge_prompts"))
        model = s.get("judge_model") or "the embedded default"
        judge = "none (gold loss only)" if prompts == 0 else f"{model}" + (f", {prompts} prompts" if prompts else "")
    base = _dict(doc.get("base"))
    base_loss, base_defects = _num(base.get("loss")), _num(base.get("defect_rate"))
    pairs = [("pool", s.get("pool")), ("gold", gold), ("budget", s.get("budget")), ("recipe", s.get("recipe")),
             ("steps", steps), ("seeds", s.get("seeds")), ("judge", judge), ("answers up to", f"{s['max_new_tokens']} new tokens" if s.get("max_new_tokens") else None),
             ("gold loss before training", format_value("loss", base_loss) if base_loss is not None else None),
             ("defect rate before training", format_value("defect_rate", base_defects) if base_defects is not None else None)]
    return [(k, str(v)) for k, v in pairs if v is not None and v != ""]


def _arm(name: str, d: dict[str, Any]) -> ArmView:
    metrics = {k: sp for k, v in d.items() if (sp := as_spread(v)) is not None}
    rows = [r for r in d.get("per_seed") or [] if isinstance(r, dict)] if isinstance(d.get("per_seed"), list) else []
    return ArmView(name, _int(d.get("records")), _int(d.get("steps")), metrics, rows, _dict(d.get("paired_vs_random")),
                   _dict(d.get("paired_defects_vs_random")))


def _defects(curation: dict[str, Any]) -> list[DefectRow]:
    out = []
    removed_by = _dict(curation.get("removed_by"))
    for tag, d in _dict(curation.get("defects")).items():
        if not isinstance(d, dict):
            continue
        action = "removed" if "removed_by_filter" in d else "kept" if "kept_by_filter" in d else ""
        rate = _num(d.get(f"{action}_by_filter")) if action else None
        in_arm = {str(a): sp for a, v in _dict(d.get("in_arm")).items() if (sp := as_spread(v)) is not None}
        why = {str(k): n for k, v in _dict(removed_by.get(tag)).items() if (n := _int(v))}
        out.append(DefectRow(str(tag), _int(d.get("pool")), _int(d.get("after_filter")), action, rate, in_arm, why))
    return out


def parse_ablation(doc: Any, path: str = "") -> AblationView:
    """An :class:`AblationView` of an ablation document (the content of ``ablation.json``)."""
    if not isinstance(doc, dict):
        raise UserError(f"--ablation {path}: not an ablation.json (expected a JSON object)")
    arms = [_arm(str(name), d) for name, d in _dict(doc.get("arms")).items() if isinstance(d, dict)]
    seen: dict[str, None] = {}
    for arm in arms:
        seen.update((k, None) for k in arm.metrics)
    metrics = [k for k in METRICS if k in seen or k in ALWAYS_SHOWN] + [k for k in seen if k not in METRICS]
    curation = _dict(doc.get("curation"))
    notes = curation.get("notes")
    definitions = [(metric_label(k.removesuffix("_definition")), v) for k, v in doc.items() if k.endswith("_definition") and isinstance(v, str)]
    return AblationView(
        path=path, settings=_settings(doc), definitions=definitions,
        arms=arms, metrics=metrics, defects=_defects(curation),
        removed_by_filter_all_defects=_num(curation.get("removed_by_filter_all_defects")),
        filter_precision=_num(curation.get("filter_precision")),
        near_duplicate_pairs=_flat_scalars(_dict(curation.get("near_duplicate_pairs"))),
        notes=[str(n) for n in notes] if isinstance(notes, list) else [], verdicts=verdicts(arms),
        composition=[(str(name), {k: sp for k, v in row.items() if (sp := as_spread(v)) is not None})
                     for name, row in _dict(doc.get("composition")).items() if isinstance(row, dict)],
    )


def read_ablation(path: str | Path) -> AblationView:
    """Read ``ablation.json``, or the one in an ablation directory, tolerantly (see the module
    docstring). A missing file or invalid JSON is a :class:`~datagen.core.errors.UserError`."""
    p = Path(path)
    if p.is_dir():
        if not (p / "ablation.json").is_file():
            raise UserError(f"--ablation {p}: a directory without ablation.json")
        p = p / "ablation.json"
    if not p.is_file():
        raise UserError(f"--ablation {p}: no such file or directory")
    return parse_ablation(read_json(p), str(p))
