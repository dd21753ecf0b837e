"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 (tests/openai_server.py),
through the real ``openai`` client, with injected faults."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from datagen.llm import BackendUnavailable, BudgetExceeded, ChatRequest, GenParams, LLMConfig, LLMError, make_llm
from datagen.llm.cache import CachedLLM, RequestCache
from datagen.llm.openai_compat import OpenAICompatLLM
from datagen.llm.openai_wire import RateLimiter as _RateLimiter
from openai_server import Fault, OpenAIServer, answer_for, count_tokens, mixed_faults

KEY_ENV = "DATAGEN_TEST_OPENAI_KEY"
KEY = "sk-datagen-test-" + uuid.uuid4().hex
PARAMS = GenParams(max_tokens=50)


def ask(*messages: str) -> list[ChatRequest]:
    return [ChatRequest.of([("user", m)]) for m in messages]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("DATAGEN_PROGRESS", "0")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as srv:
        yield srv


@pytest.fixture
def connect() -> Iterator:
    """Build backends with quick test defaults (tiny backoff, short timeout); closes them after."""
    made: list[OpenAICompatLLM] = []

    def build(srv: OpenAIServer, **kw) -> OpenAICompatLLM:
        settings = dict(base_url=srv.url, api_key_env=KEY_ENV, concurrency=8, timeout=2.0,
                        backoff_base=0.01, backoff_max=0.05)
        settings.update(kw)
        made.append(OpenAICompatLLM("test-model", **settings))
        return made[-1]

    yield build
    for llm in made:
        llm.close()


# ---- the happy path ---------------------------------------------------------------------------
def test_completions_usage_and_auth(server, connect):
    llm = connect(server, price_in=1.0, price_out=2.0)
    msgs = ["What is a token bucket?", "Name three prime numbers", "hi"]
    out = llm.generate(ask(*msgs), PARAMS)
    assert [c.text for c in out] == [answer_for(m) for m in msgs]
    assert all(c.ok and c.finish_reason == "stop" and c.model == "test-model" for c in out)
    prompt = sum(count_tokens(m) for m in msgs)
    completion = sum(count_tokens(answer_for(m)) for m in msgs)
    assert [c.prompt_tokens for c in out] == [count_tokens(m) for m in msgs]
    u = llm.usage
    assert (u.requests, u.prompt_tokens, u.completion_tokens, u.retries, u.failures) == (3, prompt, completion, 0, 0)
    assert u.cost == pytest.approx((prompt * 1.0 + completion * 2.0) / 1e6)
    assert {r.authorization for r in server.chat_requests} == {f"Bearer {KEY}"}


def test_params_mapping_truncation_and_logprobs(server, connect):
    llm = connect(server)
    msg = "one two three four five"
    [seeded] = llm.generate([ChatRequest.of([("user", msg)], seed=7)], GenParams(max_tokens=3, seed=3))
    assert seeded.finish_reason == "length" and seeded.completion_tokens == 3
    assert seeded.text == " ".join(answer_for(msg).split()[:3]) and seeded.logprobs is None
    body = server.chat_requests[-1].body
    assert body["seed"] == 7 and body["max_tokens"] == 3 and body["temperature"] == 0.7 and body["top_p"] == 1.0
    assert "stop" not in body and "logprobs" not in body and "top_logprobs" not in body

    params = GenParams(max_tokens=50, seed=None, stop=("#",), logprobs=True, top_logprobs=2)
    [c] = llm.generate(ask(msg), params)
    body = server.chat_requests[-1].body
    assert "seed" not in body and body["stop"] == ["#"] and body["logprobs"] is True and body["top_logprobs"] == 2
    assert c.text == answer_for(msg).split("#")[0] and c.finish_reason == "stop"
    assert c.logprobs is not None and [t.token for t in c.logprobs] == c.text.split()
    first = c.logprobs[0]
    assert first.logprob <= 0 and list(first.top) == [first.token, first.token + "~1"]


# ---- retries -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fault, wait", [(Fault("429", retry_after=1), 1.0), (Fault("503", retry_after_ms=400), 0.4)])
def test_retry_after_is_honoured(server, connect, fault, wait):
    server.faults = {"slow down": [fault]}
    llm = connect(server)
    start = time.monotonic()
    [c] = llm.generate(ask("slow down"), PARAMS)
    assert time.monotonic() - start >= wait * 0.9
    assert c.ok and c.text == answer_for("slow down")
    assert server.attempts("slow down") == 2 and llm.usage.retries == 1


