"""``datagen distill`` and ``datagen evolve`` with ``--executor ray``: the chunks answered (and
judged) by Ray tasks on a real local cluster, each sending its requests to a real
OpenAI-compatible server on 127.0.0.1; the driver's request cache and parts give the local run's
records, and an interrupted run resumes with either executor."""

from __future__ import annotations

import pytest

from datagen.core import prompts
from datagen.core.io import iter_jsonl
from datagen.core.record import Record
from datagen.core.rundir import RunDir
from datagen.generate import distill as d
from datagen.generate import evol_instruct as ev
from datagen.llm import LLMConfig, make_llm
from datagen.llm.base import ChatRequest, GenParams
from datagen.score.judge import JudgeSelector
from openai_server import OpenAIServer
from scripted import Interrupting
from test_evolve import SEEDS, pool_of, script

try:
    import ray
except ImportError:
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="Ray is not installed (pip install 'datagen-train[ray]')")

JUDGE_MARK = "We would like your feedback"
PARAMS = GenParams(max_tokens=64, seed=10)
PROMPTS = [f"Name a use of the number {k}." for k in range(10)]  # 5 chunks of 2, 2 candidates each


def reply(message: str) -> str:
    if any(k in message for k in SEEDS):  # Evol-Instruct's rewrites, judgements and answers, as test_evolve scripts them
        out = script(ChatRequest.of([("user", message)]), None)
        return "   " if isinstance(out, Exception) else out
    if message.startswith(JUDGE_MARK):
        return str(1 + len(message) % 5)  # a rating that depends on the answer shown
    return f"Sure ({len(message) % 7}): {message}"


@pytest.fixture(scope="module")
def env():
    """A local Ray cluster of 2 CPUs (started by the executor) and the server its tasks call."""
    from datagen.core.shards import make_executor

    with OpenAIServer(answer_fn=reply) as srv:
        ex = make_executor("ray", workers=2)
        yield ex, srv
        ex.close()


def build(srv: OpenAIServer, tmp, cache: str, out: str, wrap=None):
    cfg = LLMConfig(backend="openai", model="m", base_url=srv.url, cache=str(tmp / cache))
    llm = make_llm(cfg)
    teacher_llm = wrap(llm) if wrap else llm
    system, template = d.load_system_prompt("distill/system")
    selector = JudgeSelector(teacher_llm, prompts.load(d.JUDGE_TEMPLATE))
    dist = d.Distill(d.Teacher(teacher_llm, PARAMS, system, template), n=2, selector=selector, chunk_size=2, progress=False)
    return dist, RunDir(tmp / out, "distill", {"test": 1}), cfg


def records() -> list[Record]:
    return [Record.from_turns(p, "") for p in PROMPTS]


def files(out) -> tuple[str, str]:
    return (out / "records.jsonl").read_text(), (out / "rejected.jsonl").read_text()


def local_run(srv: OpenAIServer, tmp, cache: str, out: str) -> tuple[str, str]:
    """A whole distill run in this process (request cache ``cache``): its output files."""
    dist, run, _ = build(srv, tmp, cache, out)
    dist.run(run, records())
    return files(tmp / out)


def asked(srv: OpenAIServer, since: int) -> list[str]:
    return [r.message for r in srv.chat_requests[since:]]


@needs_ray
def test_ray_tasks_answer_and_the_driver_writes_the_local_run(tmp_path, env):
    ex, srv = env
    want = local_run(srv, tmp_path, "c0", "local")
    n_local = len(srv.chat_requests)
    assert len(list(iter_jsonl(tmp_path / "local" / "records.jsonl"))) == 10 and n_local == 40  # 20 answers, 20 ratings

    dist, run, cfg = build(srv, tmp_path, "c1", "ray")
    before = len(srv.chat_requests)
    done = dist.answer_on(ex, cfg, run, records())
    assert done["tasks"] == 5 and done["usage"]["requests"] == 40
    assert len(srv.chat_requests) - before == 40  # every request once, from the tasks
    before = len(srv.chat_requests)
    dist.run(run, records())
    assert len(srv.chat_requests) == before  # the driver answered all from its cache
    assert files(tmp_path / "ray") == want


