"""Run directories as the report reads them (records, rejections, stats, manifest, as plain
dicts), and the funnel: in, out and rejections per reason, per stage, over several runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datagen.core.errors import UserError


# -- reading run directories -------------------------------------------------------------------
@dataclass
class Run:
    """One run directory as read from disk. ``records``/``rejected`` are the raw JSON rows."""

    path: Path
    label: str
    manifest: dict[str, Any]
    stats: dict[str, Any]
    records: list[dict[str, Any]]
    rejected: list[dict[str, Any]]

    @property
    def command(self) -> str:
        return str(self.manifest.get("command") or self.stats.get("command") or "")

    @property
    def complete(self) -> bool:
        return self.manifest.get("status") == "complete"


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None


def _read_jsonl(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if limit is not None and len(rows) >= limit:
                break
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: not valid JSON ({e.msg})") from None
    return rows


def load_run(path: str | Path, label: str | None = None, limit: int | None = None) -> Run:
    """Read a run directory. It needs ``stats.json`` or ``manifest.json``; missing record files
    read as empty (an unfinished run). ``limit``: only the first K rows of each record file (the
    funnel still counts the whole run)."""
    p = Path(path)
    if not p.is_dir():
        raise UserError(f"{p}: no such directory")
    stats_p, man_p = p / "stats.json", p / "manifest.json"
    if not stats_p.is_file() and not man_p.is_file():
        raise UserError(f"{p}: not a datagen run directory (no stats.json or manifest.json)")
    manifest = read_json(man_p) if man_p.is_file() else {}
    stats = read_json(stats_p) if stats_p.is_file() else {}
    return Run(p, label or p.name, manifest, stats, _read_jsonl(p / "records.jsonl", limit), _read_jsonl(p / "rejected.jsonl", limit))


def load_runs(paths: Sequence[str | Path], limit: int | None = None) -> list[Run]:
    """Read the run directories in pipeline order, labelling each by its directory name (made
    unique with its parent's name when two are alike)."""
    paths = [Path(p) for p in paths]
    names = [p.resolve().name for p in paths]
    labels = []
    for p, name in zip(paths, names):
        label = name if names.count(name) == 1 else f"{p.resolve().parent.name}/{name}"
        while label in labels:
            label += "'"
        labels.append(label)
    if limit is not None and limit < 1:
        raise UserError("--limit must be >= 1")
    return [load_run(p, lab, limit) for p, lab in zip(paths, labels)]


# -- funnel ------------------------------------------------------------------------------------
@dataclass
class FunnelRow:
    """One stage of one run: records in, out, and rejections per reason (from ``stats.json``)."""

    run: str
    stage: str
    n_in: int
    n_out: int
    rejected: dict[str, int]

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


def funnel(runs: Sequence[Run]) -> list[FunnelRow]:
    """Every stage of every run, in order, with the counts of its ``stats.json``."""
    rows = []
    for run in runs:
        for name, s in run.stats.get("stages", {}).items():
            rejected = {str(k): int(v) for k, v in (s.get("rejected") or {}).items()}
            rows.append(FunnelRow(run.label, name, int(s.get("in", 0)), int(s.get("out", 0)), rejected))
    return rows


def top_reasons(rows: Sequence[FunnelRow], n: int = 10) -> list[tuple[str, str, str, int]]:
    """The ``n`` most frequent (run, stage, reason, count), most frequent first."""
    items = [(r.run, r.stage, reason, c) for r in rows for reason, c in r.rejected.items() if c]
    return sorted(items, key=lambda t: (-t[3], t[0], t[1], t[2]))[:n]
