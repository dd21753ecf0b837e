"""Score distributions for ``stats.json``: count, min, max, mean, quantiles and a histogram."""

from __future__ import annotations

import math
from typing import Any, Iterable

BINS = 20
QUANTILES = (10, 25, 50, 75, 90)


def distribution(values: Iterable[float], bins: int = BINS) -> dict[str, Any]:
    """Summary of the finite ``values``: ``count``, ``min``, ``max``, ``mean``, ``p10``..``p90`` and
    a ``histogram`` of ``bins`` equal-width bins over [min, max] (``edges`` has ``bins + 1``
    entries; one bin when every value is equal). ``missing`` counts NaN/inf values."""
    import numpy as np

    raw = [float(v) for v in values]
    arr = np.array([v for v in raw if math.isfinite(v)], dtype=float)
    out: dict[str, Any] = {"count": int(arr.size)}
    if len(raw) != arr.size:
        out["missing"] = len(raw) - int(arr.size)
    if not arr.size:
        return out
    lo, hi = float(arr.min()), float(arr.max())
    out.update(min=_r(lo), max=_r(hi), mean=_r(float(arr.mean())))
    for q, v in zip(QUANTILES, np.percentile(arr, QUANTILES)):
        out[f"p{q}"] = _r(float(v))
    n_bins = bins if hi > lo else 1
    counts, edges = np.histogram(arr, bins=n_bins, range=(lo, hi) if hi > lo else (lo - 0.5, lo + 0.5))
    out["histogram"] = {"edges": [_r(float(e)) for e in edges], "counts": [int(c) for c in counts]}
    return out


def _r(x: float) -> float:
    return round(x, 6)
