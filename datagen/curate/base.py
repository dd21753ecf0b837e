"""The curation stage interface (dolma's split: taggers score, a separate decision drops).

A curation stage does two things, kept apart on purpose:

* ``annotate(records, ctx)`` measures: it writes raw scores into ``record.scores`` and facts into
  ``record.flags`` (``duplicate_of``, ``jaccard``, reason codes...). It may call models, and it is
  the expensive half; its results are stored with the records, so it never needs to run twice.
* ``verdict(record)`` decides, from the stored annotations and the stage's thresholds alone:
  ``None`` keeps the record, ``(reason, evidence)`` drops it. It is instant, so changing a
  threshold never re-runs a model.

A stage sees the survivors of the stages before it, in input order. Stages that compare records
(exact, MinHash and semantic dedup) annotate the whole list at once; per-record stages may annotate
in batches. A record that a stage fails to score gets a flag ``<stage>_error`` and a verdict with
reason ``score_failed``: never a silent default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from datagen.core.record import Record
from datagen.core.stats import Stats

Verdict = tuple[str, dict[str, Any]] | None


@dataclass
class FilterContext:
    """What a stage may use while annotating."""

    stats: Stats
    cache_dir: Path  # on-disk caches (embeddings, scores), shared across runs
    llm_factory: Callable[[], Any] | None = None  # builds the configured LLM lazily (judge, IFD)
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    executor: Any = None  # where the shards run (core.shards); on Ray, the model stages run their models on actors


class FilterStage(Protocol):
    name: str  # "heuristics", "exact", "minhash", "semantic", "quality"

    def annotate(self, records: list[Record], ctx: FilterContext) -> None: ...

    def verdict(self, record: Record) -> Verdict: ...

    def describe(self) -> dict[str, Any]:
        """Settings for the manifest and the report (e.g. MinHash num_perm, bands, rows)."""
        ...