@pytest.mark.parametrize("faults", [
    [Fault("500"), Fault("503"), Fault("500")],
    [Fault("badjson"), Fault("nochoices"), Fault("html")],
], ids=["5xx", "malformed"])
def test_transient_failures_are_retried(server, connect, faults):
    server.faults = {"flaky": faults}
    llm = connect(server)
    out = llm.generate(ask("flaky", "fine"), PARAMS)
    assert [c.text for c in out] == [answer_for("flaky"), answer_for("fine")]
    assert server.attempts("flaky") == 4 and server.attempts("fine") == 1
    assert (llm.usage.retries, llm.usage.failures, llm.usage.requests) == (3, 0, 2)


def test_timeouts_are_retried(server, connect):
    server.faults = {"stuck": [Fault("slow", delay=3.0)]}
    llm = connect(server, timeout=0.5)
    start = time.monotonic()
    [c] = llm.generate(ask("stuck"), PARAMS)
    assert c.ok and time.monotonic() - start < 2.5
    assert server.attempts("stuck") == 2 and llm.usage.retries == 1


def test_retries_run_out_into_a_pending_failure_never_an_answer(server, connect):
    server.faults = lambda message, attempt: Fault("500") if message == "doomed" else None
    llm = connect(server, max_retries=2)
    got = {}
    # the server's failure is yielded (the caller sees what happened), then the batch raises so
    # that nobody takes it as the prompt's answer
    with pytest.raises(BackendUnavailable, match=r"failed 1 of 2 requests after their retries \(last: HTTP 500"):
        for i, c in llm.generate_iter(ask("doomed", "fine"), PARAMS):
            got[i] = c
    doomed, fine = got[0], got[1]
    assert fine.ok
    assert doomed.finish_reason == "error" and doomed.text == ""
    assert doomed.error.startswith("HTTP 500") and "after 3 attempts" in doomed.error
    assert server.attempts("doomed") == 3
    assert (llm.usage.retries, llm.usage.failures, llm.usage.requests) == (2, 1, 2)
    with pytest.raises(BackendUnavailable):  # generate() raises the same way
        llm.generate(ask("doomed"), PARAMS)


def test_client_errors_fail_fast(server, connect):
    server.faults = {"too long": [Fault("400")] * 5}
    llm = connect(server, backoff_base=1.0, backoff_max=1.0)
    start = time.monotonic()
    bad, fine = llm.generate(ask("too long", "fine"), PARAMS)
    assert time.monotonic() - start < 0.9
    assert bad.finish_reason == "error" and bad.error.startswith("HTTP 400: This model's maximum context length")
    assert fine.ok and server.attempts("too long") == 1
    assert (llm.usage.retries, llm.usage.failures) == (0, 1)


def test_mixed_faults_lose_and_duplicate_nothing(server, connect):
    server.faults = mixed_faults
    msgs = [f"mixed question {i}" for i in range(60)]
    llm = connect(server, concurrency=16, timeout=0.5)
    seen = list(llm.generate_iter(ask(*msgs), PARAMS))
    assert sorted(i for i, _ in seen) == list(range(60))
    assert all(c.ok and c.text == answer_for(msgs[i]) for i, c in seen)

    def faults_before_success(m: str) -> int:
        n = 0
        while mixed_faults(m, n) is not None:
            n += 1
        return n

    expected = {m: faults_before_success(m) for m in msgs}
    assert sum(expected.values()) > 40  # the plan really exercises retries
    assert {m: server.attempts(m) - 1 for m in msgs} == expected
    assert len(server.chat_requests) == 60 + sum(expected.values())
    assert (llm.usage.requests, llm.usage.retries, llm.usage.failures) == (60, sum(expected.values()), 0)


