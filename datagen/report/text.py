"""``datagen report --text``: the funnel and the most frequent rejection reasons, for a terminal;
with ``--ablation``, the arms and the verdict of the ablation too."""

from __future__ import annotations

from collections.abc import Sequence

from datagen.report.ablation import metric_label, overall
from datagen.report.ablation_file import AblationView
from datagen.report.index import build_index
from datagen.report.runs import FunnelRow, Run, funnel, top_reasons


def summary(runs: Sequence[Run], n_reasons: int = 10) -> str:
    """Per stage ``in -> out (-rejected)`` with its reasons, then the top reasons overall and the
    distinct-record totals."""
    rows = funnel(runs)
    chain = " -> ".join(f"{r.label} ({r.command or '?'})" for r in runs)
    lines = [f"runs: {chain}", "", "funnel:"]
    lines += [_funnel_line(r) for r in rows if r.stage != "read" or r.rejected_total]
    totals = build_index(runs).totals()
    share = f" ({totals['curated'] / totals['records']:.0%})" if totals["records"] else ""
    lines += ["", f"records: {totals['records']} distinct, {totals['curated']} curated{share}, {totals['rejected']} rejected"
              + (f", {totals['other']} kept upstream only" if totals["other"] else "")]
    top = top_reasons(rows, n_reasons)
    if top:
        lines += ["", "top reasons:"]
        width = max(len(f"{run} > {stage}: {reason}") for run, stage, reason, _ in top)
        lines += [f"  {f'{run} > {stage}: {reason}':<{width}}  {c:>8}" for run, stage, reason, c in top]
    return "\n".join(lines)


def _funnel_line(r: FunnelRow) -> str:
    why = ", ".join(f"{k} {v}" for k, v in sorted(r.rejected.items(), key=lambda kv: (-kv[1], kv[0])) if v)
    line = f"  {r.run + ' > ' + r.stage:<28} {r.n_in:>8} -> {r.n_out:<8}"
    return (line + (f" -{r.rejected_total}: {why}" if r.rejected_total else "")).rstrip()


def ablation_summary(view: AblationView) -> str:
    """The arms (records, steps, gold loss and win rate as mean ± std [min, max], seeds) and one
    verdict line per arm compared with the random arm."""
    metrics = ("loss", "defect_rate", "win_rate") if any("defect_rate" in a.metrics for a in view.arms) else ("loss", "win_rate")
    table = [["arm", "records", "steps", *map(metric_label, metrics), "seeds"]]
    for arm in view.arms:
        cells = [arm.metrics[k].format(k) if k in arm.metrics else "–" for k in metrics]
        table.append([arm.name, str(arm.records if arm.records is not None else "–"), str(arm.steps if arm.steps is not None else "–"),
                      *cells, str(arm.seeds)])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [f"ablation: {view.path}" if view.path else "ablation:"]
    if view.settings:
        lines.append("  " + "; ".join(f"{k} {v}" for k, v in view.settings))
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    lines += (["", "verdict:"] + [f"  {v.sentence}" for v in view.verdicts] + [f"  {t}" for t in overall(view.verdicts)]
              if view.verdicts else ["", "verdict: no random arm to compare with"])
    return "\n".join(lines)