class StopAfter:
    """An executor that stops (as Ctrl-C would) once ``n`` tasks have returned."""

    def __init__(self, inner, n: int) -> None:
        self.inner, self.n, self.workers = inner, n, inner.workers

    def map(self, fn, tasks, on_done=None):
        def done(i, result):
            on_done(i, result)
            if i + 1 == self.n:
                raise KeyboardInterrupt

        return self.inner.map(fn, tasks, done)


@needs_ray
def test_an_interrupted_ray_run_resumes_locally_and_a_local_one_on_ray(tmp_path, env):
    ex, srv = env
    want = local_run(srv, tmp_path, "c0", "ref")

    # on Ray, stopped after two chunks came back; their answers and ratings are in the cache
    dist, run, cfg = build(srv, tmp_path, "c1", "a")
    with pytest.raises(KeyboardInterrupt):
        dist.answer_on(StopAfter(ex, 2), cfg, run, records())
    dist, run, _ = build(srv, tmp_path, "c1", "a")  # a new process: the local executor
    before = len(srv.chat_requests)
    dist.run(run, records())
    again = asked(srv, before)
    assert again and not any(p in m for p in PROMPTS[:4] for m in again)  # the first two chunks: none asked again
    assert files(tmp_path / "a") == want

    # locally, stopped during the third chunk (two parts sealed); then on Ray
    dist, run, _ = build(srv, tmp_path, "c2", "b", wrap=lambda llm: Interrupting(llm, 5))  # answer + judge per chunk
    with pytest.raises(KeyboardInterrupt):
        dist.run(run, records())
    assert sorted(p.name for p in (tmp_path / "b" / ".parts").glob("*.done")) == ["part-000000.done", "part-000001.done", "part-000002.done"]
    dist, run, cfg = build(srv, tmp_path, "c2", "b")
    assert dist.answer_on(ex, cfg, run, records())["tasks"] == 3  # the chunks not sealed
    before = len(srv.chat_requests)
    dist.run(run, records())
    assert len(srv.chat_requests) == before
    assert files(tmp_path / "b") == want


@needs_ray
def test_evolve_rounds_on_ray_give_the_local_run(tmp_path, env):
    ex, srv = env
    pool = pool_of(tmp_path)

    def make(cache: str):
        cfg = LLMConfig(backend="openai", model="m", base_url=srv.url, cache=str(tmp_path / cache))
        llm, params = make_llm(cfg), GenParams(max_tokens=64, seed=0)
        teacher = d.Teacher(llm, params, "Be helpful.", {"name": "distill/system", "sha": "x"})
        return ev.EvolInstruct(llm, params, teacher=teacher, rounds=2, chunk_size=3, progress=False), cfg

    evol, _ = make("c0")
    evol.run(RunDir(tmp_path / "local", "evolve", {"t": 1}), pool)
    want = files(tmp_path / "local")
    assert want[0].count("\n") >= 2 and "no_information_gain" in want[1]
    evol, cfg = make("c1")
    run = RunDir(tmp_path / "ray", "evolve", {"t": 1})
    report = evol.answer_on(ex, cfg, run)
    evol.run(run, pool)
    assert report["tasks"] == 6  # 3 chunks in each of 2 rounds, round 2's from round 1's survivors
    assert files(tmp_path / "ray") == want


def test_what_ray_cannot_honour_is_refused_before_anything_starts(tmp_path, cli):
    src = tmp_path / "in.jsonl"
    src.write_text('{"instruction": "Say hi."}\n')
    base = ["distill", "--input", src, "--llm", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--executor", "ray"]
    r = cli(*base, "--out", tmp_path / "a", "--no-cache")
    assert r.returncode == 2 and "drop --no-cache" in r.stderr and "Traceback" not in r.stderr
    r = cli(*base, "--out", tmp_path / "b", "--max-tokens", "1000")
    assert r.returncode == 2 and "per Ray task" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
