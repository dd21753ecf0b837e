"""Training and eval results for the report: tolerant readers of a ``train run`` directory and
a ``train eval`` results file.

The trainer's files are read by shape, not by a fixed schema, so that a new field or a missing one
never breaks a report: loss points are dicts with ``step`` and ``loss`` / ``eval_loss`` (the shape
of ``transformers.Trainer``'s ``log_history``), metrics are whatever scalars the files hold, and
sample generations are any list of objects in the eval file.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datagen.core.errors import UserError
from datagen.report.data import clip
from datagen.report.index import MAX_TEXT_CHARS
from datagen.report.runs import read_json


# -- training -------------------------------------------------------------------------
@dataclass
class TrainingView:
    """Loss curves and final metrics of a ``train run`` directory."""

    path: str
    loss: list[tuple[float, float]]  # (step, training loss)
    eval_loss: list[tuple[float, float]]  # (step, eval loss)
    metrics: dict[str, Any]


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _flat_scalars(d: dict[str, Any], prefix: str = "", depth: int = 3) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and depth > 1:
            out.update(_flat_scalars(v, key + ".", depth - 1))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[key] = v
    return out


def read_training(path: str | Path) -> TrainingView:
    """Read a training run tolerantly: ``log_history.json`` (a list of log dicts, as
    ``Trainer.state.log_history``), or ``trainer_state.json`` (its ``log_history``, also in the
    newest ``checkpoint-*``), and ``metrics.json`` (scalars; may hold ``log_history`` too).
    Logs are dicts with ``step`` and ``loss`` and/or ``eval_loss``; anything else is ignored."""
    p = Path(path)
    if not p.is_dir():
        raise UserError(f"--train {p}: no such directory")
    history: list[Any] = []
    metrics: dict[str, Any] = {}
    candidates = [p / "log_history.json", p / "trainer_state.json"]
    candidates += sorted(p.glob("checkpoint-*/trainer_state.json"), key=lambda q: _checkpoint_step(q.parent.name), reverse=True)
    for c in candidates:
        if c.is_file():
            doc = read_json(c)
            history = doc if isinstance(doc, list) else doc.get("log_history", []) if isinstance(doc, dict) else []
            if history:
                break
    for name in ("metrics.json", "all_results.json", "train_results.json", "eval_results.json"):
        if (p / name).is_file():
            doc = read_json(p / name)
            if isinstance(doc, dict):
                if not history and isinstance(doc.get("log_history"), list):
                    history = doc["log_history"]
                metrics.update(_flat_scalars({k: v for k, v in doc.items() if k != "log_history"}))
    if not history and not metrics:
        raise UserError(f"--train {p}: found no log_history.json, trainer_state.json or metrics.json")
    loss, eval_loss = [], []
    for i, row in enumerate(x for x in history if isinstance(x, dict)):
        step = _num(row.get("step")) if _num(row.get("step")) is not None else float(i)
        if _num(row.get("loss")) is not None:
            loss.append((step, float(row["loss"])))
        if _num(row.get("eval_loss")) is not None:
            eval_loss.append((step, float(row["eval_loss"])))
    return TrainingView(str(p), loss, eval_loss, metrics)


def _checkpoint_step(name: str) -> int:
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else -1


@dataclass
class EvalView:
    """Metrics and sample generations of a ``train eval`` results file. ``samples`` are groups of
    ``(title, rows)``; each row is ``[(field, text)]``, known fields first."""

    path: str
    metrics: dict[str, Any]
    samples: list[tuple[str, list[list[tuple[str, str]]]]]


SAMPLE_FIELD_ORDER = ("id", "prompt", "instruction", "input", "question", "messages", "reference", "expected", "target",
                      "answer", "stopped", "defects", "generation", "output", "response", "completion", "prediction",
                      "base_answer", "base_stopped", "base_defects", "base", "tuned", "score")
MAX_SAMPLES = 50


def _sample_row(d: dict[str, Any]) -> list[tuple[str, str]]:
    def text(v: Any) -> str:
        if isinstance(v, str):
            return v
        if isinstance(v, list) and all(isinstance(m, dict) and "content" in m for m in v):
            return "\n".join(f"[{m.get('role', '?')}] {m.get('content', '')}" for m in v)
        return json.dumps(v, ensure_ascii=False)

    order = {k: i for i, k in enumerate(SAMPLE_FIELD_ORDER)}
    keys = sorted(d, key=lambda k: (order.get(k, len(order)), k))
    return [(str(k), clip(text(d[k]), MAX_TEXT_CHARS)[0]) for k in keys]


def _find_samples(doc: Any, title: str, depth: int = 3) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    if isinstance(doc, list) and doc and all(isinstance(x, dict) for x in doc):
        yield title, doc
    elif isinstance(doc, dict) and depth > 0:
        for k, v in doc.items():
            yield from _find_samples(v, f"{title}.{k}" if title else str(k), depth - 1)


def read_eval(path: str | Path) -> EvalView:
    """Read a ``train eval`` results JSON tolerantly: scalar values (nested dicts flattened to
    dotted keys) are metrics; every list of objects (at any of the top three levels) is a group of
    samples, shown field by field. A list at the top level is one group of samples."""
    p = Path(path)
    if p.is_dir():
        found = [q for q in (p / "results.json", p / "eval.json", p / "eval_results.json") if q.is_file()]
        if not found:
            raise UserError(f"--eval {p}: a directory without results.json")
        p = found[0]
    if not p.is_file():
        raise UserError(f"--eval {p}: no such file")
    doc = read_json(p)
    metrics = _flat_scalars(doc) if isinstance(doc, dict) else {}
    samples = [(title or "samples", [_sample_row(x) for x in rows[:MAX_SAMPLES]]) for title, rows in _find_samples(doc, "")]
    return EvalView(str(p), metrics, samples)
