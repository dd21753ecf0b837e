"""``datagen select --executor ray``: the input read and scanned by Ray tasks, the missing
embeddings computed by Ray actors, on a real local cluster; the same run directory as the local
executor, byte for byte."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from datagen.core import shards as core_shards
from datagen.core.errors import InputError
from datagen.core.record import Record
from datagen.core.rundir import AlreadyComplete
from datagen.core.source import InputSpec
from datagen.curate.select.run import Cluster, run_select
from test_ray_executor import needs_ray, scale_rows
from test_select import make_records, write
from test_shards import outputs


@pytest.fixture(scope="module")
def cluster():
    """A local cluster of 2 CPUs, started by the executor; the runs below join it."""
    ex = core_shards.make_executor("ray", workers=2)
    yield
    ex.close()


def scored_pool(n: int) -> list[Record]:
    """The select tests' pool and ``n`` recombined answers (~5% exact copies: one conversation
    under several scores, so that the id order needs the records' text), scored at random."""
    rng = random.Random(3)
    recs = make_records()
    for row in scale_rows(n, seed=1):
        scores = {"judge": round(rng.uniform(2.5, 5), 2), "complexity": rng.choice([1, 2, 3, 4]), "ifd": round(rng.uniform(0.2, 1.2), 3)}
        if rng.random() < 0.03:
            del scores["complexity"]
        recs.append(Record.from_turns(row["instruction"], row["output"], scores=scores))
    rng.shuffle(recs)
    return recs


ARGS = {"budget": 40, "mins": ["judge=3"], "maxs": ["ifd=1.0"], "tau": 0.8}


def cached_vectors(cache: Path) -> dict[str, np.ndarray]:
    [db] = cache.glob("embeddings/*/embeddings.sqlite")
    with sqlite3.connect(db) as conn:
        return {k: np.frombuffer(v, dtype=np.float32) for k, v in conn.execute("SELECT key, value FROM kv")}


@needs_ray
def test_select_on_ray_gives_the_local_run(tmp_path, monkeypatch, cluster):
    recs = scored_pool(300)
    assert len({r.id for r in recs}) < len(recs)  # repeated conversations
    src = write(tmp_path / "in.jsonl", recs)
    monkeypatch.setattr(core_shards, "SHARD_BYTES", 4000)  # dozens of shards, scanned by both executors
    assert len(core_shards.split(src, 1)) > 20
    run_select(InputSpec(str(src)), tmp_path / "local", cache_dir=tmp_path / "c1", **ARGS)
    want = outputs(tmp_path / "local")
    stats = want[2]
    assert stats["stages"]["select"]["rejected"]["too_similar"] > 0 and stats["stages"]["select"]["out"] == 40
    assert stats["extra"]["embeddings"]["computed"] > 150
    # the same cache: the records read and scanned by Ray tasks, the same run directory
    run_select(InputSpec(str(src)), tmp_path / "ray", cache_dir=tmp_path / "c1", executor="ray", **ARGS)
    got = outputs(tmp_path / "ray")
    assert got[2]["extra"]["embeddings"]["computed"] == 0
    got[2]["extra"]["embeddings"] = stats["extra"]["embeddings"]
    assert got == want
    # an empty cache: two actors embed the same batches into the same vectors, up to the last bits of
    # a float32 (the BLAS under torch may round a product differently from one call to the next)
    run_select(InputSpec(str(src)), tmp_path / "actors", cache_dir=tmp_path / "c2", executor="ray", cluster=Cluster(embed_actors=2), **ARGS)
    assert outputs(tmp_path / "actors")[2]["extra"]["embeddings"]["computed"] == stats["extra"]["embeddings"]["computed"]
    local, actors = cached_vectors(tmp_path / "c1"), cached_vectors(tmp_path / "c2")
    assert local.keys() == actors.keys()
    assert max(float(np.abs(local[k] - actors[k]).max()) for k in local) < 1e-5
    # the executor is not part of the run: the local run is complete for the Ray executor
    with pytest.raises(AlreadyComplete):
        run_select(InputSpec(str(src)), tmp_path / "local", cache_dir=tmp_path / "c2", executor="ray", **ARGS)


@needs_ray
def test_a_bad_row_scanned_on_the_cluster_leaves_nothing(tmp_path, monkeypatch, cluster):
    rows = [r.to_json() for r in scored_pool(100)]
    rows[70] = json.dumps({"instruction": "x", "output": 5})
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.setattr(core_shards, "SHARD_BYTES", 4000)
    with pytest.raises(InputError, match=r"in\.jsonl:71"):
        run_select(InputSpec(str(src)), tmp_path / "run", cache_dir=tmp_path / "c", executor="ray", **ARGS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
