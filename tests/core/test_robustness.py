"""Nothing lost, nothing crashes: the data-loss and crash paths a hostile user finds.

Each test here is a case that once lost data or ended in a traceback: the rejects file of
``convert`` overwriting files, an outage sealed as permanent failures, a ``null`` answer cached as
a real one, inputs that crashed the readers, malformed JSON accepted silently, two commands
writing one run directory at once. The fuzz test of many more bad inputs is tests/core/test_fuzz_input.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

GOOD = [{"instruction": f"Say the number {i}.", "input": "", "output": f"{i}."} for i in range(8)]


def write_jsonl(path: Path, rows: list, bad_line: str | None = None) -> Path:
    lines = [json.dumps(r) for r in rows]
    if bad_line is not None:
        lines.insert(2, bad_line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def env(**extra: str) -> dict:
    return {**os.environ, "OPENAI_API_KEY": "k", "DATAGEN_PROGRESS": "0", **extra}


# -- 1. convert's rejects file -------------------------------------------------------------------
def test_rejects_file_never_replaces_the_input(tmp_path):
    src = write_jsonl(tmp_path / "x.rejected.jsonl", GOOD, bad_line="{not json")
    before = src.read_bytes()
    r = run_cli("convert", "--input", src, "--on-error", "skip", "--to", "alpaca", "--out", tmp_path / "x.parquet")
    # x.parquet's rejects go to x.rejected.jsonl: the input itself. Refused, nothing written.
    assert r.returncode == 2 and "is the input file" in r.stderr, r.stderr
    assert src.read_bytes() == before
    assert not (tmp_path / "x.parquet").exists()


def test_rejects_file_is_named_after_the_whole_output_name(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", GOOD, bad_line="{not json")
    unrelated = tmp_path / "train.rejected.jsonl"
    unrelated.write_text("mine\n")
    r = run_cli("convert", "--input", src, "--on-error", "skip", "--to", "alpaca", "--out", tmp_path / "train.v2.jsonl")
    assert r.returncode == 0, r.stderr
    assert unrelated.read_text() == "mine\n"  # not train.v2's rejects
    assert len(lines(tmp_path / "train.v2.jsonl")) == 8
    assert [j["reason"] for j in lines(tmp_path / "train.v2.rejected.jsonl")] == ["malformed_json"]
    # an output named like a rejects file holds the records, its rejects go beside it
    r = run_cli("convert", "--input", src, "--on-error", "skip", "--to", "alpaca", "--out", tmp_path / "y.rejected.jsonl")
    assert r.returncode == 0 and "wrote 8 records" in r.stderr, r.stderr
    assert [row["output"] for row in lines(tmp_path / "y.rejected.jsonl")] == [g["output"] for g in GOOD]
    assert len(lines(tmp_path / "y.rejected.rejected.jsonl")) == 1
    # --rejected chooses the file; it may not be the output
    r = run_cli("convert", "--input", src, "--on-error", "skip", "--to", "alpaca", "--out", tmp_path / "z.jsonl", "--rejected", tmp_path / "bad-rows.jsonl")
    assert r.returncode == 0 and len(lines(tmp_path / "bad-rows.jsonl")) == 1
    r = run_cli("convert", "--input", src, "--on-error", "skip", "--to", "alpaca", "--out", tmp_path / "w.jsonl", "--rejected", tmp_path / "w.jsonl")
    assert r.returncode == 2 and "same file" in r.stderr


# -- 2 and 3. the server's failures are never answers ----------------------------------------------
class FailAfter:
    """A fault plan: answer the first ``healthy`` requests, then fail the next ``failing`` ones
    (all of them when None) with ``kind``, then answer again."""

    def __init__(self, healthy: int, kind: str = "503", failing: int | None = None) -> None:
        from openai_server import Fault

        self.fault = Fault(kind)
        self.healthy, self.failing = healthy, failing
        self.seen = 0
        self.lock = threading.Lock()

    def __call__(self, message: str, attempt: int):
        with self.lock:
            self.seen += 1
            n = self.seen
        if n <= self.healthy or (self.failing is not None and n > self.healthy + self.failing):
            return None
        return self.fault


def prompts(tmp_path: Path, n: int = 40) -> Path:
    p = tmp_path / "prompts.jsonl"
    p.write_text("".join(json.dumps({"instruction": f"Explain idea {i}."}) + "\n" for i in range(n)))
    return p


def distill(url: str, src: Path, out: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("distill", "--input", src, "--out", out, "--llm", "openai", "--model", "m", "--base-url", url,
                   "--cache", cache, "--chunk-size", "4", "--concurrency", "2", "--max-retries", "1", "--temperature", "0",
                   *extra, env=env())


def answered(srv) -> list[str]:
    """The prompts the server answered successfully, one entry per answer sent."""
    return [r.message for r in srv.chat_requests if r.fault is None]


def check_complete(out: Path, src: Path) -> None:
    """Every prompt answered exactly once, none rejected."""
    wanted = sorted(json.loads(x)["instruction"] for x in src.read_text().splitlines())
    got = sorted(next(m["content"] for m in r["messages"] if m["role"] == "user") for r in lines(out / "records.jsonl"))
    assert got == wanted
    assert lines(out / "rejected.jsonl") == []
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


@pytest.mark.parametrize("failing", [None, 3], ids=["outage", "short-blip"])
def test_an_outage_leaves_prompts_pending_and_a_rerun_sends_exactly_those(tmp_path, failing):
    from openai_server import OpenAIServer

    src, out, cache = prompts(tmp_path), tmp_path / "run", tmp_path / "cache.sqlite"
    # 503 after 12 requests: for good (an outage), or for 3 requests only (shorter than the breaker's count)
    with OpenAIServer(faults=FailAfter(12, "503", failing)) as srv:
        r = distill(srv.url, src, out, cache)
        assert r.returncode == 3, r.stderr
        assert "Traceback" not in r.stderr
        pending = re.search(r"(\d+) of 40 prompts pending", r.stderr)
        assert pending, r.stderr
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["status"] == "stopped" and manifest["stopped"]["pending"] == int(pending.group(1))
        assert not (out / "records.jsonl").exists()
        first = answered(srv)
        srv.faults = None  # the server is back
        r = distill(srv.url, src, out, cache)
        assert r.returncode == 0, r.stderr
        second = answered(srv)[len(first):]
    check_complete(out, src)
    # nothing that was answered once was asked again: each prompt was answered exactly once in all
    assert sorted(first + second) == sorted(json.loads(x)["instruction"] for x in src.read_text().splitlines())


def test_a_null_answer_is_retried_and_never_cached(tmp_path):
    from openai_server import Fault, OpenAIServer

    src, cache = prompts(tmp_path, 6), tmp_path / "cache.sqlite"
    target = "Explain idea 2."
    with OpenAIServer(faults={target: [Fault("nullcontent")] * 2}) as srv:
        # max-retries 1: both attempts come back null, so the prompt stays pending
        r = distill(srv.url, src, tmp_path / "a", cache)
        assert r.returncode == 3 and "content is null" in r.stderr, r.stderr
        # a fresh --out with the same cache, against the now healthy server: the prompt is asked
        # again (the null answer was never cached) and answered
        r = distill(srv.url, src, tmp_path / "b", cache)
        assert r.returncode == 0, r.stderr
        assert srv.attempts(target) == 3
    check_complete(tmp_path / "b", src)
    answer = next(r for r in lines(tmp_path / "b" / "records.jsonl") if r["messages"][-2]["content"] == target)
    assert answer["messages"][-1]["content"].startswith("echo: ")


def test_the_cache_neither_stores_nor_serves_unusable_completions(tmp_path):
    from datagen.llm.base import ChatRequest, Completion, GenParams
    from datagen.llm.cache import RequestCache, request_key

    cache = RequestCache(tmp_path / "c.sqlite")
    params = GenParams()
    keys = [request_key("m", ChatRequest.of([("user", q)]), params) for q in ("a", "b", "c", "d")]
    cache.put(keys[0], Completion("", "stop", model="m"))                      # empty
    cache.put(keys[1], Completion("   \n", "length", model="m"))               # blank
    cache.put(keys[2], Completion("", "error", model="m", error="HTTP 503"))   # a failure
    cache.put(keys[3], Completion("fine", "stop", model="m"))
    assert len(cache) == 1
    # an entry an older version stored (an empty answer from a null content) is ignored
    cache._conn.execute("INSERT INTO completions VALUES (?, 'm', ?, 0)", (keys[0], json.dumps(Completion("", "stop").to_dict())))
    cache._conn.commit()
    assert list(cache.get_many(keys)) == [keys[3]]


# -- 4 and 5. inputs that crashed the readers or were accepted silently -------------------------------
def parquet_with_corrupt_page(path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"instruction": f"Question {i} " + "x" * 200, "input": "", "output": f"Answer {i} " + "y" * 200} for i in range(200)]
    pq.write_table(pa.Table.from_pylist(rows), path, compression="NONE")
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    middle = (len(data) - footer) // 2
    data[middle:middle + 64] = b"\xff" * 64  # inside a data page; the footer stays intact
    path.write_bytes(bytes(data))
    return path


def record_parquet_with_bad_meta(path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": "", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
             "source": "input", "parent_id": None, "scores": "{}", "flags": "{}", "meta": "{not json"}]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, words the error must hold, located)."""
    ok = json.dumps(GOOD[0])
    cases: dict[str, tuple[Path, str]] = {}

    def text(name: str, body: str, words: str) -> None:
        p = tmp_path / name
        p.write_text(body, encoding="utf-8", errors="surrogatepass")
        cases[name] = (p, words)

    text("deep.jsonl", ok + "\n" + "[" * 100_000 + "]" * 100_000 + "\n", ":2: nested too deeply")
    text("deep_object.jsonl", ok + "\n" + '{"a":' * 100_000 + "1" + "}" * 100_000 + "\n", ":2: nested too deeply")
    text("surrogate.jsonl", ok + '\n{"instruction": "a\\ud800", "output": "b"}\n', ":2: field 'instruction': holds a lone UTF-16 surrogate")
    text("nan.jsonl", ok + '\n{"instruction": "a", "output": "b", "score": NaN}\n', ":2: non-standard JSON value NaN")
    text("infinity.jsonl", ok + '\n{"instruction": "a", "output": "b", "score": -Infinity}\n', ":2: non-standard JSON value -Infinity")
    text("overflow.jsonl", ok + '\n{"instruction": "a", "output": "b", "score": 1e999}\n', ":2: number 1e999 is too large")
    text("duplicate_key.jsonl", ok + '\n{"instruction": "a", "output": "b", "output": "c"}\n', ":2: field 'output': appears twice")
    text("trailing_garbage.json", "[\n" + ok + ",\n" + ok + "\n]\nthis is not JSON\n", ":5: malformed JSON: unexpected text after the closing ']'")
    cases["corrupt_page.parquet"] = (parquet_with_corrupt_page(tmp_path / "corrupt_page.parquet"), "corrupt Parquet data")
    cases["bad_meta.parquet"] = (record_parquet_with_bad_meta(tmp_path / "bad_meta.parquet"), "(row 1): field 'meta': holds invalid JSON text")
    return cases


