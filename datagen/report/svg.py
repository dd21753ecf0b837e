"""Small inline-SVG charts for the report: bars, stacked histograms, line charts, scatter plots, dot charts.

Each function returns SVG markup as :class:`markupsafe.Markup`; every piece of text in it goes
through :func:`esc`. Colours are CSS classes (``c0`` .. ``c9``, ``ok``, ``bad``, ``mark``) styled in
``report.css``, so the charts follow the page's palette.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

from markupsafe import Markup

PALETTE = 10  # colour classes c0..c9


def esc(x: object) -> str:
    return escape(str(x), quote=True)


def fmt(x: float) -> str:
    """A short number: integers as integers, others with 3 significant digits."""
    if x == int(x) and abs(x) < 1e9:
        return str(int(x))
    return f"{x:.3g}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks


class Frame:
    """A plotting area of ``w`` x ``h`` pixels with margins, mapping data to pixels."""

    def __init__(self, w: int, h: int, x: tuple[float, float], y: tuple[float, float], left: int = 44, bottom: int = 34, top: int = 12, right: int = 14) -> None:
        self.w, self.h = w, h
        self.left, self.bottom, self.top, self.right = left, bottom, top, right
        self.x0, self.x1 = x if x[1] > x[0] else (x[0] - 0.5, x[0] + 0.5)
        self.y0, self.y1 = y if y[1] > y[0] else (y[0] - 0.5, y[0] + 0.5)

    def px(self, x: float) -> float:
        return round(self.left + (x - self.x0) / (self.x1 - self.x0) * (self.w - self.left - self.right), 2)

    def py(self, y: float) -> float:
        return round(self.h - self.bottom - (y - self.y0) / (self.y1 - self.y0) * (self.h - self.top - self.bottom), 2)

    def axes(self, x_label: str = "", y_label: str = "", x_ticks: Sequence[float] | None = None, y_ticks: Sequence[float] | None = None,
             x_format: Callable[[float], str] = fmt) -> list[str]:
        out = [f'<line class="axis" x1="{self.left}" y1="{self.h - self.bottom}" x2="{self.w - self.right}" y2="{self.h - self.bottom}"/>',
               f'<line class="axis" x1="{self.left}" y1="{self.top}" x2="{self.left}" y2="{self.h - self.bottom}"/>']
        for t in x_ticks if x_ticks is not None else nice_ticks(self.x0, self.x1):
            if self.x0 - 1e-9 <= t <= self.x1 + 1e-9:
                out.append(f'<text class="tick" x="{self.px(t)}" y="{self.h - self.bottom + 13}" text-anchor="middle">{esc(x_format(t))}</text>')
        for t in y_ticks if y_ticks is not None else nice_ticks(self.y0, self.y1, 4):
            if self.y0 - 1e-9 <= t <= self.y1 + 1e-9:
                y = self.py(t)
                out.append(f'<line class="grid" x1="{self.left}" y1="{y}" x2="{self.w - self.right}" y2="{y}"/>')
                out.append(f'<text class="tick" x="{self.left - 4}" y="{y + 3}" text-anchor="end">{esc(fmt(t))}</text>')
        if x_label:
            out.append(f'<text class="label" x="{(self.left + self.w - self.right) / 2}" y="{self.h - 4}" text-anchor="middle">{esc(x_label)}</text>')
        if y_label:
            out.append(f'<text class="label" transform="translate(11 {(self.top + self.h - self.bottom) / 2}) rotate(-90)" text-anchor="middle">{esc(y_label)}</text>')
        return out

    def vmark(self, x: float, label: str, cls: str = "mark") -> list[str]:
        """A dashed vertical line at ``x`` with a label at the top."""
        X = self.px(x)
        anchor = "end" if X > (self.w - self.right) - 80 else "start"
        dx = -3 if anchor == "end" else 3
        return [f'<line class="{cls}" x1="{X}" y1="{self.top}" x2="{X}" y2="{self.h - self.bottom}"/>',
                f'<text class="{cls}-label" x="{X + dx}" y="{self.top + 10}" text-anchor="{anchor}">{esc(label)}</text>']


def svg(w: int, h: int, parts: Sequence[str], title: str, cls: str = "chart") -> Markup:
    body = "".join(parts)
    return Markup(f'<svg class="{cls}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{esc(title)}">'
                  f"<title>{esc(title)}</title>{body}</svg>")


def stacked_bar(segments: Sequence[tuple[float, str, str]], total: float, w: int = 300, h: int = 16) -> Markup:
    """One horizontal bar ``total`` wide (scaled to ``w``) made of ``(value, css class, tooltip)``
    segments, left to right."""
    parts, x = [], 0.0
    scale = w / total if total > 0 else 0.0
    for value, cls, tip in segments:
        if value <= 0:
            continue
        width = max(value * scale, 1.0)
        parts.append(f'<rect class="{cls}" x="{round(x, 2)}" y="0" width="{round(width, 2)}" height="{h}"><title>{esc(tip)}</title></rect>')
        x += width
    return Markup(f'<svg class="bar" viewBox="0 0 {w} {h}" width="{w}" height="{h}" aria-hidden="true">{"".join(parts)}</svg>')


def histogram(edges: Sequence[float], stacks: Sequence[tuple[Sequence[int], str, str]], marks: Sequence[tuple[float, str]], title: str,
              x_label: str, w: int = 440, h: int = 200) -> Markup:
    """Stacked histogram: ``stacks`` are ``(counts per bin, css class, name)``, drawn bottom up;
    ``marks`` are ``(x, label)`` thresholds."""
    n = len(edges) - 1
    tops = [sum(s[0][i] for s in stacks) for i in range(n)]
    f = Frame(w, h, (edges[0], edges[-1]), (0, max(tops + [1])))
    parts = f.axes(x_label, "records", y_ticks=[t for t in nice_ticks(0, max(tops + [1]), 4) if t == int(t)])
    for i in range(n):
        base = 0
        for counts, cls, name in stacks:
            c = counts[i]
            if not c:
                continue
            x, x2 = f.px(edges[i]), f.px(edges[i + 1])
            y, y2 = f.py(base + c), f.py(base)
            tip = f"{name}: {c} in [{fmt(edges[i])}, {fmt(edges[i + 1])})"
            parts.append(f'<rect class="{cls}" x="{x + 0.5}" y="{y}" width="{max(x2 - x - 1, 0.5)}" height="{round(y2 - y, 2)}"><title>{esc(tip)}</title></rect>')
            base += c
    for x, label in marks:
        parts += f.vmark(x, label)
    return svg(w, h, parts, title)


def line_chart(series: Sequence[tuple[Sequence[tuple[float, float]], str, str]], title: str, x_label: str, y_label: str,
               x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
               marks: Sequence[tuple[float, str]] = (), rug: Sequence[float] = (), dots: bool = False, w: int = 440, h: int = 220) -> Markup:
    """Lines through ``(points, css class, name)`` series; ``marks`` are vertical ``(x, label)``
    lines, ``rug`` short ticks on the x axis (e.g. observed values)."""
    xs = [p[0] for s in series for p in s[0]] or [0.0, 1.0]
    ys = [p[1] for s in series for p in s[0]] or [0.0, 1.0]
    xr = x_range or (min(xs), max(xs))
    yr = y_range or (min(0.0, min(ys)), max(ys))
    f = Frame(w, h, xr, yr)
    parts = f.axes(x_label, y_label)
    for pts, cls, name in series:
        if not pts:
            continue
        d = " ".join(f"{f.px(x)},{f.py(y)}" for x, y in pts)
        parts.append(f'<polyline class="line {cls}" points="{d}"><title>{esc(name)}</title></polyline>')
        if dots or len(pts) == 1:
            parts += [f'<circle class="dot {cls}" cx="{f.px(x)}" cy="{f.py(y)}" r="2.5"><title>{esc(f"{name}: {fmt(y)} at {fmt(x)}")}</title></circle>' for x, y in pts]
    for x in rug:
        X = f.px(x)
        parts.append(f'<line class="rug" x1="{X}" y1="{h - f.bottom}" x2="{X}" y2="{h - f.bottom - 7}"><title>{esc(fmt(x))}</title></line>')
    for x, label in marks:
        parts += f.vmark(x, label)
    return svg(w, h, parts, title)


def scatter(points: Sequence[tuple[float, float, int, str]], title: str, x_label: str, y_label: str, w: int = 640, h: int = 420) -> Markup:
    """Points ``(x, y, colour class index, record id)``; each circle carries ``data-id`` so the page
    script can open the record."""
    xs = [p[0] for p in points] or [0.0]
    ys = [p[1] for p in points] or [0.0]
    padx, pady = (max(xs) - min(xs)) * 0.03 or 0.5, (max(ys) - min(ys)) * 0.03 or 0.5
    f = Frame(w, h, (min(xs) - padx, max(xs) + padx), (min(ys) - pady, max(ys) + pady))
    parts = f.axes(x_label, y_label)
    parts += [f'<circle class="pt c{c % PALETTE}" cx="{f.px(x)}" cy="{f.py(y)}" r="3" data-id="{esc(rid)}"><title>{esc(rid)}</title></circle>'
              for x, y, c, rid in points]
    return svg(w, h, parts, title, cls="chart scatter")


def distinct_format(values: Sequence[float]) -> Callable[[float], str]:
    """A formatter with the fewest decimals (up to 8) that still tells ``values`` apart: tick labels
    of a narrow range (1.971, 1.972, ...) that :func:`fmt`'s 3 significant digits would merge."""
    for d in range(9):
        if len({f"{v:.{d}f}" for v in values}) == len(set(values)):
            return lambda x, d=d: f"{x:.{d}f}"
    return fmt


