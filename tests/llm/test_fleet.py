"""One backend over several OpenAI-compatible servers (``--base-url`` given more than once): the
requests are spread, a failing server is set aside and its requests go elsewhere, the request
cache does not care which server answered. Real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import socket
import uuid
from contextlib import ExitStack
from typing import Iterator

import pytest

from datagen.llm import BackendUnavailable, ChatRequest, GenParams, LLMConfig, LLMError, make_llm
from datagen.llm.openai_compat import OpenAICompatLLM
from openai_server import Fault, OpenAIServer, answer_for

KEY_ENV = "DATAGEN_TEST_OPENAI_KEY"
PARAMS = GenParams(max_tokens=50)


def ask(prefix: str, n: int) -> list[ChatRequest]:
    return [ChatRequest.of([("user", f"{prefix} {i}")]) for i in range(n)]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-" + uuid.uuid4().hex)
    monkeypatch.setenv("DATAGEN_PROGRESS", "0")


@pytest.fixture
def servers() -> Iterator:
    with ExitStack() as stack:
        def start(*configs: dict) -> list[OpenAIServer]:
            return [stack.enter_context(OpenAIServer(**c)) for c in configs]
        yield start


def fleet(urls: list[str], **kw) -> OpenAICompatLLM:
    settings = dict(api_key_env=KEY_ENV, concurrency=4, timeout=2.0, backoff_base=0.01, backoff_max=0.05)
    settings.update(kw)
    return OpenAICompatLLM("test-model", base_url=urls, **settings)


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return f"http://127.0.0.1:{port}/v1"


def test_requests_are_spread_over_the_servers_and_answered_once(servers):
    a, b, c = servers({"latency": 0.02}, {"latency": 0.02}, {"latency": 0.02})
    reqs = ask("spread", 60)
    with fleet([a.url, b.url, c.url]) as llm:
        out = llm.generate(reqs, PARAMS)
        d = llm.describe()
    assert [o.text for o in out] == [answer_for(f"spread {i}") for i in range(60)]
    served = [len(s.chat_requests) for s in (a, b, c)]
    assert sum(served) == 60 and min(served) >= 10, served  # every server took a share, nothing was sent twice
    assert llm.concurrency == 12 and d["base_url"] == [a.url, b.url, c.url]
    assert [e["answered"] for e in d["endpoints"]] == served


def test_a_failing_server_is_set_aside_and_its_requests_answered_elsewhere(servers):
    bad, good = servers({"faults": lambda message, attempt: Fault("500")}, {})
    reqs = ask("outage", 40)
    with fleet([bad.url, good.url], max_retries=0) as llm:  # no retries: only the failover saves them
        out = llm.generate(reqs, PARAMS)
        d = llm.describe()
    assert all(o.ok for o in out) and [o.text for o in out] == [answer_for(f"outage {i}") for i in range(40)]
    bad_ep, good_ep = d["endpoints"]
    assert bad_ep["set_aside"] >= 1 and bad_ep["answered"] == 0
    assert len(bad.chat_requests) <= 8  # set aside after its first failures, not sent every request
    assert good_ep["answered"] == 40 and llm.usage.failures == 0


def test_a_server_that_refuses_connections_is_worked_around(servers):
    (good,) = servers({})
    with fleet([closed_port_url(), good.url], max_retries=0, probe=False) as llm:
        out = llm.generate(ask("refused", 20), PARAMS)
    assert all(o.ok for o in out) and len(good.chat_requests) == 20


def test_a_server_set_aside_comes_back_after_probation(servers, monkeypatch):
    import datagen.llm.endpoints as endpoints

    monkeypatch.setattr(endpoints, "SET_ASIDE_FIRST", 0.2)
    flaky_until = {"n": 0}

    def down_for_a_while(message: str, attempt: int):
        flaky_until["n"] += 1
        return Fault("503") if flaky_until["n"] <= 3 else None

    flaky, good = servers({"faults": down_for_a_while, "latency": 0.05}, {"latency": 0.05})
    with fleet([flaky.url, good.url], concurrency=2, max_retries=0) as llm:
        first = llm.generate(ask("early", 6), PARAMS)
        import time

        time.sleep(0.3)  # past the set-aside: the flaky server is on probation now
        later = llm.generate(ask("late", 40), PARAMS)
        d = llm.describe()
    assert all(o.ok for o in first + later)
    assert d["endpoints"][0]["set_aside"] >= 1 and d["endpoints"][0]["answered"] >= 5  # it took work again


def test_when_every_server_fails_the_breaker_stops_the_batch(servers):
    down = {"faults": lambda message, attempt: Fault("500")}
    a, b = servers(down, down)
    with fleet([a.url, b.url], concurrency=2, max_retries=1, max_consecutive_failures=4) as llm:
        with pytest.raises(BackendUnavailable, match=r"the 2 servers \(http://127.0.0.1"):
            llm.generate(ask("dark", 30), PARAMS)


def test_every_server_must_serve_the_model(servers):
    a, b = servers({"models": ["test-model"]}, {"models": ["other-model"]})
    with pytest.raises(LLMError, match=rf"the server at {b.url} does not serve it"):
        fleet([a.url, b.url])


def test_the_request_cache_does_not_care_which_server_answered(servers, tmp_path):
    a, b = servers({}, {})
    cfg = dict(backend="openai", model="test-model", api_key_env=KEY_ENV, cache=str(tmp_path / "c.sqlite"))
    reqs = ask("cached", 12)
    first = make_llm(LLMConfig(base_url=[a.url, b.url], **cfg)).generate(reqs, PARAMS)
    sent = len(a.chat_requests) + len(b.chat_requests)
    again = make_llm(LLMConfig(base_url=[b.url], **cfg)).generate(reqs, PARAMS)  # another fleet: every answer from the cache
    assert [c.text for c in again] == [c.text for c in first] and sent == 12
    assert len(a.chat_requests) + len(b.chat_requests) == 12


def test_base_url_is_repeatable_on_the_command_line_and_one_stays_a_string(tmp_path):
    from datagen.cli import build_parser
    from datagen.commands.common import llm_config

    args = build_parser().parse_args(["filter", "-i", "x.jsonl", "-o", str(tmp_path / "o"), "--llm", "openai",
                                      "--base-url", "http://a:8000/v1", "--base-url", "http://b:8000/v1"])
    assert llm_config(args).base_url == ["http://a:8000/v1", "http://b:8000/v1"]
    args = build_parser().parse_args(["filter", "-i", "x.jsonl", "-o", str(tmp_path / "o"), "--base-url", "http://a:8000/v1"])
    assert llm_config(args).base_url == "http://a:8000/v1"  # as in the settings of runs made before fleets
