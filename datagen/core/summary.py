"""One shape for a summary of numbers, wherever a run writes one: a score's distribution in
``stats.json`` (filter, select), a metric's spread over seeds in ``ablation.json``.

``count`` (finite values), ``missing`` (NaN, inf or None, only when there are some), ``min``,
``max``, ``mean``, ``std`` (sample standard deviation, 0 for one value; when asked for), one
``pNN`` per quantile and a ``histogram`` (when asked for). A summary of nothing has the same
keys, each None, so that a reader never needs to ask whether a key is there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

QUANTILES = (10, 25, 50, 75, 90)
BINS = 20
DIGITS = 6


def summarize(values: Iterable[float | None], *, quantiles: Sequence[int] = QUANTILES, std: bool = False, bins: int = 0) -> dict[str, Any]:
    """The summary of ``values`` (see the module); ``bins`` > 0 adds a histogram of that many
    equal-width bins over [min, max] (``edges`` has ``bins + 1`` entries; one bin when every
    value is equal)."""
    import numpy as np

    raw = [v for v in values]
    finite = [float(v) for v in raw if v is not None and math.isfinite(float(v))]
    arr = np.array(finite, dtype=float)
    out: dict[str, Any] = {"count": int(arr.size)}
    if len(raw) != arr.size:
        out["missing"] = len(raw) - int(arr.size)
    keys = ["min", "max", "mean", *(["std"] if std else []), *(f"p{q}" for q in quantiles), *(["histogram"] if bins else [])]
    if not arr.size:
        return out | dict.fromkeys(keys)
    lo, hi = float(arr.min()), float(arr.max())
    out.update(min=_r(lo), max=_r(hi), mean=_r(float(arr.mean())))
    if std:
        out["std"] = _r(float(arr.std(ddof=1))) if arr.size > 1 else 0.0
    if quantiles:
        for q, v in zip(quantiles, np.percentile(arr, list(quantiles))):
            out[f"p{q}"] = _r(float(v))
    if bins:
        n_bins = bins if hi > lo else 1
        counts, edges = np.histogram(arr, bins=n_bins, range=(lo, hi) if hi > lo else (lo - 0.5, lo + 0.5))
        out["histogram"] = {"edges": [_r(float(e)) for e in edges], "counts": [int(c) for c in counts]}
    return out


def distribution(values: Iterable[float | None]) -> dict[str, Any]:
    """A score's distribution for ``stats.json``: the quantiles p10..p90 and a 20-bin histogram."""
    return summarize(values, bins=BINS)


def spread(values: Iterable[float | None]) -> dict[str, Any]:
    """A metric's spread over seeds: count, min, max, mean and std."""
    return summarize(values, quantiles=(), std=True)


def _r(x: float) -> float:
    return round(x, DIGITS)