COMMANDS = {
    "convert": lambda src, out: ["convert", "--input", src, "--to", "messages", "--out", out / "o.jsonl"],
    "filter": lambda src, out: ["filter", "--input", src, "--out", out / "run", "--stages", "heuristics,exact,minhash"],
    "select": lambda src, out: ["select", "--input", src, "--out", out / "run", "--budget", "2", "--no-embed"],
    "train": lambda src, out: ["run", "--data", src, "--out", out / "run", "--max-steps", "1"],
}


def run_any(command: str, argv: list) -> subprocess.CompletedProcess:
    if command == "train":
        return subprocess.run([sys.executable, "-m", "train.cli", *map(str, argv)], cwd=ROOT, env=env(),
                              capture_output=True, text=True, timeout=600)
    return run_cli(*argv, env=env())


@pytest.mark.parametrize("command", list(COMMANDS))
def test_inputs_that_crashed_are_located_errors(tmp_path, command):
    for name, (src, words) in _bad_inputs(tmp_path).items():
        before = src.read_bytes()
        out = tmp_path / f"out-{name}"
        out.mkdir()
        r = run_any(command, COMMANDS[command](src, out))
        assert r.returncode == 2, (name, r.stderr[-2000:])
        assert "Traceback" not in r.stderr and words in r.stderr and str(src) in r.stderr, (name, r.stderr[-2000:])
        assert list(out.iterdir()) == [], name  # nothing written
        assert src.read_bytes() == before