# ---- streaming, cancellation -------------------------------------------------------------------
def test_generate_iter_yields_as_ready_and_close_cancels(server, connect):
    server.faults = {"slow 0": [Fault("slow", delay=1.5)]}
    llm = connect(server, timeout=5.0)
    requests = ask("slow 0", "fast 1", "fast 2")
    it = llm.generate_iter(requests, PARAMS)
    first, _ = next(it)
    assert first != 0
    start = time.monotonic()
    it.close()  # the slow request is cancelled, not awaited
    assert time.monotonic() - start < 1.0
    out = llm.generate(ask("again 1", "again 2"), PARAMS)  # the backend still works
    assert [c.text for c in out] == [answer_for("again 1"), answer_for("again 2")]


# ---- budget and cache --------------------------------------------------------------------------
def test_budget_stops_cleanly_and_cache_keeps_finished_work(server, connect, tmp_path):
    msgs = [f"question {i}" for i in range(10)]  # 2 prompt + 4 completion tokens each
    cache = RequestCache(tmp_path / "cache.sqlite")
    cached = CachedLLM(connect(server, concurrency=1, max_tokens_budget=15), cache)
    with pytest.raises(BudgetExceeded, match="token budget spent: 18 of 15"):
        cached.generate(ask(*msgs), PARAMS)
    assert len(server.chat_requests) == 3 and len(cache) == 3

    inner = connect(server, concurrency=1, max_tokens_budget=15)
    got = []
    with pytest.raises(BudgetExceeded):
        for item in inner.generate_iter(ask(*msgs), PARAMS):
            got.append(item)
    assert [i for i, _ in got] == [0, 1, 2]

    out = CachedLLM(connect(server, max_tokens_budget=1000), cache).generate(ask(*msgs), PARAMS)
    assert [c.text for c in out] == [answer_for(m) for m in msgs]
    assert [c.cached for c in out] == [True] * 3 + [False] * 7
    assert len(server.chat_requests) == 3 + 3 + 7


# ---- circuit breaker ---------------------------------------------------------------------------
def test_an_outage_trips_the_breaker_instead_of_failing_every_request(server, connect):
    server.faults = lambda message, attempt: Fault("503")
    llm = connect(server, concurrency=2, max_retries=1, max_consecutive_failures=4)
    got = []
    with pytest.raises(BackendUnavailable, match=r"failed [4-6] requests in a row after their retries \(last: HTTP 503"):
        for item in llm.generate_iter(ask(*(f"q{i}" for i in range(40))), PARAMS):
            got.append(item)
    # the requests that were sent came back as failures; at most the ones in flight when it
    # tripped were sent after the 4th failure; the other ~35 were never sent
    assert 4 <= len(got) <= 4 + 2 and all(not c.ok for _, c in got)
    assert len(server.chat_requests) == 2 * len(got)  # each sent request was tried twice (1 retry)
    # the server is back: the same backend works, and the count starts afresh
    server.faults = None
    assert all(c.ok for c in llm.generate(ask("q1", "q2"), PARAMS))


def test_request_errors_and_interleaved_successes_do_not_trip_the_breaker(server, connect):
    # a prompt too long for the context is the request's fault, not the server's
    server.faults = lambda message, attempt: Fault("400") if message.startswith("long") else None
    llm = connect(server, concurrency=1, max_consecutive_failures=3)
    out = llm.generate(ask(*(f"long {i}" for i in range(10))), PARAMS)
    assert sum(not c.ok for c in out) == 10
    # every other request fails on the server: a success resets the count each time, so the
    # whole batch is sent; the failures then make it raise (they stay pending)
    server.faults = lambda message, attempt: Fault("500") if int(message.split()[1]) % 2 else None
    got = {}
    with pytest.raises(BackendUnavailable, match="failed 6 of 12 requests"):
        for i, c in connect(server, concurrency=1, max_retries=0, max_consecutive_failures=2).generate_iter(ask(*(f"q {i}" for i in range(12))), PARAMS):
            got[i] = c
    assert [got[i].ok for i in range(12)] == [True, False] * 6
    # a refused key is systemic: it trips at once; 0 switches the breaker off (the batch is sent
    # whole, and still raises)
    server.faults = lambda message, attempt: Fault("401")
    with pytest.raises(BackendUnavailable, match="failed 2 requests in a row"):
        connect(server, concurrency=1, max_consecutive_failures=2).generate(ask(*(f"k {i}" for i in range(6))), PARAMS)
    before = len(server.chat_requests)
    with pytest.raises(BackendUnavailable, match="failed 6 of 6 requests"):
        connect(server, concurrency=1, max_consecutive_failures=0).generate(ask(*(f"k {i}" for i in range(6))), PARAMS)
    assert len(server.chat_requests) - before == 6
    with pytest.raises(LLMError, match="max_consecutive_failures"):
        connect(server, max_consecutive_failures=-1)


