"""One shape for every summary of numbers a run writes (stats.json's distributions, the
ablation's spreads over seeds)."""

from __future__ import annotations

import math

import pytest

from datagen.core.summary import distribution, spread, summarize


def test_the_same_keys_whether_or_not_there_is_anything_to_summarize():
    full = distribution([0.0, 1.0, 2.0, 3.0, float("nan"), None])
    empty = distribution([None, float("inf")])
    assert list(full) == list(empty) == ["count", "missing", "min", "max", "mean", "p10", "p25", "p50", "p75", "p90", "histogram"]
    assert (full["count"], full["missing"], full["p50"], full["mean"]) == (4, 2, 1.5, 1.5)
    counts = full["histogram"]["counts"]
    assert len(counts) == 20 and sum(counts) == 4 and counts[0] == counts[-1] == 1
    assert len(full["histogram"]["edges"]) == 21 and full["histogram"]["edges"][0] == 0.0 and full["histogram"]["edges"][-1] == 3.0
    assert empty["count"] == 0 and empty["missing"] == 2 and all(empty[k] is None for k in ("min", "mean", "p90", "histogram"))
    assert "missing" not in distribution([1.0])


def test_one_value_and_equal_values():
    one = spread([2.5])
    assert one == {"count": 1, "min": 2.5, "max": 2.5, "mean": 2.5, "std": 0.0}
    same = distribution([4.0] * 5)
    assert same["histogram"] == {"edges": [3.5, 4.5], "counts": [5]}


def test_std_is_the_sample_deviation_and_values_are_rounded():
    s = summarize([1.0, 2.0, 4.0], quantiles=(50,), std=True)
    assert s["std"] == pytest.approx(math.sqrt(7 / 3), abs=1e-6) and s["p50"] == 2.0
    assert summarize([1 / 3])["mean"] == 0.333333
