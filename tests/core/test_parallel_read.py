"""A large JSONL input read by several processes, each its byte range: the same records, the same
line numbers, the same rejections and the same first error as one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datagen.core import shards
from datagen.core.errors import InputError
from datagen.core.source import InputSpec


def rows(n: int) -> list[str]:
    return [json.dumps({"instruction": f"Question {k}?", "input": "", "output": f"Answer number {k}, in a few words."}) for k in range(n)]


def read(path, workers: int, on_error: str = "raise"):
    rejects = []
    out = path.with_suffix(f".out{workers}")
    n = InputSpec(str(path), on_error=on_error).write_records(out, rejects.append, workers)
    return n, out.read_text(encoding="utf-8"), [r.to_json() for r in rejects]


@pytest.fixture
def small_shards(monkeypatch):
    monkeypatch.setattr(shards, "SHARD_BYTES", 2000)  # dozens of shards: every boundary is crossed


def test_the_same_records_and_rejections_as_one_process(tmp_path, small_shards):
    lines = rows(300)
    lines[0] = "\ufeff" + lines[0]  # a byte-order mark on line 1
    lines[40] = "{not json"
    lines[41] = ""  # a blank line
    lines[177] = json.dumps({"instruction": "No answer field"})
    lines[299] = json.dumps({"instrution": "typo", "output": "x"})
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert len(shards.split(src, 2)) > 10
    one, two = read(src, 1, "skip"), read(src, 2, "skip")
    assert one == two and one[0] == 296
    assert [Path(json.loads(r)["location"]).name for r in two[2]] == ["in.jsonl:41", "in.jsonl:178", "in.jsonl:300"]
    assert '"origin": "in.jsonl:300"' not in two[1] and '"origin": "in.jsonl:299"' in two[1]


def test_the_first_bad_row_in_the_file_is_the_one_raised(tmp_path, small_shards):
    lines = rows(300)
    lines[250] = "{not json"
    lines[120] = json.dumps({"instruction": "x", "output": 5})
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as one:
        read(src, 1)
    with pytest.raises(InputError) as two:
        read(src, 2)
    assert str(two.value) == str(one.value) and two.value.location.endswith("in.jsonl:121")
    assert not list(tmp_path.glob("*.out2.*"))  # no shard left behind


def test_a_worker_that_dies_is_an_error_not_a_wait():
    import os
    from concurrent.futures.process import BrokenProcessPool

    ex = shards.Executor(2)
    try:
        assert ex.map(abs, [(-1,), (-2,), (3,)]) == [1, 2, 3]  # in order, from a pool
        with pytest.raises(BrokenProcessPool):
            ex.map(os._exit, [(1,), (1,)])  # the process ends without a word
        assert ex.map(abs, [(-4,), (5,)]) == [4, 5]  # a fresh pool after that
    finally:
        ex.close()


def test_map_and_the_detected_format_cross_to_the_workers(tmp_path, small_shards):
    lines = [json.dumps({"question": f"Question {k}?", "answer": f"Answer number {k}, in a few words."}) for k in range(300)]
    lines[120] = json.dumps({"question": "x"})
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def read_mapped(workers: int, on_error: str):
        rejects = []
        out = src.with_suffix(f".out{workers}")
        spec = InputSpec(str(src), on_error=on_error, columns="question=instruction,answer=output")
        return spec.write_records(out, rejects.append, workers), out.read_text(encoding="utf-8"), [r.to_json() for r in rejects]

    one, two = read_mapped(1, "skip"), read_mapped(2, "skip")
    assert one == two and one[0] == 299 and '"content": "Answer number 299, in a few words."' in two[1]
    assert "read as alpaca, detected from the first row" in json.loads(two[2][0])["evidence"]["error"]
    with pytest.raises(InputError) as e1:
        read_mapped(1, "raise")
    with pytest.raises(InputError) as e2:
        read_mapped(2, "raise")
    assert str(e2.value) == str(e1.value) and e2.value.location.endswith("in.jsonl:121")
