"""What each view of the quality report shows, computed from run directories.

Pure functions over plain data (the rows of ``records.jsonl`` / ``rejected.jsonl`` as dicts, and
``stats.json`` / ``manifest.json``), so every number in the report can be unit-tested without a
browser. Nothing here loads a model; embeddings are read from the on-disk cache only.

Several run directories given in pipeline order (``evolve``, ``distill``, ``filter``, ``select``)
are read as one history: a record (keyed by its content-hash id) collects one :class:`Event` per
run in which it appears, kept or rejected, and its *fate* is its last event. A record is *curated*
when its fate is "kept" by the last (primary) run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datagen.report.figures import (
    Cluster, DetectionCurve, EmbeddingMap, Group, Histogram, Threshold, breakdowns, detection_curve, dimensions,
    duplicate_clusters, embedding_map, embedding_settings, histogram, thresholds,
)
from datagen.report.index import LENGTH_SCORES, MAX_TEXT_CHARS, PREVIEW_CHARS, QUALITY_SCORES, Event, Index, build_index, last_turn, lineage
from datagen.report.runs import FunnelRow, Run, funnel, load_runs

if TYPE_CHECKING:
    from datagen.report.ablation_file import AblationView
    from datagen.report.training import EvalView, TrainingView


# -- the record browser's data -----------------------------------------------------------------
def clip(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters, and whether it was cut."""
    return (text, False) if len(text) <= limit else (text[:limit], True)


def clip_messages(messages: Iterable[dict[str, Any]], limit: int = MAX_TEXT_CHARS) -> tuple[list[list[str]], int]:
    """``[[role, content]]`` with at most ``limit`` characters of content in all; the number of
    characters left out."""
    out, left, dropped = [], limit, 0
    for m in messages:
        content = str(m.get("content", ""))
        kept, _ = clip(content, max(left, 0))
        dropped += len(content) - len(kept)
        left -= len(kept)
        out.append([str(m.get("role", "?")), kept])
    return out, dropped


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


def fate_label(ev: Event) -> str:
    """``"select: kept"``, ``"filter › heuristics"``: the facet a record's fate is filed under."""
    return f"{ev.run}: kept" if ev.status == "kept" else f"{ev.run} \u203a {ev.stage}"


@dataclass
class Browser:
    """The compact arrays the record browser pages through.

    ``facets`` lists the values of each filter; a row is ``[id, curated (0/1), status index, stage
    index, reason index, source index, language, preview]`` where status is ``kept``/``rejected``;
    ``details[i]`` (a separate, lazily parsed array) holds row ``i``'s messages, scores, events,
    lineage, flags and meta."""

    facets: dict[str, list[str]]
    rows: list[list[Any]]
    details: list[dict[str, Any]]
    truncated: int  # records whose text was cut to MAX_TEXT_CHARS


def _compact(value: Any, limit: int = 2000) -> Any:
    """``value`` itself when its JSON is short, else its JSON cut to ``limit`` characters."""
    if isinstance(value, dict) and len(value) < 20 and all(
            v is None or isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) < 100) for v in value.values()):
        return value  # short for sure: skip the encoding
    s = json.dumps(value, ensure_ascii=False, default=str)
    return value if len(s) <= limit else s[:limit] + "\u2026"


