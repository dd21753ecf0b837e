"""A small but real OpenAI-compatible HTTP server for tests and benchmarks.

It speaks ``POST /v1/chat/completions`` and ``GET /v1/models`` on 127.0.0.1 (ephemeral port),
from an aiohttp app running in a background thread. Answers are deterministic:

* the text is ``"echo: <first 40 chars of the last user message> #<sha8 of it>"``, or whatever
  ``answer_fn(last user message)`` returns when one is given (e.g. a numbered task list for a
  Self-Instruct benchmark);
* tokens are whitespace words: ``max_tokens`` truncates the answer (finish_reason "length"),
  keeping the answer's own spacing and newlines; ``usage`` counts the words of all messages and
  of the answer;
* ``stop`` strings cut the answer; ``logprobs``/``top_logprobs`` are returned when asked, unless
  ``refuse`` names them: then such a request is answered with the given error, as a server
  without that capability does (llama.cpp without logits_all: HTTP 500 "logprobs is not
  supported ...").

Faults are injected deterministically per request: ``faults`` maps a last user message to the
list of faults of its successive attempts (``None`` = answer normally), or is a function
``(message, attempt) -> Fault | None``. Every request is recorded (body, Authorization header,
attempt number, injected fault) in ``server.received``.

Use it as a context manager::

    with OpenAIServer(latency=0.05) as srv:
        client = OpenAI(base_url=srv.url, api_key="x")

or as a process: ``python tests/openai_server.py --port 0 --latency 0.2`` prints the base URL on
stdout, then serves until stdin closes or the process is terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from aiohttp import web

FaultKind = str  # "429" | "500" | "503" | "400" | "401" | "slow" | "badjson" | "nochoices" | "nullcontent" | "html"
FaultPlan = Mapping[str, Sequence["Fault | None"]] | Callable[[str, int], "Fault | None"]


@dataclass(frozen=True)
class Fault:
    """One injected failure. ``retry_after`` (seconds) and ``retry_after_ms`` set the headers of a
    429/503; ``delay`` is how long a "slow" answer sleeps before responding normally."""

    kind: FaultKind
    retry_after: float | None = None
    retry_after_ms: float | None = None
    delay: float = 5.0


@dataclass
class Received:
    """A request as the server saw it."""

    path: str
    body: dict[str, Any]
    authorization: str | None
    message: str  # last user message
    attempt: int  # 0 for the first time this message was seen
    fault: FaultKind | None
    at: float  # time.monotonic() on arrival


def sha8(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def answer_for(message: str) -> str:
    """The full (untruncated) answer the server gives to a last user message."""
    return f"echo: {message[:40]} #{sha8(message)}"


def count_tokens(text: str) -> int:
    return len(text.split())


def mixed_faults(message: str, attempt: int) -> Fault | None:
    """A deterministic mix of every fault kind, keyed by the message hash: about 5 in 6 messages
    fail their first attempt, about 1 in 3 their second too, and every message succeeds by its third."""
    h = int(sha8(message), 16)
    if attempt == 0:
        kinds = [None, Fault("429", retry_after_ms=100), Fault("500"), Fault("503", retry_after=0.1),
                 Fault("badjson"), Fault("slow", delay=2.0)]
        return kinds[h % len(kinds)]
    if attempt == 1:
        return [None, None, Fault("nochoices")][(h // 7) % 3]
    return None


class OpenAIServer:
    """Chat-completions server in a background thread. ``url`` is the base URL (ends in /v1)."""

    def __init__(self, latency: float = 0.0, faults: FaultPlan | None = None, port: int = 0,
                 model: str = "test-model", answer_fn: Callable[[str], str] = answer_for,
                 models: Sequence[str] | None = None, owned_by: str = "datagen-tests",
                 refuse: Mapping[str, tuple[int, str]] | None = None) -> None:
        """``models``: the ids ``GET /v1/models`` lists (None: that endpoint answers 404, as on
        servers without it; any model name is answered). ``refuse``: request fields the server
        does not support (a name, or ``response_format:TYPE`` for one type of it), each with the
        status and message it answers when one is sent (as llama.cpp answers ``logprobs``
        without logits_all)."""
        self.models = list(models) if models is not None else None
        self.owned_by = owned_by
        self.refuse = dict(refuse or {})
        self.latency = latency
        self.faults = faults
        self.answer_fn = answer_fn
        self.model = model
        self.received: list[Received] = []
        self._port = port
        self._lock = threading.Lock()
        self._attempts: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> "OpenAIServer":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        sock.listen(1024)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._setup(sock))
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="openai-test-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("test server did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> "OpenAIServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _setup(self, sock: socket.socket) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    # ---- inspection ------------------------------------------------------------------------
    def attempts(self, message: str) -> int:
        """How many requests arrived for this last user message."""
        with self._lock:
            return self._attempts[message]

    @property
    def chat_requests(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == "/v1/chat/completions"]

    # ---- handlers --------------------------------------------------------------------------
    async def _models(self, request: web.Request) -> web.Response:
        self._record(request.path, {}, request.headers.get("Authorization"), "", None)
        if self.models is None:
            return web.json_response({"error": {"message": "Not Found"}}, status=404)
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": self.owned_by} for m in self.models]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        message = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
        auth = request.headers.get("Authorization")
        with self._lock:
            attempt = self._attempts[message]
            self._attempts[message] += 1
        refused = next((f for f in self.refuse if _sends(body, f)), None)
        fault = Fault(f"refuse:{refused}") if refused else self._fault(message, attempt)
        self._record(request.path, body, auth, message, fault, attempt)
        if self.latency:
            await asyncio.sleep(self.latency)
        if refused:
            status, text = self.refuse[refused]
            return _error(status, text, "unsupported", {})
        if fault is not None:
            response = await self._faulty(fault, auth)
            if response is not None:
                return response
        return web.json_response(self._completion(body, message))

    def _fault(self, message: str, attempt: int) -> Fault | None:
        if self.faults is None:
            return None
        if callable(self.faults):
            return self.faults(message, attempt)
        plan = self.faults.get(message, ())
        return plan[attempt] if attempt < len(plan) else None

    def _record(self, path: str, body: dict[str, Any], auth: str | None, message: str,
                fault: Fault | None, attempt: int = 0) -> None:
        rec = Received(path, body, auth, message, attempt, fault.kind if fault else None, time.monotonic())
        with self._lock:
            self.received.append(rec)

    async def _faulty(self, fault: Fault, auth: str | None) -> web.Response | None:
        """The response for an injected fault, or None when the request then proceeds normally."""
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = f"{fault.retry_after_ms:g}"
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            return None
        if fault.kind == "badjson":
            return web.Response(text='{"id": "x", "choices": [', content_type="application/json")
        if fault.kind == "nullcontent":  # a 200 whose message has no text (seen from real servers)
            return web.json_response({"id": "x", "object": "chat.completion", "created": 0, "model": self.model,
                                      "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": None}}]})
        if fault.kind == "nochoices":
            return web.json_response({"id": "x", "object": "chat.completion", "created": 0, "model": self.model})
        if fault.kind == "html":
            return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        if fault.kind == "401":  # like OpenAI, echo the key that was sent: clients must not leak it
            key = (auth or "").removeprefix("Bearer ")
            return _error(401, f"Incorrect API key provided: {key}.", "invalid_api_key", headers)
        messages = {"429": "Rate limit reached", "500": "internal error", "503": "overloaded",
                    "400": "This model's maximum context length is 8 tokens"}
        if fault.kind not in messages:
            raise ValueError(f"unknown fault kind {fault.kind!r}")
        return _error(int(fault.kind), messages[fault.kind], f"e{fault.kind}", headers)

    def _completion(self, body: dict[str, Any], message: str) -> dict[str, Any]:
        words = re.findall(r"\S+\s*", self.answer_fn(message).strip())  # each word with the space after it
        finish = "stop"
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        if max_tokens is not None and len(words) > max_tokens:
            words, finish = words[:max_tokens], "length"
        text = "".join(words).rstrip()
        for stop in body.get("stop") or []:
            if stop in text:
                text, finish = text[: text.index(stop)], "stop"
        prompt_tokens = sum(count_tokens(m["content"]) for m in body["messages"])
        completion_tokens = count_tokens(text)
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish,
                                  "message": {"role": "assistant", "content": text}}
        if body.get("logprobs"):
            choice["logprobs"] = {"content": [_logprob(w, body.get("top_logprobs") or 0) for w in text.split()]}
        return {
            "id": f"chatcmpl-{sha8(message)}", "object": "chat.completion", "created": 0,
            "model": body.get("model", self.model), "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }


def _sends(body: dict[str, Any], what: str) -> bool:
    """Whether a request body holds ``what``: a field name, or ``response_format:TYPE``."""
    name, _, kind = what.partition(":")
    if name not in body:
        return False
    return not kind or (isinstance(body[name], dict) and body[name].get("type") == kind)


def _logprob(token: str, top: int) -> dict[str, Any]:
    lp = -(int(sha8(token), 16) % 1000) / 1000.0
    alternatives = [{"token": token, "logprob": lp, "bytes": None}]
    alternatives += [{"token": f"{token}~{k}", "logprob": lp - k, "bytes": None} for k in range(1, top)]
    return {"token": token, "logprob": lp, "bytes": None, "top_logprobs": alternatives[:top]}


def _error(status: int, message: str, code: str, headers: dict[str, str]) -> web.Response:
    body = {"error": {"message": message, "type": "test_error", "code": code}}
    return web.json_response(body, status=status, headers=headers)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    ap.add_argument("--mixed-faults", action="store_true", help="inject the faults of mixed_faults()")
    ap.add_argument("--models", default=None, help="comma-separated ids GET /v1/models lists (default: that endpoint answers 404)")
    args = ap.parse_args(argv)
    models = args.models.split(",") if args.models else None
    with OpenAIServer(latency=args.latency, faults=mixed_faults if args.mixed_faults else None,
                      port=args.port, models=models) as srv:
        print(srv.url, flush=True)
        try:
            sys.stdin.read()  # serve until the parent closes our stdin (or kills us)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