def dot_chart(rows: Sequence[tuple[str, Sequence[tuple[float, str]], str]], title: str, x_label: str, w: int = 560, row_h: int = 36) -> Markup:
    """One row per group ``(label, [(value, tooltip)], css class)``: a dot per value (spread
    vertically so that equal values stay visible), a grey bar from the group's smallest to its
    largest value and a tick at its mean; so a reader sees how far each group's values spread
    and whether the groups overlap."""
    values = [v for _, pts, _ in rows for v, _ in pts] or [0.0, 1.0]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or abs(lo) * 0.01 or 0.5
    shown = [label if len(label) <= 22 else label[:21] + "\u2026" for label, _, _ in rows]
    left = min(16 + 7 * max((len(label) for label in shown), default=4), 170)
    f = Frame(w, 12 + 34 + row_h * max(len(rows), 1), (lo - pad, hi + pad), (0, max(len(rows), 1)), left=left)
    ticks = [t for t in nice_ticks(lo - pad, hi + pad) if lo - pad <= t <= hi + pad]
    parts = f.axes(x_label, "", x_ticks=ticks, y_ticks=[], x_format=distinct_format(ticks))
    for i, ((label, pts, cls), name) in enumerate(zip(rows, shown)):
        y = f.py(len(rows) - i - 0.5)
        parts.append(f'<text class="label" x="{left - 6}" y="{y + 4}" text-anchor="end">{esc(name)}<title>{esc(label)}</title></text>')
        if not pts:
            continue
        xs = [v for v, _ in pts]
        mean = sum(xs) / len(xs)
        parts.append(f'<line class="range" x1="{f.px(min(xs))}" y1="{y}" x2="{f.px(max(xs))}" y2="{y}"/>')
        parts.append(f'<line class="meantick" x1="{f.px(mean)}" y1="{y - 11}" x2="{f.px(mean)}" y2="{y + 11}"><title>{esc(f"{label}: mean {fmt(mean)}")}</title></line>')
        step = min(5.0, (row_h - 14) / len(pts))
        for j, (v, tip) in enumerate(pts):
            dy = round((j - (len(pts) - 1) / 2) * step, 2)
            parts.append(f'<circle class="dot {cls}" cx="{f.px(v)}" cy="{y + dy}" r="4"><title>{esc(tip)}</title></circle>')
    return svg(f.w, f.h, parts, title)