def browser(index: Index, dims: dict[str, dict[str, str]] | None = None, max_chars: int = MAX_TEXT_CHARS) -> Browser:
    """Rows and details of every record, for the client-side browser."""
    facet_lists: dict[str, list[str]] = {"status": ["kept", "rejected"], "stage": [], "reason": [], "source": []}
    pos: dict[str, dict[str, int]] = {k: {v: i for i, v in enumerate(vs)} for k, vs in facet_lists.items()}

    def code(facet: str, value: str) -> int:
        table = pos[facet]
        if value not in table:
            table[value] = len(facet_lists[facet])
            facet_lists[facet].append(value)
        return table[value]

    rows, details, truncated = [], [], 0
    for e in index:
        d = dims[e.id] if dims is not None else dimensions(e)
        fate = e.fate
        msgs, dropped = clip_messages(e.record.get("messages") or [], max_chars)
        truncated += dropped > 0
        rows.append([e.id, int(index.curated(e)), code("status", fate.status), code("stage", fate_label(fate)),
                     code("reason", fate.reason or "kept"), code("source", e.source), d["language"], preview(e.instruction or last_turn(e.record, "assistant"))])
        lin = []
        for pid, found in lineage(index, e.id):
            lin.append([pid, preview(index.entries[pid].instruction, 100) if found else ""])
        meta = {k: e.meta[k] for k in ("operation", "round", "root_id", "teacher", "origin", "location", "redacted_from") if k in e.meta}
        details.append({
            "m": msgs, "x": dropped, "s": e.scores, "f": _compact(e.record.get("flags") or {}),
            "e": [[ev.run, ev.status, ev.stage, ev.reason, _compact(ev.evidence)] for ev in e.events],
            "l": lin, "p": e.parent_id, "meta": meta,
        })
    return Browser(facet_lists, rows, details, truncated)


# -- everything --------------------------------------------------------------------------------
@dataclass
class ReportData:
    """All the views of one report."""

    runs: list[Run]
    funnel: list[FunnelRow]
    totals: dict[str, int]
    histograms: list[Histogram]
    thresholds: list[Threshold]
    detection: DetectionCurve | None
    clusters: list[Cluster]
    breakdowns: dict[str, list[Group]]
    embedding: EmbeddingMap | None
    embedding_note: str
    browser: Browser
    index: Index
    training: TrainingView | None = None
    evaluation: EvalView | None = None
    ablation: AblationView | None = None
    warnings: list[str] = field(default_factory=list)


def build(paths: Sequence[str | Path], cache_dir: Path | None = None, train: str | Path | None = None,
          eval_path: str | Path | None = None, embeddings: bool = True, ablation: str | Path | dict[str, Any] | None = None,
          limit: int | None = None) -> ReportData:
    """Read the run directories (pipeline order) and compute every view. ``ablation`` is an
    ablation directory, its ``ablation.json``, or the document itself (as ``datagen ablate`` has it).
    ``limit``: the record views read only the first K records and rejections of each run."""
    from datagen.report.ablation_file import parse_ablation, read_ablation
    from datagen.report.training import read_eval, read_training

    runs = load_runs(paths, limit)
    abl = None if ablation is None else parse_ablation(ablation) if isinstance(ablation, dict) else read_ablation(ablation)
    index = build_index(runs)
    dims = {e.id: dimensions(e) for e in index}
    limits = thresholds(runs)
    hists = [h for h in (histogram(index, s, limits) for s in QUALITY_SCORES + LENGTH_SCORES) if h is not None]
    emb, note = None, "embedding map not requested"
    if embeddings:
        model, cached_at = embedding_settings(runs)
        if cache_dir is None:
            from datagen.core.kvcache import default_cache_dir

            cache_dir = Path(cached_at) if cached_at else default_cache_dir()
        emb, note = embedding_map(index, cache_dir, model)
    warnings = [f"{r.label}: the run is not complete (status {r.manifest.get('status', 'unknown')!r}); its files may be partial"
                for r in runs if not r.complete]
    if limit is not None:
        warnings.append(f"--limit {limit}: the records, figures and browser show the first {limit} records and rejections of each run; "
                        "the funnel counts the whole runs")
    return ReportData(
        runs=runs, funnel=funnel(runs), totals=index.totals(), histograms=hists, thresholds=limits,
        detection=detection_curve(runs), clusters=duplicate_clusters(index), breakdowns=breakdowns(index, dims),
        embedding=emb, embedding_note=note, browser=browser(index, dims), index=index,
        training=read_training(train) if train else None, evaluation=read_eval(eval_path) if eval_path else None,
        ablation=abl, warnings=warnings,
    )
