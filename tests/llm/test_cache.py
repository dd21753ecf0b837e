"""The request cache: keyed by (model, messages, params, seed); only successes are stored."""

from datagen.llm.base import ChatRequest, GenParams
from datagen.llm.cache import CachedLLM, RequestCache, request_key
from scripted import ScriptedLLM


def reqs(*texts, seed=None):
    return [ChatRequest.of([{"role": "user", "content": t}], seed=seed) for t in texts]


def test_hits_and_misses(cache_path):
    inner = ScriptedLLM()
    llm = CachedLLM(inner, RequestCache(cache_path))
    p = GenParams(max_tokens=20, temperature=0.0)
    first = llm.generate(reqs("a", "b", "c"), p)
    assert len(inner.calls) == 3 and not any(c.cached for c in first)
    second = llm.generate(reqs("a", "b", "c", "d"), p)
    assert len(inner.calls) == 4  # only "d" was sent
    assert [c.cached for c in second] == [True, True, True, False]
    assert [c.text for c in second[:3]] == [c.text for c in first]
    assert llm.cache.hits == 3 and llm.cache.misses == 4
    # a fresh process (new cache object on the same file) still hits
    again = CachedLLM(ScriptedLLM(), RequestCache(cache_path))
    assert all(c.cached for c in again.generate(reqs("a", "b"), p))


def test_key_covers_model_params_and_seed():
    r = reqs("x")[0]
    p = GenParams()
    base = request_key("m", r, p)
    assert request_key("m2", r, p) != base
    assert request_key("m", r, GenParams(temperature=0.1)) != base
    assert request_key("m", r, GenParams(seed=1)) != base
    assert request_key("m", reqs("x", seed=5)[0], p) != base
    assert request_key("m", ChatRequest.of([{"role": "user", "content": "x"}], tag="other"), p) == base


def test_failures_are_not_cached(cache_path):
    fail = {"on": True}

    def answer(req, params):
        return RuntimeError("boom") if fail["on"] else "fine"

    inner = ScriptedLLM(answer)
    llm = CachedLLM(inner, RequestCache(cache_path))
    p = GenParams()
    assert not llm.generate(reqs("q"), p)[0].ok
    fail["on"] = False
    c = llm.generate(reqs("q"), p)[0]
    assert c.ok and not c.cached and len(inner.calls) == 2
    assert llm.generate(reqs("q"), p)[0].cached
