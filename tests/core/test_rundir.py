"""Run directories: sealed parts survive interruption; final files appear only when complete."""

import json

import pytest

from datagen.core.errors import UserError
from datagen.core.record import Record, Rejection
from datagen.core.rundir import AlreadyComplete, RunDir
from datagen.core.stats import Stats


def recs(n, tag="r"):
    return [Record.from_turns(f"{tag} question {i}", f"answer {i}") for i in range(n)]


def test_parts_finalize_and_rerun(tmp_path):
    out = tmp_path / "run"
    run = RunDir(out, "demo", {"x": 1})
    for i in range(3):
        st = Stats()
        st.seen("s", 3)
        st.kept("s", 2)
        st.rejected("s", "too_short")
        rs = recs(3, tag=f"p{i}")
        run.write_part(i, rs[:2], [Rejection(stage="s", reason="too_short", evidence={"len": 1}, record=rs[2])], st)
    assert not (out / "records.jsonl").exists()  # nothing final before finalize
    stats = run.finalize({"models": {}})
    assert stats["records"] == 6 and stats["rejected"] == 3
    assert stats["stages"]["s"] == {"in": 9, "out": 6, "rejected": {"too_short": 3}, "rejected_total": 3}
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 6 and len(set(lines)) == 6
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["command"] == "demo"
    assert "python" in manifest["versions"]
    assert not (out / ".parts").exists()

    with pytest.raises(AlreadyComplete):
        RunDir(out, "demo", {"x": 1})
    with pytest.raises(UserError, match="different settings"):
        RunDir(out, "demo", {"x": 2})
    RunDir(out, "demo", {"x": 2}, force=True)
    assert not (out / "records.jsonl").exists()


def test_unsealed_part_is_redone(tmp_path):
    out = tmp_path / "run"
    run = RunDir(out, "demo", {"x": 1})
    run.write_part(0, recs(2), [], Stats())
    # a part whose marker never got written (killed mid-write) does not count
    (out / ".parts" / "part-000001.records.jsonl").write_text("garbage\n")
    again = RunDir(out, "demo", {"x": 1})
    assert again.done_parts() == [0]
    assert [r.id for r in again.part_records(0)] == [r.id for r in recs(2)]
    with pytest.raises(UserError, match="unfinished run with different settings"):
        RunDir(out, "demo", {"x": 3})


def test_refuses_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a datagen run directory"):
        RunDir(tmp_path, "demo", {})
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_outputs_get_ordinary_permissions(tmp_path):
    import os

    from datagen.core.writing import write_jsonl

    write_jsonl(tmp_path / "out.jsonl", [{"a": 1}])
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "out.jsonl").stat().st_mode & 0o777 == 0o666 & ~mask
