"""``datagen report --text``: the funnel and the most frequent rejection reasons, for a terminal."""

from __future__ import annotations

from collections.abc import Sequence

from .data import FunnelRow, Run, build_index, funnel, top_reasons


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
