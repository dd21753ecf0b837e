"""Render :class:`~datagen.report.data.ReportData` into one self-contained HTML file.

The page is ``report.html`` (a jinja2 template, autoescaped) with ``report.css`` and ``report.js``
inlined; the charts are inline SVG drawn here (:mod:`.svg`). Nothing is fetched from the network:
no fonts, no images, no script library.

Safety: every string from the data reaches the page either through jinja2's autoescaping, through
:func:`~datagen.report.svg.esc`, or as JSON inside ``<script type="application/json">`` written by
:func:`script_json`, which escapes ``<``, ``>``, ``&`` and U+2028/U+2029 so that no text (not even
``</script>``) can end the element. The page script inserts data with ``textContent`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from markupsafe import Markup

from datagen.core.record import dumps_strict
from datagen.report import svg
from datagen.report.ablation import BASELINE, Spread, format_value, metric_label, overall
from datagen.report.data import ReportData, fate_label
from datagen.report.figures import Cluster, Histogram, word_diff
from datagen.report.index import MAX_TEXT_CHARS, Entry, Index

HERE = Path(__file__).resolve().parent
MAX_CLUSTERS = 12  # duplicate clusters shown
MAX_SIDE_BY_SIDE = 3  # duplicates shown beside each survivor
MAX_DIFF_CHARS = 1500  # text compared per record in a cluster
MAX_MAP_POINTS = 5000  # embedding map points (evenly thinned beyond this)
REASON_SLOTS = (0, 1, 3, 4, 5, 6, 8, 9, 7)  # palette slots for rejection reasons: no green (c2), which means kept
SCORE_TITLES = {"judge": "quality (judge, 1-5)", "ifd": "IFD (instruction-following difficulty)",
                "complexity": "complexity (judge, 1-6)", "complexity_features": "complexity features (0-1)",
                "relevance": "relevance (instruction-answer cosine)",
                "response_words": "answer length (words, a CJK character one)", "response_tokens": "answer length (tokens)"}

_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(obj: Any) -> Markup:
    """JSON safe to place inside ``<script type="application/json">``: the characters that could
    close the element or start markup are written as ``\\uXXXX`` escapes (still the same JSON)."""
    text = dumps_strict(obj, separators=(",", ":"), default=str)  # a NaN from an older run shows as null
    for ch, rep in _JSON_ESCAPES.items():
        text = text.replace(ch, rep)
    return Markup(text)


# -- views --------------------------------------------------------------------------------------
def funnel_view(data: ReportData) -> list[dict[str, Any]]:
    """Funnel rows for the table: a ``read`` stage that rejected nothing is left out (it repeats
    the next stage's input). Bars are scaled to the largest input."""
    rows = [r for r in data.funnel if r.stage != "read" or r.rejected_total]
    top = max((r.n_in for r in rows), default=1) or 1
    reasons = sorted({reason for r in rows for reason in r.rejected})
    colour = {reason: f"c{REASON_SLOTS[i % len(REASON_SLOTS)]}" for i, reason in enumerate(reasons)}
    out = []
    for r in rows:
        segs = [(r.n_out, "ok", f"kept: {r.n_out}")]
        items = sorted(r.rejected.items(), key=lambda kv: (-kv[1], kv[0]))
        segs += [(c, colour[reason], f"{reason}: {c}") for reason, c in items]
        out.append({"run": r.run, "stage": r.stage, "n_in": r.n_in, "n_out": r.n_out, "rejected": r.rejected_total,
                    "reasons": [(reason, c, colour[reason]) for reason, c in items if c],
                    "bar": svg.stacked_bar(segs, top, w=260)})
    return out


def histogram_view(h: Histogram) -> dict[str, Any]:
    marks = [(t.value, f"{t.bound} {svg.fmt(t.value)}") for t in h.thresholds]
    chart = svg.histogram(h.edges, [(h.curated, "ok", "curated"), (h.other, "muted", "not curated")], marks,
                          title=f"histogram of {h.score}", x_label=h.score)
    return {"score": h.score, "title": SCORE_TITLES.get(h.score, h.score), "chart": chart, "count": h.count,
            "curated": sum(h.curated), "thresholds": h.thresholds}


def detection_view(data: ReportData) -> dict[str, Any] | None:
    d = data.detection
    if d is None:
        return None
    chart = svg.line_chart([(d.points, "c0", f"P(candidate), b={d.bands}, r={d.rows}")], "MinHash LSH detection curve",
                           "Jaccard similarity s", "P(candidate)", x_range=(0, 1), y_range=(0, 1),
                           marks=[(d.threshold, f"threshold {svg.fmt(d.threshold)}")], rug=d.observed)
    return {"chart": chart, "bands": d.bands, "rows": d.rows, "threshold": d.threshold, "p": d.at_threshold,
            "observed": len(d.observed), "half": (1 / d.bands) ** (1 / d.rows)}


@dataclass
class Side:
    """One record in a cluster: its heading and its text as diff pieces against the survivor."""

    id: str
    heading: str
    pieces: list[tuple[str, str]]
    cut: bool


def _text(e: Entry | None) -> tuple[str, bool]:
    """A record as a duplicate cluster shows it: instruction, a blank line, response; cut."""
    if e is None:
        return "", False
    t = e.instruction + ("\n\n" + e.response if e.response else "")
    return (t, False) if len(t) <= MAX_DIFF_CHARS else (t[:MAX_DIFF_CHARS], True)


def cluster_view(c: Cluster, index: Index) -> dict[str, Any]:
    surv = index.entries.get(c.survivor)
    base, cut = _text(surv)
    fate = fate_label(surv.fate) + (f" ({surv.fate.reason})" if surv.fate.reason else "") if surv else "not in the given runs"
    sides = [Side(c.survivor, f"survivor · {fate}", [("=", base)] if surv else [("=", "(text not available)")], cut)]
    for m in c.members[:MAX_SIDE_BY_SIDE]:
        text, mcut = _text(index.entries.get(m.id))
        sim = f" {'J' if m.kind == 'minhash' else 'cos'} = {svg.fmt(m.similarity)}" if m.similarity is not None else ""
        sides.append(Side(m.id, f"{m.kind}{sim}", word_diff(base, text), mcut))
    kinds = ", ".join(c.kinds)
    return {"survivor": c.survivor, "size": c.size, "kinds": kinds, "sides": sides, "more": max(len(c.members) - MAX_SIDE_BY_SIDE, 0)}


MAP_CLASSES = ("curated", "rejected: dedup", "rejected: quality / heuristics", "rejected: select", "other",
               "rejected: benchmark overlap / personal data")
_DEDUP_STAGES = {"exact", "minhash", "semantic"}
_SAFETY_STAGES = {"decontaminate", "pii"}


def map_category(e: Entry, index: Index) -> int:
    """Colour of a record on the embedding map (an index into :data:`MAP_CLASSES`)."""
    if index.curated(e):
        return 0
    f = e.fate
    if f.status != "rejected":
        return 4
    if f.stage in _DEDUP_STAGES:
        return 1
    if f.stage in _SAFETY_STAGES:
        return 5
    if f.stage.startswith("select"):
        return 3
    return 2


def map_view(data: ReportData) -> dict[str, Any] | None:
    m = data.embedding
    if m is None:
        return None
    n = len(m.ids)
    step = max(1.0, n / MAX_MAP_POINTS)
    keep = sorted({int(i * step) for i in range(min(n, MAX_MAP_POINTS))})
    # map classes 0..4 to palette slots chosen for contrast: curated green, dedup orange, ...
    slot = {0: 2, 1: 1, 2: 3, 3: 4, 4: 7, 5: 5}
    pts = [(m.xy[i][0], m.xy[i][1], slot[map_category(data.index.entries[m.ids[i]], data.index)], m.ids[i]) for i in keep]
    counts = [0] * len(MAP_CLASSES)
    for i in keep:
        counts[map_category(data.index.entries[m.ids[i]], data.index)] += 1
    legend = [(name, f"c{slot[k]}", counts[k]) for k, name in enumerate(MAP_CLASSES) if counts[k]]
    chart = svg.scatter(pts, "PCA of the cached embeddings", f"PC1 ({m.explained[0]:.0%} of variance)", f"PC2 ({m.explained[1]:.0%})")
    return {"chart": chart, "legend": legend, "shown": len(keep), "embedded": n, "total": m.total, "model": m.model}


def training_view(data: ReportData) -> dict[str, Any] | None:
    t = data.training
    if t is None:
        return None
    chart = None
    if t.loss or t.eval_loss:
        chart = svg.line_chart([(t.loss, "c0", "training loss"), (t.eval_loss, "c1", "eval loss")], "loss curve", "step", "loss",
                               dots=len(t.eval_loss) < 60)
    return {"path": t.path, "chart": chart, "metrics": sorted(t.metrics.items()), "n_loss": len(t.loss), "n_eval": len(t.eval_loss),
            "last_loss": t.loss[-1][1] if t.loss else None, "last_eval": t.eval_loss[-1][1] if t.eval_loss else None}


ARM_SLOTS = (2, 0, 4, 1, 5, 6, 8, 9, 3)  # palette slots of the arms other than the baseline (grey, c7): curated green first


def ablation_view(data: ReportData) -> dict[str, Any] | None:
    """The ablation section: the verdicts, the arms table, the gold loss per seed as a dot chart,
    the per-seed rows and the curation's defect accounting."""
    a = data.ablation
    if a is None:
        return None
    others = [arm.name for arm in a.arms if arm.name != BASELINE]
    cls = {name: f"c{ARM_SLOTS[i % len(ARM_SLOTS)]}" for i, name in enumerate(others)} | {BASELINE: "c7"}
    chart = None
    if any(arm.values("loss") for arm in a.arms):
        rows = [(arm.name, [(v, f"{arm.name}, seed {seed}: gold loss {format_value('loss', v)}") for seed, v in arm.values("loss")], cls[arm.name])
                for arm in a.arms]
        chart = svg.dot_chart(rows, "gold loss per seed and arm", "gold loss per seed (lower is better)")
    arms = [{"name": arm.name, "cls": cls[arm.name], "records": arm.records, "steps": arm.steps, "seeds": arm.seeds,
             "cells": [arm.metrics[k].format(k) if k in arm.metrics else "–" for k in a.metrics]} for arm in a.arms]
    fields = a.seed_fields()
    per_seed = [{"arm": arm.name, "cells": [format_value(k, row.get(k)) for k in fields]} for arm in a.arms for row in arm.per_seed]
    order = {arm.name: i for i, arm in enumerate(a.arms)}
    defect_arms = sorted({name for d in a.defects for name in d.in_arm}, key=lambda n: (order.get(n, len(order)), n))
    defects = []
    for d in a.defects:
        counts = []
        for name in defect_arms:
            s = d.in_arm.get(name)
            counts.append(("–", "") if s is None or s.mean is None else (f"{s.mean:.1f}", f"± {s.std:.1f}" if s.std else ""))
        why = sorted(d.removed_by.items(), key=lambda kv: (-kv[1], kv[0]))
        defects.append({"tag": d.tag, "pool": d.pool, "after_filter": d.after_filter, "counts": counts, "removed_by": why,
                        "rate": f"{d.action} {d.rate:.0%}" if d.action and d.rate is not None else "–"})
    pct = {k: f"{v:.0%}" for k, v in (("removed", a.removed_by_filter_all_defects), ("precision", a.filter_precision)) if v is not None}
    # a verdict beyond seed noise is coloured: green for a lower gold loss or defect rate than the baseline, red for a higher one
    verdicts = [(v.sentence, ("good" if v.diff < 0 else "bad") if v.beyond_noise and v.diff else "") for v in a.verdicts]
    verdicts += [(t, "") for t in overall(a.verdicts)]
    return {"path": a.path, "baseline": BASELINE, "verdicts": verdicts, "settings": a.settings, "definitions": a.definitions,
            "columns": [metric_label(k) for k in a.metrics], "arms": arms, "chart": chart,
            "seed_fields": [metric_label(k) for k in fields], "per_seed": per_seed,
            "defect_arms": defect_arms, "defects": defects, "removed_by": any(d.removed_by for d in a.defects), "pct": pct,
            "near_duplicate_pairs": list(a.near_duplicate_pairs.items()), "notes": a.notes,
            "composition_columns": [_composition_label(k) for k in a.composition_columns()],
            "composition": [{"name": name, "cls": cls.get(name, ""),
                             "cells": [_composition_cell(k, row.get(k)) for k in a.composition_columns()]} for name, row in a.composition]}


def _composition_label(key: str) -> str:
    """``share_zh`` -> ``zh share``; ``answer_words`` -> ``answer words (mean)``."""
    return f"{key.removeprefix('share_')} share" if key.startswith("share_") else "answer words (mean)" if key == "answer_words" else key


def _composition_cell(key: str, sp: Spread | None) -> str:
    """A share as a percentage, a length as a number; ``± std`` when the draws differ."""
    if sp is None or sp.mean is None:
        return "–"
    pct = key.startswith("share_")
    text = f"{sp.mean:.0%}" if pct else f"{sp.mean:.1f}"
    if sp.std:
        text += f" ± {sp.std:.0%}" if pct else f" ± {sp.std:.1f}"
    return text


def _run_rows(data: ReportData) -> list[dict[str, Any]]:
    out = []
    for r in data.runs:
        out.append({"label": r.label, "command": r.command, "status": r.manifest.get("status", "?"), "path": str(r.path),
                    "records": r.stats.get("records", len(r.records)), "rejected": r.stats.get("rejected", len(r.rejected)),
                    "finished": r.manifest.get("finished", ""), "argv": " ".join(map(str, r.manifest.get("argv") or []))})
    return out


def _asset(name: str) -> Markup:
    return Markup((HERE / name).read_text(encoding="utf-8"))


def render(data: ReportData, title: str | None = None) -> str:
    """The whole page as a string."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE)), autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda x: f"{x:,}" if isinstance(x, int) else svg.fmt(x) if isinstance(x, float) else x
    env.filters["pct"] = lambda a, b: f"{a / b:.0%}" if b else "–"
    b = data.browser
    ctx = {
        "title": title or f"datagen report: {' → '.join(r.label for r in data.runs)}",
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": _run_rows(data), "warnings": data.warnings, "totals": data.totals, "funnel": funnel_view(data),
        "histograms": [histogram_view(h) for h in data.histograms], "thresholds": data.thresholds,
        "detection": detection_view(data),
        "clusters": [cluster_view(c, data.index) for c in data.clusters[:MAX_CLUSTERS]], "n_clusters": len(data.clusters),
        "n_duplicates": sum(len(c.members) for c in data.clusters),
        "map": map_view(data), "map_note": data.embedding_note,
        "breakdowns": data.breakdowns, "training": training_view(data), "evaluation": data.evaluation, "ablation": ablation_view(data),
        "n_records": len(b.rows), "truncated": b.truncated, "max_chars": MAX_TEXT_CHARS,
        "css": _asset("report.css"), "js": _asset("report.js"),
        "facets_json": script_json(b.facets), "rows_json": script_json(b.rows), "details_json": script_json(b.details),
    }
    return env.get_template("report.html").render(**ctx)


def write(data: ReportData, path: str | Path, title: str | None = None) -> Path:
    """Render and write atomically; returns the path."""
    from datagen.core.writing import atomic_open

    p = Path(path)
    with atomic_open(p) as f:
        f.write(render(data, title))
    return p
