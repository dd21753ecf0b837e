"""``datagen filter --executor ray``: the shard functions as Ray tasks on a real local cluster
(one of two CPUs for the module), with the local executor's contract and its output, byte for
byte."""

from __future__ import annotations

import json
import random
import sys

import pytest

from conftest import ROOT
from datagen.core import shards as core_shards
from datagen.core.errors import InputError, UserError
from datagen.core.source import InputSpec
from datagen.curate.pipeline import run_filter
from test_shards import STAGES, outputs, pool, write

try:
    import ray
except ImportError:  # the tests of a machine without it still run
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="Ray is not installed (pip install 'datagen-train[ray]')")


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module; the executors join it (and leave it running)."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the tasks defined here: the workers cannot import a test module
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield
    ray.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def square_after(x: int, delay: float) -> int:
    import time

    time.sleep(delay)
    return x * x


def fail_on(x: int, bad: int) -> int:
    if x == bad:
        raise UserError(f"task {x}: a mistake of the user's")
    if x > bad:
        raise RuntimeError("a later task's failure, never the one raised")
    return x


@needs_ray
def test_results_and_on_done_in_task_order(cluster):
    ex = core_shards.make_executor("ray")
    assert isinstance(ex, core_shards.RayExecutor) and ex.workers == 2  # the cluster's CPUs
    done = []
    got = ex.map(square_after, [(k, 0.3 if k == 0 else 0.0) for k in range(6)], lambda i, r: done.append((i, r)))  # the first ends last
    assert got == [0, 1, 4, 9, 16, 25] and done == list(enumerate(got))
    ex.close()
    assert ray.is_initialized()  # joined, not started here: left running


@needs_ray
def test_the_first_failure_in_order_keeps_its_type(cluster):
    ex = core_shards.make_executor("ray", workers=3)
    assert ex.workers == 3
    with pytest.raises(UserError) as err:
        ex.map(fail_on, [(k, 2) for k in range(5)])
    assert type(err.value) is UserError and str(err.value) == "task 2: a mistake of the user's"  # not Ray's wrapper: the CLI prints it, exit 2


@needs_ray
def test_every_stage_gives_the_local_output(tmp_path, monkeypatch, cluster):
    src = write(tmp_path / "in.jsonl", pool())
    stages, sets = "heuristics,exact,minhash,semantic,quality", ["quality.scorers=[complexity_features]"]  # quality without a model (complexity asks the judge LLM)
    run_filter(InputSpec(str(src)), tmp_path / "local", stages=stages, sets=sets, workers=1, cache_dir=tmp_path / "c1")
    want = outputs(tmp_path / "local")
    assert want[2]["stages"]["exact"]["rejected_total"] >= 40 and want[2]["stages"]["minhash"]["rejected_total"] >= 40
    monkeypatch.setattr(core_shards, "SHARD_BYTES", 700)  # dozens of shards, cut here in the driver: keys and decisions cross them
    assert len(core_shards.split(src, 2)) > 20
    run_filter(InputSpec(str(src)), tmp_path / "ray", stages=stages, sets=sets, executor="ray", cache_dir=tmp_path / "c2")  # embeds again
    assert outputs(tmp_path / "ray") == want
    assert list(want[2]["stages"]) == ["read", "heuristics", "exact", "minhash", "semantic", "quality"]


