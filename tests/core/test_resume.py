"""Kill a real run with SIGKILL part way, rerun it, and get exactly the uninterrupted result.

The teacher is the OpenAI-compatible backend talking to a real HTTP server on 127.0.0.1 (with
injected latency and faults), so the run is long enough to be killed in the middle.
"""

import json
import os
import signal
import re
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT

KEY = "sk-test-5f1e6c0ffee-never-log-me"


@pytest.fixture(scope="module")
def server():
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "openai_server.py"), "--latency", "0.05", "--mixed-faults"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    url = proc.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), url
    yield url
    proc.stdin.close()
    proc.wait(timeout=10)


@pytest.fixture
def prompts(tmp_path):
    p = tmp_path / "prompts.jsonl"
    with open(p, "w") as f:
        for i in range(120):
            f.write(json.dumps({"instruction": f"Explain idea number {i} in one sentence."}) + "\n")
    return p


def distill_cmd(url, prompts, out, cache):
    return [
        sys.executable, "-m", "datagen.cli", "distill", "--input", str(prompts), "--out", str(out),
        "--llm", "openai", "--model", "teacher-1", "--base-url", url, "--cache", str(cache),
        "--concurrency", "8", "--chunk-size", "10", "--timeout", "1", "--temperature", "0",
    ]


def env():
    return {**os.environ, "OPENAI_API_KEY": KEY, "DATAGEN_PROGRESS": "0"}


def test_sigkill_then_resume_matches_uninterrupted_run(server, prompts, tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    r = subprocess.run(distill_cmd(server, prompts, ref, tmp_path / "ref.sqlite"), env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr

    proc = subprocess.Popen(distill_cmd(server, prompts, run, tmp_path / "run.sqlite"), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((run / ".parts").glob("part-*.done"))) < 4:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    sealed = len(list((run / ".parts").glob("part-*.done")))
    assert 4 <= sealed < 13, "the kill must land in the middle of the run"
    assert not (run / "records.jsonl").exists()  # no final output from an unfinished run
    assert json.loads((run / "manifest.json").read_text())["status"] == "running"

    r = subprocess.run(distill_cmd(server, prompts, run, tmp_path / "run.sqlite"), env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr

    assert (run / "records.jsonl").read_bytes() == (ref / "records.jsonl").read_bytes()
    assert (run / "rejected.jsonl").read_bytes() == (ref / "rejected.jsonl").read_bytes()
    ids = [json.loads(x)["id"] for x in (run / "records.jsonl").read_text().splitlines()]
    assert len(ids) == 120 and len(set(ids)) == 120
    stats = json.loads((run / "stats.json").read_text())
    assert stats["stages"]["distill"] == json.loads((ref / "stats.json").read_text())["stages"]["distill"]
    assert stats["stages"]["distill"]["in"] == 120
    # every prompt was either answered in a sealed part or, if it was in flight at the kill and had
    # finished, served from the cache on the rerun: only requests cut off mid-flight are sent again
    llm = stats["extra"]["llm"]
    assert llm["requests"] + llm["cache_hits"] == 120, llm
    assert not (run / ".parts").exists()

    # a finished run is not redone
    r = subprocess.run(distill_cmd(server, prompts, run, tmp_path / "run.sqlite"), env=env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "already complete" in r.stderr

    # the key appears nowhere we write
    for path in [*run.rglob("*"), *tmp_path.glob("run.sqlite*")]:
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["llm_config"]["api_key_env"] == "OPENAI_API_KEY"


def test_budget_stops_cleanly_and_resumes(server, prompts, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "c.sqlite"
    cmd = distill_cmd(server, prompts, out, cache) + ["--limit", "40"]
    r = subprocess.run(cmd + ["--max-tokens", "600"], env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 3, r.stderr
    assert "budget" in r.stderr and "Traceback" not in r.stderr
    assert not (out / "records.jsonl").exists()
    r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len((out / "records.jsonl").read_text().splitlines()) == 40


def test_a_dead_server_stops_the_run_cleanly_and_a_rerun_completes(prompts, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "c.sqlite"
    with socket.socket() as s:  # a port nothing listens on yet: every connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    cmd = distill_cmd(url, prompts, out, cache) + ["--limit", "40", "--max-retries", "0", "--max-consecutive-failures", "5"]
    r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 3, r.stderr
    failed = re.search(r"failed (\d+) requests in a row", r.stderr)
    assert failed and 5 <= int(failed.group(1)) <= 10  # the threshold, plus what was in flight when it tripped
    assert "once the server answers" in r.stderr and "Traceback" not in r.stderr
    assert not (out / "records.jsonl").exists()
    # the server comes back on the same address; the same command finishes the run
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "openai_server.py"), "--port", str(port)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == url
        r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    assert r.returncode == 0, r.stderr
    assert len((out / "records.jsonl").read_text().splitlines()) == 40
    assert not (out / "rejected.jsonl").read_text().strip()  # no prompt was lost to the outage
