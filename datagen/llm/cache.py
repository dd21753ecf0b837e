"""Request cache: sqlite, keyed by the hash of (model, messages, params, seed).

Only usable completions are stored (a success with some text: never a failure, a malformed or
an empty reply), and only usable ones are served (an entry an older version stored that is not
is ignored), so a rerun re-sends exactly the requests that have no usable answer yet. The key never contains credentials: it is built from the model id, the messages and the
sampling parameters alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

from datagen.core.kvcache import SqliteStore, default_cache_dir
from datagen.llm.base import ChatRequest, Completion, GenParams, LLM, Usage


def default_cache_path() -> Path:
    return default_cache_dir() / "llm_cache.sqlite"


def request_key(model_id: str, request: ChatRequest, params: GenParams) -> str:
    p = params.to_dict()
    if request.seed is not None:
        p["seed"] = request.seed
    blob = json.dumps(
        {"model": model_id, "messages": [list(m) for m in request.messages], "params": p},
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class RequestCache(SqliteStore):
    """Usable completions by :func:`request_key`, with the model that wrote each and when."""

    table = "completions"
    schema = ("CREATE TABLE IF NOT EXISTS completions ("
              " key TEXT PRIMARY KEY, model TEXT NOT NULL, value TEXT NOT NULL, created REAL NOT NULL)")

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(Path(path) if path else default_cache_path())
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        out: dict[str, Completion] = {}
        for k, v in self.rows(keys):
            try:
                completion = Completion.from_dict(json.loads(v))
            except (ValueError, KeyError, TypeError):  # a damaged entry: ask again
                continue
            if completion.usable:
                out[k] = completion
        return out

    def put(self, key: str, completion: Completion) -> None:
        if not completion.usable:
            return
        value = json.dumps(completion.to_dict(), ensure_ascii=False)
        self.write("INSERT OR REPLACE INTO completions (key, model, value, created) VALUES (?, ?, ?, ?)",
                   [(key, completion.model, value, time.time())])


class CachedLLM:
    """Wraps a backend: answers what the cache knows, sends only the misses, stores successes
    as soon as each batch returns."""

    def __init__(self, inner: LLM, cache: RequestCache) -> None:
        self.inner = inner
        self.cache = cache
        self.model_id = inner.model_id
        self.usage: Usage = inner.usage

    def generate(self, requests: Sequence[ChatRequest], params: GenParams) -> list[Completion]:
        keys = [request_key(self.model_id, r, params) for r in requests]
        known = self.cache.get_many(keys)
        results: list[Completion | None] = [None] * len(requests)
        todo: list[int] = []
        for i, k in enumerate(keys):
            hit = known.get(k)
            if hit is not None:
                hit.cached = True
                results[i] = hit
            else:
                todo.append(i)
        self.cache.hits += len(requests) - len(todo)
        self.cache.misses += len(todo)
        self.usage.add(cache_hits=len(requests) - len(todo))
        if todo:
            # Store each completion as soon as its batch is back; if the inner backend raises
            # (budget, interrupt), what already finished is kept.
            def on_result(j: int, c: Completion) -> None:
                self.cache.put(keys[todo[j]], c)

            fresh = _generate_with_callback(self.inner, [requests[i] for i in todo], params, on_result)
            for j, i in enumerate(todo):
                results[i] = fresh[j]
        return [r for r in results if r is not None]

    def describe(self) -> dict[str, Any]:
        d = dict(self.inner.describe())
        d["cache"] = str(self.cache.path)
        return d

    def __getattr__(self, name: str) -> Any:  # token scoring etc. of the local backend
        return getattr(self.inner, name)


def _generate_with_callback(llm: LLM, requests: list[ChatRequest], params: GenParams, cb) -> list[Completion]:
    gen = getattr(llm, "generate_iter", None)
    if gen is None:
        out = llm.generate(requests, params)
        for j, c in enumerate(out):
            cb(j, c)
        return out
    results: list[Completion | None] = [None] * len(requests)
    for j, c in gen(requests, params):
        results[j] = c
        cb(j, c)
    return [r for r in results if r is not None]
