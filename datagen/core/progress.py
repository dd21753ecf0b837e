"""Progress bars: tqdm on stderr, one switch for all of them (``DATAGEN_PROGRESS=0`` hides every
bar: commands, stages, backends, the trainer)."""

from __future__ import annotations

import os
import sys
from typing import Any


def progress_enabled(wanted: bool = True) -> bool:
    """Whether progress shows: ``wanted`` by the caller and not turned off by ``DATAGEN_PROGRESS=0``."""
    return wanted and os.environ.get("DATAGEN_PROGRESS", "1") != "0"


def bar(total: int, desc: str, unit: str = "rec", *, show: bool = True, min_total: int = 2, **kw: Any) -> Any:
    """A tqdm bar on stderr (a no-op bar when hidden: not ``show``, switched off, or fewer than
    ``min_total`` items, where a bar would only flicker); use as a context manager and call ``update(n)``."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not progress_enabled(show) or total < min_total, **kw)
