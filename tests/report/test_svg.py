"""The report's chart primitives: round ticks, the data-to-pixel frame, escaping."""

from __future__ import annotations

from datagen.report import svg


def test_nice_ticks_are_round_and_cover_the_range():
    assert svg.nice_ticks(0, 1) == [0, 0.25, 0.5, 0.75, 1.0]
    assert svg.nice_ticks(0, 100) == [0, 25, 50, 75, 100]
    assert svg.nice_ticks(3, 3) == [3]
    ticks = svg.nice_ticks(0.13, 0.87, 4)
    assert ticks[0] >= 0.13 and ticks[-1] <= 0.87 and len(ticks) >= 3
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1  # evenly spaced


def test_fmt_keeps_integers_and_three_significant_digits():
    assert svg.fmt(3.0) == "3" and svg.fmt(0.123456) == "0.123" and svg.fmt(12345.678) == "1.23e+04"


def test_frame_maps_data_corners_to_the_plot_corners():
    f = svg.Frame(200, 100, (0.0, 10.0), (0.0, 1.0), left=20, bottom=10, top=5, right=5)
    assert f.px(0) == 20 and f.px(10) == 195
    assert f.py(0) == 90 and f.py(1) == 5
    flat = svg.Frame(200, 100, (2.0, 2.0), (1.0, 1.0))  # a single value still has a range
    assert flat.px(2.0) == (flat.left + flat.w - flat.right) / 2


def test_text_is_escaped_everywhere():
    out = str(svg.svg(10, 10, [], title='<script>"x"</script>'))
    assert "<script>" not in out and "&lt;script&gt;" in out and "&quot;x&quot;" in out
    frame = svg.Frame(100, 50, (0, 1), (0, 1))
    assert all("<b>" not in part for part in frame.axes(x_label="<b>x</b>", y_label="y"))
