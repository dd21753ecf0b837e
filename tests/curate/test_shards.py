"""The streaming stages over shards on disk: the same output for any number of shards and
workers, and the same decisions as the stages over a list."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from datagen.core.record import Record
from datagen.core.source import InputSpec
from datagen.core.stats import Stats
from datagen.core import shards as core_shards
from datagen.curate import registry
from datagen.curate.base import FilterContext
from datagen.curate.config import FilterConfig
from datagen.curate.pipeline import run_filter

EN = ("Regular exercise strengthens the heart and lungs, improves mood and sleep, and lowers the risk "
      "of many chronic diseases such as diabetes and high blood pressure.")
STAGES = "heuristics,exact,minhash"


def pool(n: int = 240, seed: int = 0) -> list[dict]:
    """Distinct answers, with exact copies, near copies (one word changed, a few words added)
    and answers that fail a heuristic, shuffled."""
    rng = random.Random(seed)
    words = EN.split()
    rows = []
    for k in range(n):
        body = " ".join(rng.sample(words, len(words)))
        rows.append({"instruction": f"Tell me about health, part {k}.", "input": "", "output": f"{body} Fact {k}."})
    for k in range(0, n, 6):
        rows.append(dict(rows[k]))  # exact copy
        rows.append({**rows[k], "output": rows[k]["output"] + " Stay active every day."})  # near copy
        rows.append({**rows[k], "output": rows[k]["output"].replace("heart", "hearts") + " Indeed."})  # near copy of it too
    rows += [{"instruction": "Say nothing.", "input": "", "output": " "}, {"instruction": "Repeat after me", "input": "", "output": "Repeat after me"}]
    rng.shuffle(rows)
    return rows


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def outputs(run: Path) -> tuple[str, str, dict]:
    stats = json.loads((run / "stats.json").read_text())
    for stage in stats["extra"].values():
        for k in [k for k in stage if k.startswith("seconds")] if isinstance(stage, dict) else ():
            del stage[k]
    stats["extra"].pop("seconds", None)
    stats["extra"].pop("wall_seconds_this_invocation", None)
    return (run / "records.jsonl").read_text(), (run / "rejected.jsonl").read_text(), stats


def test_split_covers_the_file_on_line_breaks(tmp_path):
    src = write(tmp_path / "in.jsonl", pool(60))
    data = src.read_bytes()
    for workers, size in ((1, 1 << 20), (3, 1 << 20), (2, 500), (4, 97)):
        parts = core_shards.split(src, workers, size)
        assert parts[0].start == 0 and parts[-1].end == len(data)
        assert all(a.end == b.start for a, b in zip(parts, parts[1:]))
        assert all(data[p.end - 1:p.end] == b"\n" for p in parts)
        assert len(parts) == 1 if len(data) <= size else len(parts) >= workers  # a small file is one shard: no pool
        assert [p.index for p in parts] == list(range(len(parts)))
        assert sum(len(list(core_shards.lines(p))) for p in parts) == data.count(b"\n")


def test_any_number_of_shards_and_workers_gives_the_same_run(tmp_path, monkeypatch):
    src = write(tmp_path / "in.jsonl", pool())
    run_filter(InputSpec(str(src)), tmp_path / "one", stages=STAGES, workers=1, cache_dir=tmp_path / "c")
    want = outputs(tmp_path / "one")
    assert want[2]["stages"]["exact"]["rejected_total"] >= 40 and want[2]["stages"]["minhash"]["rejected_total"] >= 40
    monkeypatch.setattr(core_shards, "SHARD_BYTES", 700)  # dozens of shards in this process: keys, fetches and decisions cross them
    run_filter(InputSpec(str(src)), tmp_path / "many", stages=STAGES, workers=1, cache_dir=tmp_path / "c")
    assert outputs(tmp_path / "many") == want
    run_filter(InputSpec(str(src)), tmp_path / "two", stages=STAGES, workers=2, cache_dir=tmp_path / "c")  # a pool of processes
    assert outputs(tmp_path / "two") == want


def test_the_stream_decides_as_the_stages_over_a_list(tmp_path):
    rows = pool(120, seed=3)
    recs = [Record.from_turns(r["instruction"], r["output"]) for r in rows]
    recs[5].flags["exact"] = {"duplicate_of": "0000000000000000", "group_size": 2}  # an earlier run's flag: not a verdict now
    src = tmp_path / "in.jsonl"
    src.write_text("".join(r.to_json() + "\n" for r in recs), encoding="utf-8")
    run_filter(InputSpec(str(src), format="record"), tmp_path / "run", stages=STAGES, workers=1, cache_dir=tmp_path / "c")
    kept_stream = (tmp_path / "run" / "records.jsonl").read_text()

    cfg = FilterConfig()
    survivors = InputSpec(str(src), format="record").read(lambda rejection: None)  # read as the filter reads it
    for stage in registry.build_stages(["heuristics", "exact", "minhash"], cfg):
        stage.annotate(survivors, FilterContext(stats=Stats(), cache_dir=tmp_path / "c", progress=False))
        survivors = [r for r in survivors if stage.verdict(r) is None]
    assert kept_stream == "".join(r.to_json() + "\n" for r in survivors)
    assert "0000000000000000" not in kept_stream  # the stale flag is gone, as annotate drops it


def test_a_bad_row_leaves_nothing_behind(tmp_path, cli):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"instruction": "ok", "output": "fine answer here"}) + "\n" + '{"instrution": "x"}\n', encoding="utf-8")
    r = cli("filter", "--input", src, "--out", tmp_path / "out", "--stages", STAGES)
    assert r.returncode == 2 and "in.jsonl:2" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # no run directory, no half-read input


def test_workers_must_be_positive(tmp_path, cli):
    src = write(tmp_path / "in.jsonl", pool(5))
    r = cli("filter", "--input", src, "--out", tmp_path / "out", "--stages", STAGES, "--workers", "0")
    assert r.returncode == 2 and "--workers must be >= 1" in r.stderr


@pytest.mark.parametrize("stage", ["exact", "minhash"])
def test_keys_are_compact(stage):
    st = registry.build_stage(stage, FilterConfig())
    recs = [Record.from_turns(f"q {k}", EN + f" {k}" * 50) for k in range(64)]
    keys = st.keys(recs)
    per_record = sum(v.nbytes for v in keys.values()) / len(recs)
    assert per_record <= 200, per_record  # a digest or band keys, and the rank: never the text


def test_a_stage_whose_input_is_empty(tmp_path):
    src = write(tmp_path / "in.jsonl", [{"instruction": "Say nothing.", "input": "", "output": " "}] * 3)  # every one fails a heuristic
    doc = run_filter(InputSpec(str(src)), tmp_path / "run", stages=STAGES, workers=1, cache_dir=tmp_path / "c")
    assert doc["records"] == 0 and doc["rejected"] == 3
    assert doc["stages"]["exact"]["in"] == 0 and doc["stages"]["minhash"]["in"] == 0


def annotated_rows(n: int = 90) -> list[Record]:
    """The pool's records as a run holds them: some with a judge score (the survivor's rank),
    some with what an earlier semantic run wrote (cleared and written again)."""
    recs = [Record.from_turns(r["instruction"], r["output"]) for r in pool(n, seed=5)]
    for k, rec in enumerate(recs):
        if k % 3 == 0:
            rec.scores["judge"] = float(k % 5)
        if k % 7 == 0:
            rec.flags["semantic_duplicate_of"] = "0000000000000000"
            rec.scores["relevance"] = -1.0
    recs.append(Record.from_turns("Give three tips for sleeping better.", "The French Revolution began in 1789 when financial crisis "
                                  "and food shortages pushed the Third Estate to declare itself a National Assembly."))  # off topic
    return recs


@pytest.mark.parametrize("sets", [[], ["semantic.engine=cascade", "semantic.relevance_screen=0.5", "semantic.candidate_threshold=0.5"]],
                         ids=["encoder", "cascade"])
def test_the_semantic_stage_streams_as_it_decides_over_a_list(tmp_path, monkeypatch, sets):
    recs = annotated_rows()
    src = tmp_path / "in.jsonl"
    src.write_text("".join(r.to_json() + "\n" for r in recs), encoding="utf-8")
    monkeypatch.setattr(core_shards, "SHARD_BYTES", 3000)  # shards of a few records: keys, offsets and decisions cross them
    cache = tmp_path / "c"
    run_filter(InputSpec(str(src), format="record"), tmp_path / "run", stages="semantic", sets=sets, workers=1, cache_dir=cache)
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert stats["stages"]["semantic"]["rejected"]["semantic_duplicate"] >= 10 and stats["stages"]["semantic"]["rejected"]["off_topic"] >= 1

    from datagen.curate.config import load_config

    stage = registry.build_stages(["semantic"], load_config(None, sets))[0]
    listed = InputSpec(str(src), format="record").read(lambda rejection: None)
    st = Stats()
    if (cache / "models").is_dir():  # the cascade's static model: distilled once
        shutil.copytree(cache / "models", tmp_path / "fresh" / "models")
    stage.annotate(listed, FilterContext(stats=st, cache_dir=tmp_path / "fresh", progress=False))  # embeds again, in the same batches
    kept = [r for r in listed if stage.verdict(r) is None]
    assert (tmp_path / "run" / "records.jsonl").read_text() == "".join(r.to_json() + "\n" for r in kept)
    dropped = [json.loads(x)["record"]["id"] for x in (tmp_path / "run" / "rejected.jsonl").read_text().splitlines()]
    assert dropped == [r.id for r in listed if stage.verdict(r) is not None]
    assert "0000000000000000" not in (tmp_path / "run" / "records.jsonl").read_text()
    want = {k: v for k, v in st.extra["semantic"].items()}
    assert {k: v for k, v in stats["extra"]["semantic"].items() if not k.startswith("seconds")} == want
    assert stats["extra"]["scores"]["semantic"]["relevance"]["count"] == sum(1 for r in listed if "relevance" in r.scores) > 0


def test_the_semantic_keys_hold_no_text():
    st = registry.build_stage("semantic", FilterConfig())
    recs = [Record.from_turns(f"q {k}", EN + f" {k}" * 200) for k in range(64)]
    per_record = sum(v.nbytes for v in st.keys(recs).values()) / len(recs)
    assert per_record <= 200, per_record  # three cache keys, two lengths, the rank: never the text


def test_batches_end_at_a_count_or_at_a_size_in_bytes(tmp_path):
    from datagen.curate.shards import batches

    rows = pool(50, seed=4)
    rows[10]["output"] = "long " * 5000  # one record of ~25 KB among short ones
    src = write(tmp_path / "in.jsonl", rows)
    shard = core_shards.split(src, 1)[0]
    lines = list(core_shards.lines(shard))
    by_count = list(batches(shard, 16))
    assert [len(b) for b in by_count] == [16] * (len(lines) // 16) + ([len(lines) % 16] if len(lines) % 16 else [])
    by_bytes = list(batches(shard, 16, max_bytes=4096))
    assert [line for b in by_bytes for line in b] == lines  # every line once, in order
    for b in by_bytes:
        assert len(b) <= 16 and sum(map(len, b[:-1])) < 4096  # a batch ends at the line that reaches the bound
    long = next(b for b in by_bytes if any(len(line) > 20_000 for line in b))
    assert len(long[-1]) > 20_000 and len(by_bytes) > len(by_count)  # the long record ends its batch


def test_embedding_chunks_are_whole_batches_bounded_in_characters(monkeypatch):
    from datagen.score import embeddings

    monkeypatch.setattr(embeddings, "_CHUNK_CHARS", 1000)
    lengths = [400] * 10 + [5] * 2000  # longest first, as the store orders its misses
    chunks = list(embeddings._chunks(lengths, 4))
    assert chunks[0] == (0, 4) and chunks[1] == (4, 8)  # 1,600 characters a batch: one batch a chunk
    assert all(a == b for (_, a), (b, _) in zip(chunks, chunks[1:])) and chunks[-1][1] == len(lengths)
    assert all((j - i) % 4 == 0 or j == len(lengths) for i, j in chunks)  # whole batches: the batches do not move
    assert max(j - i for i, j in chunks) == 4 * embeddings._CHUNK_BATCHES  # short texts: the count bounds the chunk


def test_the_quality_stage_streams_in_batches_as_over_a_list(tmp_path, monkeypatch):
    from datagen.curate import shards as curate_shards

    rows = pool(100, seed=2)
    for k in range(0, len(rows), 2):
        rows[k]["instruction"] += " You must answer in at least three steps: first explain, then summarize."
    src = write(tmp_path / "in.jsonl", rows)
    sets = ["quality.scorers=[complexity_features]", "quality.min_complexity_features=0.12"]
    monkeypatch.setattr(curate_shards, "MODEL_BATCH", 16)  # batches of 16: the scores, decisions and counts add up across them
    run_filter(InputSpec(str(src)), tmp_path / "run", stages="quality", sets=sets, workers=1, cache_dir=tmp_path / "c")
    from datagen.curate.config import load_config

    stage = registry.build_stages(["quality"], load_config(None, sets))[0]
    listed = InputSpec(str(src)).read(lambda rejection: None)
    stage.annotate(listed, FilterContext(stats=Stats(), cache_dir=tmp_path / "c", progress=False))
    kept = [r for r in listed if stage.verdict(r) is None]
    assert 0 < len(kept) < len(listed)
    assert (tmp_path / "run" / "records.jsonl").read_text() == "".join(r.to_json() + "\n" for r in kept)
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert stats["stages"]["quality"]["in"] == len(listed) and stats["extra"]["scores"]["quality"]["complexity_features"]["count"] == len(listed)
