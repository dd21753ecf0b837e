"""Stages: streaming steps over records, each counting what came in, what went out and why the
rest was rejected.

A stage is a generator ``run(records, ctx) -> Iterator[Record]``. It yields the records it keeps
and calls ``ctx.reject(record, reason, evidence)`` for the ones it drops, so nothing leaves the
pipeline silently. :func:`run_stages` chains stages and does the counting; the ledger
``in == out + rejected`` holds for every stage by construction.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Iterable, Iterator, Protocol

from .record import Record, Rejection


class Stats:
    """Counts per stage: records in, records out, rejections per reason; plus free-form extras."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, Any]] = {}
        self.extra: dict[str, Any] = {}

    def stage(self, name: str) -> dict[str, Any]:
        return self.stages.setdefault(name, {"in": 0, "out": 0, "rejected": Counter()})

    def seen(self, stage: str, n: int = 1) -> None:
        self.stage(stage)["in"] += n

    def kept(self, stage: str, n: int = 1) -> None:
        self.stage(stage)["out"] += n

    def rejected(self, stage: str, reason: str, n: int = 1) -> None:
        self.stage(stage)["rejected"][reason] += n

    def merge(self, other: dict[str, Any]) -> None:
        """Add counts from another Stats' ``to_dict()`` (e.g. a finished part of a run)."""
        for name, s in other.get("stages", {}).items():
            mine = self.stage(name)
            mine["in"] += s.get("in", 0)
            mine["out"] += s.get("out", 0)
            mine["rejected"].update(s.get("rejected", {}))
        for k, v in other.get("extra", {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.extra[k] = self.extra.get(k, 0) + v
            elif isinstance(v, dict) and all(isinstance(x, (int, float)) for x in v.values()):
                d = self.extra.setdefault(k, {})
                for kk, vv in v.items():
                    d[kk] = d.get(kk, 0) + vv
            else:
                self.extra[k] = v

    def to_dict(self) -> dict[str, Any]:
        stages = {
            n: {"in": s["in"], "out": s["out"], "rejected": dict(sorted(s["rejected"].items())), "rejected_total": sum(s["rejected"].values())}
            for n, s in self.stages.items()
        }
        return {"stages": stages, "extra": self.extra}


class StageContext:
    def __init__(self, stats: Stats, on_reject: Callable[[Rejection], None]) -> None:
        self.stats = stats
        self._on_reject = on_reject
        self.current = ""

    def reject(self, record: Record | None, reason: str, evidence: dict[str, Any] | None = None, stage: str | None = None, **kw: Any) -> None:
        st = stage or self.current
        self.stats.rejected(st, reason)
        self._on_reject(Rejection(stage=st, reason=reason, evidence=evidence or {}, record=record, **kw))


class Stage(Protocol):
    name: str

    def run(self, records: Iterable[Record], ctx: StageContext) -> Iterator[Record]: ...


def _counted(it: Iterable[Record], fn: Callable[[int], None]) -> Iterator[Record]:
    for r in it:
        fn(1)
        yield r


def run_stages(records: Iterable[Record], stages: list[Stage], ctx: StageContext) -> Iterator[Record]:
    stream: Iterable[Record] = records
    for st in stages:
        stream = _counted(stream, lambda n, name=st.name: ctx.stats.seen(name, n))
        stream = _bind(st, stream, ctx)
        stream = _counted(stream, lambda n, name=st.name: ctx.stats.kept(name, n))
    return iter(stream)


def _bind(stage: Stage, stream: Iterable[Record], ctx: StageContext) -> Iterator[Record]:
    for rec in stage.run(_as_current(stream, ctx, stage.name), ctx):
        ctx.current = stage.name
        yield rec


def _as_current(stream: Iterable[Record], ctx: StageContext, name: str) -> Iterator[Record]:
    # Rejections made while a stage is pulling records are attributed to that stage.
    for rec in stream:
        ctx.current = name
        yield rec
