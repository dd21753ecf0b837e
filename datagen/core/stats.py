"""The ledger of a run: per stage, records in, records out and rejections per reason, plus
free-form extras. Every part of a run directory holds one; :mod:`datagen.core.runner` checks
``in == out + rejected`` before it seals a part, and the run's ``stats.json`` is their sum."""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable


class Stats:
    """Counts per stage: records in, records out, rejections per reason; plus free-form extras."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, Any]] = {}
        self.extra: dict[str, Any] = {}

    def stage(self, name: str) -> dict[str, Any]:
        return self.stages.setdefault(name, {"in": 0, "out": 0, "rejected": Counter()})

    @classmethod
    def of_read(cls, n_read: int, reasons: Iterable[str]) -> Stats:
        """The ``read`` stage's ledger: ``n_read`` records read, and a bad row skipped per reason."""
        st = cls()
        reasons = list(reasons)
        st.seen("read", n_read + len(reasons))
        st.kept("read", n_read)
        for reason in reasons:
            st.rejected("read", reason)
        return st

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
