"""LSH banding parameters for MinHash, computed here so the report can draw the detection curve.

A MinHash signature of ``num_perm`` values is cut into ``b`` bands of ``r`` rows (``b * r <=
num_perm``). Two sets of Jaccard similarity ``s`` agree on one row with probability ``s``, on a
whole band with ``s**r``, and become an LSH *candidate pair* when at least one band agrees:

    P(candidate | s) = 1 - (1 - s**r) ** b            (the S-curve, :func:`detection_probability`)

For a threshold ``t`` the best ``(b, r)`` minimizes

    w_fp * integral_0^t P(s) ds  +  w_fn * integral_t^1 (1 - P(s)) ds

(false-positive area left of the threshold plus false-negative area right of it), searched over
every ``b >= 2`` and ``r`` with ``b * r <= num_perm``, as datasketch's ``_optimal_param`` does. Because
every candidate pair is verified with the exact Jaccard of its shingle sets, a false positive only
costs one verification while a false negative is a duplicate that stays, so the default weights
favour recall (0.05, 0.95): 21 bands x 6 rows at t = 0.7 (detection 0.93 at J = 0.7, 0.998 at 0.8),
which on real text finds 0.997 of the pairs at J >= 0.7 where the earlier weights (0.2, 0.8),
18 x 7, found 0.985 (docs/BENCHMARKS.md), for 8-50% more candidates to verify.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

_GRID = 1001  # integration points on [0, 1] (Simpson's rule needs an odd count)


def detection_probability(s: float | np.ndarray, b: int, r: int) -> float | np.ndarray:
    """Probability that two sets of Jaccard similarity ``s`` share at least one of ``b`` bands of
    ``r`` rows: ``1 - (1 - s**r) ** b``."""
    return 1.0 - (1.0 - s**r) ** b


def _simpson(y: np.ndarray, x: np.ndarray) -> float:
    if len(x) < 3:  # trapezoid
        return float(((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2).sum())
    if len(x) % 2 == 0:  # Simpson needs an odd number of points: trapezoid on the last interval
        return _simpson(y[:-1], x[:-1]) + float((x[-1] - x[-2]) * (y[-1] + y[-2]) / 2)
    h = (x[-1] - x[0]) / (len(x) - 1)
    return float(h / 3 * (y[0] + y[-1] + 4 * y[1:-1:2].sum() + 2 * y[2:-1:2].sum()))


def error_areas(threshold: float, b: int, r: int) -> tuple[float, float]:
    """(false-positive area below ``threshold``, false-negative area above it) of the S-curve."""
    n_lo = max(3, int(round(_GRID * threshold)) | 1)
    n_hi = max(3, int(round(_GRID * (1 - threshold))) | 1)
    lo = np.linspace(0.0, threshold, n_lo)
    hi = np.linspace(threshold, 1.0, n_hi)
    fp = _simpson(detection_probability(lo, b, r), lo)
    fn = _simpson(1.0 - detection_probability(hi, b, r), hi)
    return fp, fn


@dataclass(frozen=True)
class LSHParams:
    """Chosen banding and what it costs: ``fp_area``/``fn_area`` are the weighted terms' areas."""

    threshold: float
    num_perm: int
    bands: int
    rows: int
    fp_weight: float
    fn_weight: float
    fp_area: float
    fn_area: float

    def probability(self, s: float) -> float:
        return float(detection_probability(s, self.bands, self.rows))

    def curve(self, points: int = 21) -> list[tuple[float, float]]:
        """(similarity, detection probability) samples of the S-curve, for reports."""
        return [(round(s, 4), round(self.probability(s), 6)) for s in np.linspace(0, 1, points)]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fp_area"], d["fn_area"] = round(self.fp_area, 6), round(self.fn_area, 6)
        d["detection_at"] = {f"{s:.2f}": round(self.probability(s), 4) for s in (0.5, 0.6, 0.7, 0.8, 0.9)}
        return d


@lru_cache(maxsize=64)
def optimal_params(threshold: float, num_perm: int, fp_weight: float = 0.2, fn_weight: float = 0.8) -> LSHParams:
    """The ``(bands, rows)`` minimizing ``fp_weight * fp_area + fn_weight * fn_area`` for
    ``threshold`` with ``b * r <= num_perm``. Ties go to the first found (fewest bands)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if num_perm < 2:
        raise ValueError("num_perm must be >= 2")
    best: tuple[float, int, int, float, float] | None = None
    for b in range(2, num_perm + 1):  # one band is no index at all (and datasketch refuses it)
        for r in range(1, num_perm // b + 1):
            fp, fn = error_areas(threshold, b, r)
            err = fp * fp_weight + fn * fn_weight
            if best is None or err < best[0]:
                best = (err, b, r, fp, fn)
    assert best is not None
    _, b, r, fp, fn = best
    return LSHParams(threshold, num_perm, b, r, fp_weight, fn_weight, fp, fn)