def scale_rows(n: int, seed: int = 0) -> list[dict]:
    """As ``bench/dedup.py``'s scale pool: sentences of the bundled seed tasks recombined into
    answers, with ~5% exact copies and ~5% near copies (one word changed, a sentence added)."""
    rng = random.Random(seed)
    texts = []
    for line in (ROOT / "seeds" / "175.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        texts += [row["instruction"]] + [inst["output"] for inst in row["instances"]]
    sentences = sorted({s.strip().rstrip(".") + "." for t in texts for s in t.split(". ") if len(s.split()) >= 5})
    rows: list[dict] = []
    while len(rows) < n:
        r = rng.random()
        if rows and r < 0.05:
            rows.append(dict(rng.choice(rows)))
        elif rows and r < 0.10:
            src = dict(rng.choice(rows))
            words = src["output"].split()
            words[rng.randrange(len(words))] = rng.choice(words)
            src["output"] = " ".join(words) + " Hope this helps."
            rows.append(src)
        else:
            topic = " ".join(rng.choice(sentences).split()[:6])
            body = " ".join(rng.choice(sentences) for _ in range(rng.randint(2, 8)))
            rows.append({"instruction": f"Explain this in your own words: {topic}", "input": "", "output": body})
    return rows


@needs_ray
def test_twenty_thousand_records_as_the_local_executor(tmp_path, monkeypatch, cluster):
    src = write(tmp_path / "in.jsonl", scale_rows(20_000))
    monkeypatch.setattr(core_shards, "SHARD_BYTES", 1 << 20)  # a dozen shards, read and filtered by both
    assert len(core_shards.split(src, 2)) >= 8
    run_filter(InputSpec(str(src)), tmp_path / "local", stages=STAGES, workers=2, cache_dir=tmp_path / "c")
    want = outputs(tmp_path / "local")
    assert want[2]["stages"]["exact"]["rejected_total"] > 500 and want[2]["stages"]["minhash"]["rejected_total"] > 500
    run_filter(InputSpec(str(src)), tmp_path / "ray", stages=STAGES, executor="ray", cache_dir=tmp_path / "c")
    assert outputs(tmp_path / "ray") == want


@needs_ray
def test_a_bad_row_read_on_the_cluster_is_a_user_error(tmp_path, monkeypatch, cluster):
    rows = [json.dumps(r) for r in pool()]
    rows[200] = json.dumps({"instruction": "x", "output": 5})
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.setattr(core_shards, "SHARD_BYTES", 700)
    with pytest.raises(InputError, match=r"in\.jsonl:201: field 'output'"):
        run_filter(InputSpec(str(src)), tmp_path / "run", stages=STAGES, executor="ray", cache_dir=tmp_path / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # no run directory, no half-read input


@needs_ray
def test_the_command_on_a_cluster_it_starts(tmp_path, cli):
    src = write(tmp_path / "in.jsonl", pool(60))
    r = cli("filter", "--input", src, "--out", tmp_path / "run", "--stages", STAGES, "--executor", "ray", "--workers", "2", "--cache-dir", tmp_path / "c")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "filter:" in r.stderr
    r = cli("filter", "--input", src, "--out", tmp_path / "one", "--stages", STAGES, "--workers", "1", "--cache-dir", tmp_path / "c")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "records.jsonl").read_bytes() == (tmp_path / "one" / "records.jsonl").read_bytes()


def test_ray_address_needs_the_ray_executor(tmp_path, cli):
    src = write(tmp_path / "in.jsonl", pool(5))
    r = cli("filter", "--input", src, "--out", tmp_path / "out", "--stages", STAGES, "--ray-address", "auto")
    assert r.returncode == 2 and "--ray-address needs --executor ray" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_without_ray_the_ray_executor_is_a_user_error(tmp_path):
    import subprocess

    src = write(tmp_path / "in.jsonl", pool(5))
    code = ("import sys; sys.modules['ray'] = None  # as if it were not installed\n"
            "from datagen.cli import main\n"
            f"sys.exit(main(['filter', '--input', {str(src)!r}, '--out', {str(tmp_path / 'out')!r}, '--executor', 'ray']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and "pip install 'datagen-train[ray]'" in r.stderr and "Traceback" not in r.stderr


@needs_ray
def test_the_executor_is_not_part_of_the_run(tmp_path, cluster):
    """A run started on one executor is the same run on the other: a rerun finds it complete."""
    from datagen.core.rundir import AlreadyComplete

    src = write(tmp_path / "in.jsonl", pool(60))
    run_filter(InputSpec(str(src)), tmp_path / "run", stages=STAGES, workers=1, cache_dir=tmp_path / "c")
    with pytest.raises(AlreadyComplete):
        run_filter(InputSpec(str(src)), tmp_path / "run", stages=STAGES, executor="ray", cache_dir=tmp_path / "c")



@needs_ray
def test_the_model_stages_run_on_actors_as_they_run_here(tmp_path, monkeypatch, cluster):
    """The encoder (semantic) and a scorer that loads a model (quality: IFD on SmolLM2) on a pool
    of actors, several batches each: the same bytes as in this process."""
    from datagen.curate import shards as curate_shards
    from datagen.score.embeddings import EmbeddingStore

    src = write(tmp_path / "in.jsonl", pool(10))
    stages, sets = "semantic,quality", ["semantic.batch_size=8", "quality.scorers=[ifd,complexity_features]", "quality.max_ifd=0.9"]
    monkeypatch.setattr(curate_shards, "MODEL_BATCH", 4)  # several batches of records for two scoring actors
    run_filter(InputSpec(str(src)), tmp_path / "local", stages=stages, sets=sets, workers=1, cache_dir=tmp_path / "c1")
    want = outputs(tmp_path / "local")
    assert want[2]["stages"]["semantic"]["rejected_total"] >= 1 and want[2]["extra"]["semantic"]["embedded"] > 16
    assert 0 < want[2]["stages"]["quality"]["rejected"].get("ifd_above_max", 0) < want[2]["stages"]["quality"]["in"]

    def not_here(*args):
        raise AssertionError("a model ran in the driver")

    monkeypatch.setattr(EmbeddingStore, "encode_batch", not_here)  # in this process only: the actors import their own
    monkeypatch.setattr(curate_shards.ModelWorker, "__call__", not_here)
    run_filter(InputSpec(str(src)), tmp_path / "ray", stages=stages, sets=sets, executor="ray", cache_dir=tmp_path / "c2")  # embeds and scores again
    assert outputs(tmp_path / "ray") == want


@needs_ray
def test_a_model_actor_asking_for_a_gpu_the_cluster_lacks_is_a_user_error(tmp_path, cluster):
    src = write(tmp_path / "in.jsonl", pool(6))
    with pytest.raises(UserError, match="num_gpus 1 per actor, but the Ray cluster has 0 GPUs"):
        run_filter(InputSpec(str(src)), tmp_path / "run", stages="semantic", sets=["semantic.num_gpus=1"], executor="ray", cache_dir=tmp_path / "c")
