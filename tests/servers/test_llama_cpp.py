"""The commands against a real llama.cpp server (llama-cpp-python), started here on 127.0.0.1.

This tier runs with ``make test-servers``, which builds llama-cpp-python once into the project's
environment (about 12 minutes on 2 cores; later runs reuse the built wheel) and sets
``DATAGEN_TEST_SERVERS=1``. The server serves the embedded SmolLM2-135M GGUF on one thread,
once with logprobs and once without (``--logits_all false``: every request asking for them is
answered with HTTP 500, which must be learnt as a missing capability, never taken for an outage).

The tests assert outcomes (every prompt answered, every record scored and the method recorded,
nothing rejected for the server's sake, nothing lost), not the model's wording.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = [
    pytest.mark.servers,
    pytest.mark.skipif(os.environ.get("DATAGEN_TEST_SERVERS") != "1", reason="the real-server tier: make test-servers"),
]

ALIAS = "smollm2"


@pytest.fixture(scope="module")
def no_logprobs():
    from datagen.llm.llama_server import LlamaServer, embedded_gguf

    with LlamaServer(embedded_gguf(), alias=ALIAS, logprobs=False) as srv:
        yield srv.url


@pytest.fixture(scope="module")
def with_logprobs():
    from datagen.llm.llama_server import LlamaServer, embedded_gguf

    with LlamaServer(embedded_gguf(), alias=ALIAS, logprobs=True) as srv:
        yield srv.url


def datagen(*args, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATAGEN_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "datagen.cli", *map(str, args)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=kw.get("timeout", 900))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    return r


def server_args(url: str, cache: Path) -> list[str]:
    return ["--llm", "openai", "--model", ALIAS, "--base-url", url, "--cache", str(cache), "--concurrency", "4"]


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def prompts(tmp_path: Path, n: int) -> Path:
    src = tmp_path / "prompts.jsonl"
    rows = [json.loads(x) for x in (ROOT / "seeds" / "175.jsonl").read_text().splitlines()[:n]]
    src.write_text("".join(json.dumps({"instruction": r["instruction"]}) + "\n" for r in rows))
    return src


def capabilities(run: Path, role: str = "teacher") -> dict:
    return json.loads((run / "manifest.json").read_text())["models"][role]["capabilities"]


def distill_best_of_3(url: str, tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    datagen("distill", "--input", prompts(tmp_path, 6), "--out", out, "--n", "3", "--max-new-tokens", "48",
            *server_args(url, tmp_path / f"{name}.sqlite"))
    return out


def test_distill_best_of_3_without_logprobs(no_logprobs, tmp_path):
    out = distill_best_of_3(no_logprobs, tmp_path, "nolp")
    caps = capabilities(out)
    assert "logprobs" in caps["refused"] and caps["server"] == "llama.cpp" and caps["models"] == [ALIAS]
    assert caps["slots"] == 1  # llama-cpp-python serves one request at a time: concurrency 4 -> 1
    records = lines(out / "records.jsonl")
    assert len(records) == 6  # every prompt answered
    for r in records:
        best = r["meta"]["best_of_n"]
        assert best["n"] == 3 and all(c.get("method") in ("json", "digit", "unparsed") for c in best["candidates"] if "rejected" not in c)
        # the server constrained the judge's reply to {"rating": k}: every candidate was rated
        assert all(s is not None for s in best["scores"]), best
    assert capabilities(out)["structured_output"] == "json_object+schema"
    assert {j["reason"] for j in lines(out / "rejected.jsonl")} <= {"not_best_of_n", "empty_answer"}


def test_filter_quality_scores_every_record_without_logprobs(no_logprobs, tmp_path):
    pool = distill_best_of_3(no_logprobs, tmp_path, "pool")
    cfg = tmp_path / "q.yaml"
    cfg.write_text("quality:\n  scorers: [judge, complexity]\n")
    out = tmp_path / "filter"
    datagen("filter", "--input", pool / "records.jsonl", "--out", out, "--stages", "quality", "--config", cfg,
            *server_args(no_logprobs, tmp_path / "f.sqlite"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert "logprobs" in manifest["models"]["judge"]["capabilities"]["refused"]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["extra"]["llm"]["requests"] > 0 and stats["extra"]["llm"]["failures"] == 0
    kept = lines(out / "records.jsonl")
    rejected = [j for j in lines(out / "rejected.jsonl") if j["stage"] == "quality"]
    assert not [j for j in rejected if j["reason"] == "score_failed"]  # every record got its scores
    for r in kept:
        for scorer in ("judge", "complexity"):
            assert scorer in r["scores"] and r["flags"][scorer]["method"] == "json" and r["flags"][scorer]["model"]


def test_evolve_and_self_instruct_without_logprobs(no_logprobs, tmp_path):
    evolve = tmp_path / "evolve"
    datagen("evolve", "--seeds", ROOT / "seeds" / "175.jsonl", "--limit", "3", "--rounds", "1", "--out", evolve,
            "--max-new-tokens", "64", *server_args(no_logprobs, tmp_path / "e.sqlite"))
    st = json.loads((evolve / "stats.json").read_text())
    assert st["extra"]["pass_rate"]["overall"]["tried"] == 3  # every evolution was attempted and judged
    assert not [j for j in lines(evolve / "rejected.jsonl") if "llm_error" in j["reason"]]
    si = tmp_path / "self-instruct"
    datagen("self-instruct", "--seeds", ROOT / "seeds" / "175.jsonl", "--num", "2", "--max-rounds", "2", "--out", si,
            "--max-new-tokens", "128", *server_args(no_logprobs, tmp_path / "s.sqlite"))
    manifest = json.loads((si / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["rounds"] >= 1
    assert not [j for j in lines(si / "rejected.jsonl") if j["reason"] == "llm_error"]


def test_train_eval_judge_without_logprobs(no_logprobs, tmp_path):
    from datagen.llm.models import resolve_model

    model = resolve_model("smollm2")
    out = tmp_path / "eval.json"
    env = {**os.environ, "DATAGEN_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "train.cli", "eval", "--model", str(model), "--data", str(ROOT / "bench" / "data" / "gold.jsonl"),
                        "--limit", "3", "--n-prompts", "2", "--max-new-tokens", "24", "--out", str(out), "--judge", "--base-model", str(model),
                        "--judge-llm", "openai", "--judge-model", ALIAS, "--judge-base-url", no_logprobs, "--no-cache"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    judge = json.loads(out.read_text())["judge"]
    assert len(judge["items"]) == 2 and judge["debiased_win_rate"] is None  # no logprobs: no log-odds
    assert judge["unreadable_verdicts"] < 4 or judge["win_rate"] is None


def test_with_logprobs_the_expected_rating_path(with_logprobs, tmp_path):
    out = distill_best_of_3(with_logprobs, tmp_path, "lp")
    assert capabilities(out)["refused"] == {}
    records = lines(out / "records.jsonl")
    assert len(records) == 6
    methods = {c.get("method") for r in records for c in r["meta"]["best_of_n"]["candidates"] if "rejected" not in c}
    assert methods <= {"expected", "json", "digit", "unparsed"} and methods & {"expected", "json"}
