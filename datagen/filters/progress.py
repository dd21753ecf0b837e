"""Progress bars for curation stages: tqdm on stderr, off with ``DATAGEN_PROGRESS=0``, with
``ctx.progress`` false, or for fewer than two items."""

from __future__ import annotations

import os
import sys
from typing import Any

from .base import FilterContext


def progress(ctx: FilterContext | None, total: int, desc: str, unit: str = "rec") -> Any:
    """A tqdm bar (a no-op bar when hidden); use as a context manager and call ``update(n)``."""
    from tqdm import tqdm

    hidden = (ctx is not None and not ctx.progress) or os.environ.get("DATAGEN_PROGRESS") == "0" or total < 2
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=hidden, leave=False)
