"""The one timing helper of the bench scripts: the median of repeated runs."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """``(median seconds of repeat calls of fn, what the last call returned)``."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out