def test_cost_budget_needs_prices(server):
    with pytest.raises(LLMError, match="price"):
        OpenAICompatLLM("test-model", base_url=server.url, api_key_env=KEY_ENV, max_cost=1.0)


def test_cache_through_make_llm(server, tmp_path):
    cfg = LLMConfig(backend="openai", model="test-model", base_url=server.url, api_key_env=KEY_ENV,
                    cache=str(tmp_path / "cache.sqlite"))
    msgs = [f"cache me {i}" for i in range(5)]
    for round_ in range(2):
        llm = make_llm(cfg)
        assert isinstance(llm, CachedLLM)
        out = llm.generate(ask(*msgs), PARAMS)
        assert [c.text for c in out] == [answer_for(m) for m in msgs]
        assert all(c.cached == (round_ == 1) for c in out)
        assert len(server.chat_requests) == 5  # the second round sent nothing
        llm.close()
    cfg.no_cache = True
    llm = make_llm(cfg)
    assert isinstance(llm, OpenAICompatLLM)
    assert [c.text for c in llm.generate(ask(*msgs), PARAMS)] == [answer_for(m) for m in msgs]
    assert len(server.chat_requests) == 10
    llm.close()


# ---- secrets -----------------------------------------------------------------------------------
def test_api_key_never_leaks(server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    server.faults = {"bad key": [Fault("401")], "retry me": [Fault("500")]}
    cfg = LLMConfig(backend="openai", model="test-model", base_url=server.url, api_key_env=KEY_ENV,
                    cache=str(tmp_path / "cache.sqlite"))
    llm = make_llm(cfg)
    got = {}
    with pytest.raises(BackendUnavailable) as stopped:
        for i, c in llm.generate_iter(ask("bad key", "good", "retry me"), PARAMS):
            got[i] = c
    llm.close()
    bad, ok, retried = got[0], got[1], got[2]
    assert KEY not in str(stopped.value)
    assert ok.ok and retried.ok and server.chat_requests[0].authorization == f"Bearer {KEY}"
    assert bad.error is not None and bad.error.startswith("HTTP 401") and KEY_ENV in bad.error
    assert KEY not in bad.error
    assert KEY not in json.dumps(llm.describe()) and KEY not in json.dumps(cfg.to_manifest())
    assert KEY not in caplog.text
    for f in tmp_path.iterdir():  # the sqlite file and its -wal/-shm companions
        assert KEY.encode() not in f.read_bytes()


def test_missing_key(server, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(LLMError, match=KEY_ENV):
        OpenAICompatLLM("gpt-4o-mini", api_key_env=KEY_ENV)
    with OpenAICompatLLM("test-model", base_url=server.url, api_key_env=KEY_ENV) as llm:
        assert llm.generate(ask("no key needed"), PARAMS)[0].ok
    assert server.chat_requests[0].authorization == "Bearer sk-no-key"


def test_describe_names_settings_not_secrets(server):
    with OpenAICompatLLM("test-model", base_url="http://user:pw@127.0.0.1:9/v1?api-key=x",
                         api_key_env=KEY_ENV, rpm=60) as llm:
        d = llm.describe()
    assert d["backend"] == "openai" and d["model"] == "test-model" and d["api_key_env"] == KEY_ENV
    assert d["base_url"] == "http://127.0.0.1:9/v1" and d["rpm"] == 60


# ---- rate limits -------------------------------------------------------------------------------
def test_rpm_limit_spaces_requests(server, connect):
    llm = connect(server, rpm=120)  # 2 per second, bursts of 2
    start = time.monotonic()
    out = llm.generate(ask(*[f"rpm {i}" for i in range(5)]), PARAMS)
    assert time.monotonic() - start >= 1.4 and all(c.ok for c in out)
    arrivals = sorted(r.at for r in server.chat_requests)
    assert arrivals[4] - arrivals[0] >= 1.4


def test_tpm_limit_throttles(server, connect):
    # 10 tokens/s, bursts of 10; each request is charged 9 (1 prompt + 8 max_tokens) up front and
    # really uses 6, so the fourth can only start after ~1.7 s of refill.
    llm = connect(server, tpm=600)
    start = time.monotonic()
    out = llm.generate(ask(*[f"tpm {i}" for i in range(4)]), GenParams(max_tokens=8))
    assert time.monotonic() - start >= 1.5
    assert all(c.ok for c in out) and llm.usage.total_tokens == 4 * 6


def test_rate_limiter_settles_estimates():
    async def scenario() -> float:
        bucket = _RateLimiter(per_minute=600)  # 10 per second, bursts of 10
        start = time.monotonic()
        await bucket.acquire(10)  # at once
        bucket.give_back(6)  # only 4 were really used
        await bucket.acquire(10)  # waits for 4 more: ~0.4 s, not the 1 s it would be without settling
        return time.monotonic() - start

    assert 0.35 <= asyncio.run(scenario()) < 0.9


# ---- the server as a process -------------------------------------------------------------------
def test_server_runs_as_a_subprocess():
    script = Path(__file__).resolve().parents[1] / "openai_server.py"
    proc = subprocess.Popen([sys.executable, str(script), "--port", "0", "--latency", "0.05", "--models", "test-model"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "/models", timeout=5) as r:
            assert json.load(r)["data"][0]["id"] == "test-model"
        with OpenAICompatLLM("test-model", base_url=url, api_key_env=KEY_ENV) as llm:
            out = llm.generate(ask("a", "b"), PARAMS)
        assert [c.text for c in out] == [answer_for("a"), answer_for("b")]
    finally:
        proc.stdin.close()
        proc.wait(10)


# ---- capabilities ------------------------------------------------------------------------------
LLAMA_CPP_NO_LOGPROBS = (500, "logprobs is not supported for models created with logits_all=False")


@pytest.mark.parametrize("status,message,sent,refused", [
    (*LLAMA_CPP_NO_LOGPROBS, {"logprobs": True, "top_logprobs": 20}, "logprobs"),
    (400, "Unrecognized request argument supplied: repeat_penalty", {"repeat_penalty": 1.0}, "repeat_penalty"),
    (400, "top_logprobs is not supported by this model", {"logprobs": True, "top_logprobs": 5}, "top_logprobs"),
    (400, "response_format json_schema is not supported", {"response_format": {}}, "response_format"),
    (422, "extra fields not permitted: seed", {"seed": 1}, "seed"),
    # the field named is not one we sent, or nothing says it is refused: not a capability
    (400, "logprobs is not supported", {"seed": 1}, None),
    (400, "This model's maximum context length is 8 tokens", {"logprobs": True}, None),
    (503, "logprobs is not supported", {"logprobs": True}, None),
])
def test_refused_field_is_read_from_what_servers_answer(status, message, sent, refused):
    from datagen.llm.capabilities import refused_field

    assert refused_field(status, message, sent) == refused


def test_a_missing_capability_is_learnt_not_retried_or_counted(connect):
    params = GenParams(max_tokens=50, temperature=0.0, logprobs=True, top_logprobs=5)
    with OpenAIServer(refuse={"logprobs": LLAMA_CPP_NO_LOGPROBS}) as srv:
        llm = connect(srv, concurrency=4, max_retries=0, max_consecutive_failures=1)
        out = llm.generate(ask(*(f"q{i}" for i in range(12))), params)
        assert [c.text for c in out] == [answer_for(f"q{i}") for i in range(12)]
        assert all(c.logprobs is None for c in out)
        # at most the requests in flight when the first refusal came back were refused; nothing was
        # counted as a retry or a failure, and the breaker (threshold 1) never tripped
        refused = [r for r in srv.chat_requests if r.fault]
        assert 1 <= len(refused) <= 4 and len(srv.chat_requests) == 12 + len(refused)
        assert (llm.usage.retries, llm.usage.failures) == (0, 0)
        assert "logprobs" in llm.describe()["capabilities"]["refused"]
        assert not any("logprobs" in r.body or "top_logprobs" in r.body for r in srv.chat_requests[-12:])


def test_the_served_models_are_checked_and_the_server_kind_known(connect):
    with OpenAIServer(models=["smollm2-135m.gguf"], owned_by="llamacpp") as srv:
        with pytest.raises(LLMError, match=r"--model smolm2: the server at .* does not serve it; it serves: smollm2-135m.gguf"):
            OpenAICompatLLM("smolm2", base_url=srv.url, api_key_env=KEY_ENV)
        OpenAICompatLLM("smollm2-135m.gguf", base_url=srv.url, api_key_env=KEY_ENV).close()  # a served name
    with OpenAIServer(models=["test-model"], owned_by="llamacpp") as srv:
        llm = connect(srv)
        caps = llm.describe()["capabilities"]
        assert caps["models"] == ["test-model"] and caps["server"] == "llama.cpp"
        llm.generate(ask("greedy please"), GenParams(max_tokens=5, temperature=0.0))
        assert srv.chat_requests[-1].body["repeat_penalty"] == 1.0  # greedy is greedy there
    with OpenAIServer() as srv:  # no /v1/models: any name goes, nothing learnt
        llm = connect(srv)
        assert llm.describe()["capabilities"]["models"] is None
        llm.generate(ask("hi"), PARAMS)
        assert "repeat_penalty" not in srv.chat_requests[-1].body


def test_structured_output_falls_back_through_the_forms_servers_take(connect):
    from datagen.score.rating import rating_params

    params = rating_params(range(1, 6))
    literal = (500, "1 validation error: {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
                    "'msg': \"Input should be 'text' or 'json_object'\"}")
    with OpenAIServer(refuse={"response_format:json_schema": literal}) as srv:  # llama-cpp-python's answer
        llm = connect(srv, concurrency=1)
        llm.generate(ask("rate 1", "rate 2"), params)
        sent = [r.body.get("response_format", {}).get("type") for r in srv.chat_requests]
        assert sent == ["json_schema", "json_object", "json_object"]
        assert srv.chat_requests[-1].body["response_format"]["schema"]["properties"]["rating"]["enum"] == [1, 2, 3, 4, 5]
        assert llm.describe()["capabilities"]["structured_output"] == "json_object+schema"
        assert (llm.usage.retries, llm.usage.failures) == (0, 0)
    with OpenAIServer(refuse={"response_format": (400, "response_format is not supported")}) as srv:
        llm = connect(srv, concurrency=1)
        llm.generate(ask("rate 1", "rate 2"), params)
        assert [r.body.get("response_format", {}).get("type") for r in srv.chat_requests] == ["json_schema", "json_object", None, None]
        caps = llm.describe()["capabilities"]
        assert caps["structured_output"] is None and "response_format" in caps["refused"]
        assert srv.chat_requests[-1].body["max_tokens"] == 4  # no JSON to make room for


def test_rating_reads_json_replies_and_refuses_averages_from_a_sliver():
    import math

    from datagen.score.rating import rate
    from datagen.llm.base import Completion, TokenLogprob

    assert (rate(Completion('{"rating": 4}', "stop"), range(1, 6)).method, rate(Completion('{"rating": 4}', "stop"), range(1, 6)).value) == ("json", 4.0)
    assert rate(Completion('{"rating": 9}', "stop"), range(1, 6)).method == "unparsed"
    # 1.3% of the probability on the digits (seen on a real server): not averaged; the written digit counts
    sliver = [TokenLogprob("2", math.log(0.01), {"2": math.log(0.01), "1": math.log(0.003), "The": math.log(0.9)})]
    r = rate(Completion("2", "stop", logprobs=sliver), range(1, 6))
    assert (r.method, r.value, r.mass) == ("digit", 2.0, 0.013)
    r = rate(Completion("2", "stop", logprobs=sliver), range(1, 6), min_mass=0.0)
    assert r.method == "expected" and r.value == pytest.approx((2 * 0.01 + 0.003) / 0.013, abs=1e-5)


def test_a_serial_server_gets_one_request_at_a_time(connect):
    with OpenAIServer(models=["test-model"], owned_by="me", latency=0.2) as srv:  # llama-cpp-python's listing
        llm = connect(srv, concurrency=8)
        assert llm.concurrency == 1 and llm.describe()["capabilities"]["slots"] == 1
        llm.generate(ask("a", "b", "c"), PARAMS)
        arrivals = [r.at for r in srv.chat_requests]
        assert all(b - a >= 0.18 for a, b in zip(arrivals, arrivals[1:]))  # each sent after the one before was answered
