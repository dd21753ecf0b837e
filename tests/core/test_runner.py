"""The runner every command goes through: parts, resume through ``restore``, the ledger, stops."""

from __future__ import annotations

import json

import pytest

from datagen.core.rundir import RunDir
from datagen.core.runner import Batch, Context, LedgerError, check_ledger, run_step
from datagen.core.errors import RunStopped
from datagen.core.record import Record


def _records(n: int) -> list[Record]:
    return [Record.from_turns(f"Question {i}?", f"Answer {i}.") for i in range(n)]


class Doubling:
    """A stateful step: batch k is only known once batch k-1 was processed or restored (its size
    doubles), like Evol-Instruct's rounds; every odd record is rejected."""

    name, unit = "doubling", "record"

    def __init__(self, pool: list[Record], rounds: int, stop_at: int | None = None) -> None:
        self.pool, self.rounds, self.stop_at = pool, rounds, stop_at
        self.size, self.processed, self.restored = 1, [], []

    def batches(self):
        start = 0
        for k in range(self.rounds):
            yield Batch(self.pool[start:start + self.size], self.size, {"round": k + 1})
            start += self.size
            self.size *= 2

    def process(self, batch: Batch, ctx: Context) -> list[Record]:
        if self.stop_at is not None and len(self.processed) == self.stop_at:
            raise RunStopped("budget spent")
        self.processed.append(len(batch.items))
        ctx.stats.seen("doubling", len(batch.items))
        kept = []
        for i, r in enumerate(batch.items):
            if i % 2:
                ctx.reject(r, "odd", {"i": i})
            else:
                kept.append(r)
        ctx.stats.kept("doubling", len(kept))
        return kept

    def restore(self, batch: Batch, part) -> None:
        self.restored.append(sum(1 for _ in part.records()))


def test_parts_resume_and_output_match_an_uninterrupted_run(tmp_path, capsys):
    pool = _records(15)  # batches of 1, 2, 4, 8
    ref = run_step(RunDir(tmp_path / "ref", "t", {}), Doubling(pool, 4), total=15, read=(15, []))
    step = Doubling(pool, 4, stop_at=2)
    with pytest.raises(RunStopped) as stopped:
        run_step(RunDir(tmp_path / "res", "t", {}), step, total=15, read=(15, []))
    assert stopped.value.pending == (12, 15, "records")  # 1 + 2 done of 15
    manifest = json.loads((tmp_path / "res" / "manifest.json").read_text())
    assert manifest["status"] == "stopped" and manifest["stopped"]["pending"] == 12
    again = Doubling(pool, 4)
    out = run_step(RunDir(tmp_path / "res", "t", {}), again, total=15, read=(15, []))
    assert again.restored == [1, 1] and again.processed == [4, 8]  # sealed parts restored, never redone
    assert "resuming" in capsys.readouterr().err
    for name in ("records.jsonl", "rejected.jsonl"):
        assert (tmp_path / "res" / name).read_text() == (tmp_path / "ref" / name).read_text()
    assert out["stages"] == ref["stages"] and out["stages"]["doubling"] == {
        "in": 15, "out": 8, "rejected": {"odd": 7}, "rejected_total": 7}
    assert out["stages"]["read"]["in"] == 15


def test_a_step_that_loses_or_invents_a_record_fails_before_its_part_is_sealed(tmp_path):
    class Losing(Doubling):
        def process(self, batch, ctx):
            kept = super().process(batch, ctx)
            return kept[:-1] if len(batch.items) == 4 else kept  # drops one without a rejection

    class Inventing(Doubling):
        def process(self, batch, ctx):
            kept = super().process(batch, ctx)
            if len(batch.items) == 4:
                ctx.stats.seen("doubling", 1)  # counted in, never came
            return kept

    for name, step, message in (("losing", Losing(_records(7), 3), "1 records kept but its last stage 'doubling' let 2 out"),
                                ("inventing", Inventing(_records(7), 3), "stage 'doubling' counted 5 in but 2 out \\+ 2 rejected")):
        with pytest.raises(LedgerError, match=f"doubling part 3: {message}"):
            run_step(RunDir(tmp_path / name, "t", {}), step, total=7)
        run = RunDir(tmp_path / name, "t", {})
        assert run.done_parts() == [1, 2]  # the failing third batch was never sealed
        run.release()


def test_check_ledger():
    check_ledger({"stages": {"a": {"in": 3, "out": 1, "rejected_total": 2}}}, "here")
    with pytest.raises(LedgerError, match="here: stage 'a'"):
        check_ledger({"stages": {"a": {"in": 3, "out": 2, "rejected_total": 2}}}, "here")


def test_parts_are_numbered_from_one_and_part_zero_is_only_the_read_stage(tmp_path):
    run = RunDir(tmp_path / "out", "t", {})
    parts = tmp_path / "out" / ".parts"
    step = Doubling(_records(3), 2)
    orig = step.process

    def spy(batch, ctx):
        spy.seen = sorted(p.name for p in parts.glob("part-*.done"))
        return orig(batch, ctx)

    step.process = spy
    run_step(run, step, total=3)
    assert spy.seen == ["part-000001.done"]  # no read part when nothing is read
