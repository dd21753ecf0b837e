"""The arms' data: the curated arm (``datagen filter`` then ``datagen select``, as the library
functions behind them) and the per-seed random draws."""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from datagen.report.ablation import BASELINE
from datagen.ablate.settings import AblationSettings, Arm, DEFAULT_FILTER_CONFIG

if TYPE_CHECKING:
    from datagen.core.record import Record


# -- arms -----------------------------------------------------------------------------------------------
def curate(s: AblationSettings) -> Path:
    """The curated arm: filter then select, as run directories under DIR/arms/curated/.
    Returns the selected records file. A finished run directory is reused."""
    from datagen.core.source import InputSpec
    from datagen.curate.pipeline import run_filter
    from datagen.curate.select.run import run_select
    from datagen.core.writing import atomic_open
    from datagen.core.rundir import AlreadyComplete

    base = s.out / "arms" / "curated"
    base.mkdir(parents=True, exist_ok=True)
    config = s.filter_config
    if config is None:
        config = str(base / "filter.yaml")
        with atomic_open(config) as f:
            f.write(DEFAULT_FILTER_CONFIG)
    filtered, selected = base / "filter", base / "select"
    steps = (
        (filtered, lambda: run_filter(s.pool_input(), filtered, stages=s.stages, config=config, cache_dir=s.cache_dir, force=s.force)),
        (selected, lambda: run_select(InputSpec(str(filtered / "records.jsonl")), selected, budget=s.budget, score=s.select_score,
                                      tau=s.tau, cache_dir=s.cache_dir, force=s.force)),
    )
    for out, step in steps:
        try:
            step()
        except AlreadyComplete:
            print(f"ablate: {out} already complete", file=sys.stderr)
    return selected / "records.jsonl"


def read_pool(s: AblationSettings) -> list[Record]:
    """The pool's records (its first ``--limit`` ones)."""
    return s.pool_input().read(lambda _: None)  # on_error "raise": a bad row raises, located


def random_arm(pool: Sequence[Record], n: int, seed: int) -> list[Record]:
    """``n`` records drawn uniformly without replacement from ``pool`` with ``random.Random(seed)``."""
    return random.Random(seed).sample(list(pool), min(n, len(pool)))


def build_arms(s: AblationSettings, seeds: Sequence[int]) -> dict[str, list[Arm]]:
    """Every arm's data file, per seed (the curated and full arms share one file across seeds)."""
    from datagen.core.io import read_records
    from datagen.core.writing import write_records
    from datagen.core.io import iter_jsonl
    from datagen.core.record import Record
    from datagen.core.rundir import file_digest

    curated = curate(s)
    pool = read_pool(s)
    n = sum(1 for _ in read_records(curated))
    if n < s.budget:
        print(f"ablate: the filter left only {n} records for a budget of {s.budget}; every arm gets {n}", file=sys.stderr)
    arms: dict[str, list[Arm]] = {"curated": [Arm("curated", k, curated, n, file_digest(curated)) for k in seeds]}
    draws = {BASELINE: pool}
    filtered = s.out / "arms" / "curated" / "filter"
    if s.filtered:
        draws["filtered"] = list(read_records(filtered / "records.jsonl"))
    if s.removed:
        draws["removed"] = [Record.model_validate(row["record"]) for row in iter_jsonl(filtered / "rejected.jsonl")]
        if len(draws["removed"]) < n:
            print(f"ablate: the filter removed only {len(draws['removed'])} records; the removed arm gets them all", file=sys.stderr)
    for name, source in draws.items():
        arms[name] = []
        for k in seeds:
            path = s.out / "arms" / f"{name}-s{k}" / "records.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            drawn = random_arm(source, n, k)
            write_records(path, drawn)  # cheap and deterministic: always rewritten
            arms[name].append(Arm(name, k, path, len(drawn), file_digest(path)))
    if s.full:
        path = Path(s.pool)
        if s.limit is not None or not path.is_file():  # the pool as the other arms saw it (a dataset folder or id: as records)
            path = s.out / "arms" / "full" / "records.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_records(path, pool)
        arms["full"] = [Arm("full", k, path, len(pool), file_digest(path)) for k in seeds]
    return arms