def test_unreadable_input_is_a_located_error(tmp_path):
    import shutil

    src = write_jsonl(tmp_path / "secret.jsonl", GOOD)
    src.chmod(0)
    argv = [sys.executable, "-m", "datagen.cli", "convert", "--input", str(src), "--to", "alpaca", "--out", str(tmp_path / "o.jsonl")]
    if os.geteuid() == 0:  # root reads any file: run the command as root without its capabilities
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv (util-linux) to drop the capabilities")
        argv = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", *argv]
    try:
        r = subprocess.run(argv, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
    finally:
        src.chmod(0o644)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and str(src) in r.stderr and "ermission denied" in r.stderr, r.stderr
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_out_under_a_regular_file(tmp_path, command):
    src = write_jsonl(tmp_path / "in.jsonl", GOOD)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file\n")
    r = run_any(command, COMMANDS[command](src, blocker / "sub"))
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "is a file, not a directory" in r.stderr, r.stderr[-2000:]
    assert blocker.read_text() == "a file\n"


def test_convert_out_is_an_existing_directory(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", GOOD)
    (tmp_path / "d").mkdir()
    r = run_cli("convert", "--input", src, "--to", "alpaca", "--out", tmp_path / "d")
    assert r.returncode == 2 and "is a directory" in r.stderr and "Traceback" not in r.stderr
    assert list((tmp_path / "d").iterdir()) == []


def test_records_never_hold_non_standard_json(tmp_path):
    from datagen.core.record import Record

    with pytest.raises(ValueError, match="finite"):
        Record.from_turns("q", "a", scores={"judge": float("nan")})
    rec = Record.from_turns("q", "a", flags={"x": float("inf")}, meta={"y": [float("nan")]})
    assert json.loads(rec.to_json())["flags"] == {"x": None}  # standard JSON: null, never NaN
    assert "NaN" not in rec.to_json() and "Infinity" not in rec.to_json()


# -- 6. one process per run directory --------------------------------------------------------------
def test_a_second_command_on_a_busy_run_directory_is_refused_and_a_killed_one_does_not_block(tmp_path):
    from openai_server import OpenAIServer

    src, out, cache = prompts(tmp_path, 24), tmp_path / "run", tmp_path / "cache.sqlite"  # 12 parts of 0.5 s answers: time to spare
    with OpenAIServer(latency=0.5) as srv:
        cmd = [sys.executable, "-m", "datagen.cli", "distill", "--input", str(src), "--out", str(out), "--llm", "openai",
               "--model", "m", "--base-url", srv.url, "--cache", str(cache), "--chunk-size", "2", "--concurrency", "1"]
        first = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + 60
            while not list((out / ".parts").glob("part-000001.done")) and time.time() < deadline:
                time.sleep(0.1)
            assert first.poll() is None, first.stderr.read()
            r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=120)
            assert r.returncode == 2, r.stderr
            assert f"in use by pid {first.pid}" in r.stderr and "Traceback" not in r.stderr
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
        # the kernel dropped the killed process's lock: the rerun resumes and completes
        r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    check_complete(out, src)
    assert not (out / ".parts").exists()


def test_a_damaged_manifest_is_an_error_not_a_traceback(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", GOOD)
    out = tmp_path / "run"
    argv = ["filter", "--input", src, "--out", out, "--stages", "heuristics"]
    assert run_cli(*argv).returncode == 0
    (out / "manifest.json").write_text('{"status": "compl')
    r = run_cli(*argv)
    assert r.returncode == 2 and "damaged" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert run_cli(*argv, "--force").returncode == 0
