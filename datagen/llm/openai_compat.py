"""Backend for any OpenAI-compatible chat-completions server: OpenAI, vLLM, Ollama, llama.cpp...

How it works:

* Requests run on a private asyncio loop in a daemon thread, owned by the backend for its whole
  life, so the HTTP connection pool, the rate limiters and the concurrency bound carry over from
  one ``generate`` call to the next. The sync ``generate_iter`` hands results over through a
  queue as each one finishes; closing it (or Ctrl-C) cancels what is still in flight.
* The ``openai`` client runs with ``max_retries=0``: retries are ours. 429, 5xx, timeouts,
  connection errors and malformed bodies are retried with exponential backoff and full jitter,
  never sooner than a ``Retry-After``/``retry-after-ms`` header asks. Other 4xx fail at once. A
  request that still fails comes back as a Completion with ``error`` set.
* Optional requests-per-minute and tokens-per-minute token buckets; the token bucket charges an
  estimate before the call and settles with the real usage after it.
* A token or cost budget: once spent, no new request starts; the ones in flight finish and are
  yielded, then :class:`BudgetExceeded` is raised.
* The server's failures are never answers. A request that fails for good (after its retries)
  with a failure that says the server, not the request, is at fault (5xx, 429, timeouts,
  connection errors, malformed bodies such as null content, 401/403/404) makes the batch raise
  :class:`BackendUnavailable` once the rest of it is done, so that the caller does not take the
  failure as the prompt's answer (a run does not seal it) and a rerun sends it again. A circuit
  breaker stops the batch early: after ``max_consecutive_failures`` such failures in a row
  (across calls) no new request starts and the ones in flight finish first. A request-specific
  error (400, 413, 422: a prompt too long for the context) is the request's answer, never trips
  the breaker, and any success resets its count.

The API key is read from the environment variable named by ``api_key_env`` and never leaves the
HTTP client: it is not in ``describe()``, in logs or in error messages.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import queue
import random
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

import openai
from openai.types.chat import ChatCompletion
from datagen.core.progress import bar as progress_bar
from datagen.llm.base import JSON_MIN_TOKENS, BackendUnavailable, BudgetExceeded, ChatRequest, Completion, GenParams, TokenLogprob, Usage
from datagen.core.errors import LLMError
from datagen.llm.capabilities import JSON_DIALECTS, LLAMA_CPP_PYTHON, OPTIONAL_FIELDS, SERVER_MARKS, Capabilities, refused_field

try:  # openai >= 3 is built on httpx2, older releases on httpx
    import httpx2 as httpx
except ImportError:  # pragma: no cover - depends on the installed openai
    import httpx  # type: ignore[no-redef]

if TYPE_CHECKING:
    from datagen.llm import LLMConfig

log = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"
NO_KEY = "sk-no-key"  # sent to servers that need no key (vLLM, Ollama, llama.cpp...)
RETRY_STATUSES = frozenset({408, 409, 429})  # plus every 5xx
SYSTEMIC_STATUSES = frozenset({401, 403, 404})  # not retried, but every request will fail alike
MAX_RETRY_AFTER = 600.0  # a server asking for a longer pause fails the request instead
_DONE = object()  # end-of-batch marker on the result queue


class _Malformed(Exception):
    """A 200 response that is not a usable chat completion."""


@dataclass
class _Failure:
    message: str
    retryable: bool
    retry_after: float | None = None
    rate_limited: bool = False
    fatal_for_all: bool = False  # not retried, yet every request would fail alike (a refused key, an unknown model)

    @property
    def systemic(self) -> bool:
        """The server, the key or the model is at fault, not this request: counts toward the breaker."""
        return self.retryable or self.fatal_for_all


class _RateLimiter:
    """Token bucket for a per-minute limit, holding one second's worth of burst (at least 1).

    ``acquire`` waits until the bucket holds ``amount`` (or is full, for an amount larger than the
    burst) and may overdraw it; ``give_back`` settles an estimate against what was really used
    (a negative amount deepens the debt)."""

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    async def acquire(self, amount: float) -> None:
        async with self.lock:  # first come, first served
            need = min(amount, self.capacity)
            self._refill()
            while self.level < need:
                await asyncio.sleep((need - self.level) / self.rate)
                self._refill()
            self.level -= amount

    def give_back(self, amount: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level + amount)


@dataclass
class _Runtime:
    """Everything bound to the backend's event loop; built on first use, dropped by close()."""

    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    client: openai.AsyncOpenAI
    semaphore: asyncio.Semaphore
    rpm: _RateLimiter | None
    tpm: _RateLimiter | None
    stop_loop: weakref.finalize
    pid: int  # a forked child rebuilds its own: the loop thread does not survive fork()
    cooldown_until: float = 0.0  # monotonic time before which no request is sent (after a 429)
    failures_in_a_row: int = 0  # requests that failed for good, systemically, since the last success (across batches)
    last_failure: str = ""


@dataclass
class _Batch:
    """One generate_iter call: results flow to the caller's thread through ``results``."""

    results: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    task: asyncio.Task | None = None
    cancelled: bool = False
    server_failures: int = 0  # requests of this batch that failed for good, the server's fault
    last_failure: str = ""

    def cancel(self) -> None:  # runs on the loop thread
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()


class OpenAICompatLLM:
    """Chat completions from an OpenAI-compatible server (see the module docstring)."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        rpm: float | None = None,
        tpm: float | None = None,
        timeout: float = 120.0,
        max_retries: int = 6,
        max_tokens_budget: int | None = None,
        max_cost: float | None = None,
        price_in: float = 0.0,
        price_out: float = 0.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_consecutive_failures: int | None = None,
        probe: bool = True,
    ) -> None:
        """``price_in``/``price_out`` are per 1M tokens. Backoff before retry n (from 0) is uniform
        in [0, min(backoff_max, backoff_base * 2**n)] seconds. ``max_consecutive_failures``: the
        circuit breaker's threshold (None: ``max(20, 2 * concurrency)``, 0: never trips). ``probe``:
        ask the server which models it serves (``GET /models``) now, and refuse a ``model`` it does
        not list (see :meth:`_probe`)."""
        if concurrency < 1:
            raise LLMError("concurrency must be >= 1")
        if max_consecutive_failures is not None and max_consecutive_failures < 0:
            raise LLMError("max_consecutive_failures must be >= 0 (0: never stop)")
        if max_retries < 0 or timeout <= 0 or (rpm is not None and rpm <= 0) or (tpm is not None and tpm <= 0):
            raise LLMError("max_retries must be >= 0; timeout, rpm and tpm must be > 0")
        if max_cost is not None and not (price_in or price_out):
            raise LLMError("a cost budget needs prices: set price_in and/or price_out (per 1M tokens)")
        self.model_id = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL
        self.api_key_env = api_key_env
        self._api_key = _read_key(api_key_env, self.base_url)
        self.concurrency = concurrency
        self.rpm, self.tpm = rpm, tpm
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_tokens_budget, self.max_cost = max_tokens_budget, max_cost
        self.price_in, self.price_out = price_in, price_out
        self.backoff_base, self.backoff_max = backoff_base, backoff_max

        self.usage = Usage()
        self._runtime_lock = threading.Lock()
        self._rt: _Runtime | None = None
        self.capabilities = Capabilities()
        self.requested_concurrency = concurrency
        if probe:
            self._probe()
        self.max_consecutive_failures = max(20, 2 * concurrency) if max_consecutive_failures is None else max_consecutive_failures

    @classmethod
    def from_config(cls, cfg: LLMConfig) -> "OpenAICompatLLM":
        if not cfg.model:
            raise LLMError("the openai backend needs a model name (the one the server serves)")
        return cls(
            cfg.model, base_url=cfg.base_url, api_key_env=cfg.api_key_env, concurrency=cfg.concurrency,
            rpm=cfg.rpm, tpm=cfg.tpm, timeout=cfg.timeout, max_retries=cfg.max_retries,
            max_tokens_budget=cfg.max_tokens_budget, max_cost=cfg.max_cost,
            price_in=cfg.price_in, price_out=cfg.price_out, max_consecutive_failures=cfg.max_consecutive_failures,
        )

    def _probe(self) -> None:
        """``GET /models`` once, before any work: the models the server serves, and what kind of
        server it is. A server that lists models but not ``model_id`` answers any name with its
        own model (llama.cpp) or fails every request later: either way ``--model`` is a mistake,
        refused now with the names it serves. No answer (no such endpoint, no server yet) is not
        an error here: the requests themselves will tell."""
        headers = {"Authorization": f"Bearer {self._api_key}"}
        try:
            with httpx.Client(timeout=min(self.timeout, 10.0)) as client:
                response = client.get(self.base_url.rstrip("/") + "/models", headers=headers)
            listing = response.json() if response.status_code == 200 else None
        except Exception:  # noqa: BLE001 - any failure means "unknown": the requests will tell
            return
        data = listing.get("data") if isinstance(listing, dict) else None
        if not isinstance(data, list):
            return
        ids = [str(m.get("id")) for m in data if isinstance(m, dict) and m.get("id") is not None]
        owners = {str(m.get("owned_by", "")).lower() for m in data if isinstance(m, dict)}
        self.capabilities.models = ids
        self.capabilities.server = next((kind for kind, marks in SERVER_MARKS if owners & marks), None)
        if LLAMA_CPP_PYTHON in owners:  # its own form of response_format
            self.capabilities.json_dialect = 1
        slots = self._server_slots(client_headers=headers, owners=owners)
        if slots is not None and slots < self.concurrency:
            # more requests in flight than the server serves at once only queue there, where
            # long answers time out: send as many as it serves
            log.info("the server serves %d request(s) at a time: concurrency %d -> %d", slots, self.concurrency, slots)
            self.capabilities.slots = slots
            self.concurrency = slots
        if ids and self.model_id not in ids:
            shown = ", ".join(ids[:10]) + (", ..." if len(ids) > 10 else "")
            raise LLMError(f"--model {self.model_id}: the server at {_redact_url(self.base_url)} does not serve it; it serves: {shown}")

    def _server_slots(self, client_headers: dict[str, str], owners: set[str]) -> int | None:
        """How many requests the server serves at once, where it says: llama-cpp-python's server
        serves one (it holds a lock around the model); llama.cpp's own server tells its slots in
        ``GET /props``."""
        if LLAMA_CPP_PYTHON in owners:
            return 1
        if "llamacpp" not in owners:
            return None
        root = self.base_url.rstrip("/").removesuffix("/v1")
        try:
            with httpx.Client(timeout=min(self.timeout, 10.0)) as client:
                props = client.get(root + "/props", headers=client_headers).json()
            slots = props.get("total_slots") if isinstance(props, dict) else None
        except Exception:  # noqa: BLE001 - unknown: keep the configured concurrency
            return None
        return slots if isinstance(slots, int) and slots > 0 else None

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "openai", "model": self.model_id, "base_url": _redact_url(self.base_url),
            "api_key_env": self.api_key_env, "concurrency": self.concurrency, "requested_concurrency": self.requested_concurrency, "rpm": self.rpm,
            "tpm": self.tpm, "timeout": self.timeout, "max_retries": self.max_retries,
            "max_tokens_budget": self.max_tokens_budget, "max_cost": self.max_cost,
            "price_in": self.price_in, "price_out": self.price_out, "max_consecutive_failures": self.max_consecutive_failures,
            "capabilities": self.capabilities.to_dict(),
        }

    # ---- sync API --------------------------------------------------------------------------
    def generate(self, requests: Sequence[ChatRequest], params: GenParams) -> list[Completion]:
        out: list[Completion] = [None] * len(requests)  # type: ignore[list-item]
        for i, completion in self.generate_iter(requests, params):
            out[i] = completion
        return out

    def generate_iter(self, requests: Sequence[ChatRequest], params: GenParams) -> Iterator[tuple[int, Completion]]:
        """Yield ``(index, completion)`` as each request finishes. Raises BudgetExceeded (the
        budget is spent) or BackendUnavailable (the circuit breaker tripped) after yielding
        everything that finished."""
        requests = list(requests)
        if not requests:
            return
        rt = self._runtime()
        batch = _Batch()
        future = asyncio.run_coroutine_threadsafe(self._run(rt, batch, requests, params), rt.loop)
        bar = progress_bar(len(requests), self.model_id, "req", dynamic_ncols=True)
        finished = False
        try:
            while (item := batch.results.get()) is not _DONE:
                bar.update(1)
                if self.usage.retries or self.usage.failures:
                    bar.set_postfix(retries=self.usage.retries, failed=self.usage.failures, refresh=False)
                yield item
            finished = True
        finally:
            bar.close()
            if not finished:  # closed early, or interrupted: cancel what is in flight, wait for it
                rt.loop.call_soon_threadsafe(batch.cancel)
                _drain(batch.results, timeout=30.0)
        future.result()  # BudgetExceeded, or a bug in this module

    def close(self) -> None:
        """Close the connections and stop the event loop (not while a batch is running). A later
        call starts afresh."""
        with self._runtime_lock:
            rt, self._rt = self._rt, None
        if rt is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(rt.client.close(), rt.loop).result(10)
        finally:
            rt.stop_loop()
            rt.thread.join(10)
            if not rt.thread.is_alive():
                rt.loop.close()

    def __enter__(self) -> "OpenAICompatLLM":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _runtime(self) -> _Runtime:
        with self._runtime_lock:
            if self._rt is None or self._rt.pid != os.getpid():
                # one pooled connection per concurrent request, kept alive between batches
                limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
                client = openai.AsyncOpenAI(
                    api_key=self._api_key, base_url=self.base_url, timeout=self.timeout, max_retries=0,
                    http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=self.timeout),
                )
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=f"openai-{self.model_id}", daemon=True)
                thread.start()
                self._rt = _Runtime(
                    loop, thread, client, asyncio.Semaphore(self.concurrency),
                    _RateLimiter(self.rpm) if self.rpm else None, _RateLimiter(self.tpm) if self.tpm else None,
                    # stop the loop thread if this backend is dropped without close()
                    weakref.finalize(self, loop.call_soon_threadsafe, loop.stop),
                    os.getpid(),
                )
            return self._rt

    # ---- on the event loop -----------------------------------------------------------------
    async def _run(self, rt: _Runtime, batch: _Batch, requests: list[ChatRequest], params: GenParams) -> None:
        """Send the batch through at most ``concurrency`` workers (the shared semaphore also bounds
        concurrent batches). Each worker puts its results on the queue; the end marker goes last."""
        batch.task = asyncio.current_task()
        pending = iter(enumerate(requests))  # shared by the workers: each request is taken once
        unsent = 0

        async def worker() -> None:
            nonlocal unsent
            for index, request in pending:
                async with rt.semaphore:
                    if self._budget_spent() or self._tripped(rt):
                        unsent += 1
                        continue
                    completion = await self._complete(rt, request, params, batch)
                batch.results.put((index, completion))

        workers: list[asyncio.Future[None]] = []
        try:
            if batch.cancelled:
                return
            workers = [asyncio.ensure_future(worker()) for _ in range(min(self.concurrency, len(requests)))]
            await asyncio.gather(*workers)
            if self._tripped(rt):
                failed, rt.failures_in_a_row = rt.failures_in_a_row, 0  # the next call starts afresh
                raise BackendUnavailable(
                    f"the server at {_redact_url(self.base_url)} failed {failed} requests in a row after "
                    f"their retries (last: {rt.last_failure}); {unsent} of {len(requests)} requests were not sent")
            if batch.server_failures:  # never let the caller take the server's failures as answers
                raise BackendUnavailable(
                    f"the server at {_redact_url(self.base_url)} failed {batch.server_failures} of {len(requests)} "
                    f"requests after their retries (last: {batch.last_failure})")
            if unsent:
                raise BudgetExceeded(f"{self._budget_spent()}; {unsent} of {len(requests)} requests were not "
                                     "sent (finished ones are kept: rerun with a larger budget)")
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            batch.results.put(_DONE)

    def _tripped(self, rt: _Runtime) -> bool:
        """Whether the circuit breaker is open."""
        return 0 < self.max_consecutive_failures <= rt.failures_in_a_row

    async def _complete(self, rt: _Runtime, request: ChatRequest, params: GenParams, batch: _Batch | None = None) -> Completion:
        estimate = _prompt_tokens_guess(request) + params.max_tokens
        attempt = -1
        while attempt < self.max_retries:
            attempt += 1
            body = self._body(request, params)  # without the fields the server refused so far
            await self._wait_for_capacity(rt, estimate)
            try:
                # The SDK's documented raw-request method: the same transport, auth, error types
                # and typed response as chat.completions.create, without its parameter transform
                # (measured: ~0.5 ms of CPU per request, a third of the client's cost).
                response = await rt.client.post("/chat/completions", body=body, cast_to=ChatCompletion)
                completion = self._parse(response, request)
            except (openai.APIError, _Malformed, json.JSONDecodeError) as exc:
                if rt.tpm:
                    rt.tpm.give_back(estimate)
                if self._learn_refusal(exc, body):
                    attempt -= 1  # a missing capability, not a failure: send again without the field
                    continue
                failure = self._failure(exc)
            else:
                used = completion.prompt_tokens + completion.completion_tokens
                cost = (completion.prompt_tokens * self.price_in + completion.completion_tokens * self.price_out) / 1e6
                self.usage.add(requests=1, failures=int(not completion.ok), prompt_tokens=completion.prompt_tokens,
                               completion_tokens=completion.completion_tokens, cost=cost)
                if rt.tpm:
                    rt.tpm.give_back(estimate - used)
                rt.failures_in_a_row = 0
                if "response_format" in body:
                    self.capabilities.structured_ok = True
                return completion
            if not failure.retryable or attempt == self.max_retries:
                break
            delay = random.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))
            if failure.retry_after is not None:
                delay = max(delay, failure.retry_after)
                if failure.rate_limited:  # the whole account is limited: hold every request back
                    rt.cooldown_until = max(rt.cooldown_until, time.monotonic() + failure.retry_after)
            self.usage.add(retries=1)
            log.debug("%s; retry %d/%d in %.2fs", failure.message, attempt + 1, self.max_retries, delay)
            await asyncio.sleep(delay)
        tries = f" (after {attempt + 1} attempts)" if attempt else ""
        self.usage.add(requests=1, failures=1)
        if failure.systemic:
            rt.failures_in_a_row += 1
            rt.last_failure = failure.message
            if batch is not None:
                batch.server_failures += 1
                batch.last_failure = failure.message
        log.warning("request failed: %s%s", failure.message, tries)
        return Completion(text="", finish_reason="error", model=self.model_id, error=failure.message + tries)

    def _learn_refusal(self, exc: BaseException, body: Mapping[str, Any]) -> bool:
        """Whether ``exc`` refuses an optional field of ``body``; if so the field is dropped from
        every later request (see OPTIONAL_FIELDS)."""
        if not isinstance(exc, openai.APIStatusError):
            return False
        message = self._scrub(_error_detail(exc))
        name = refused_field(exc.status_code, message, body)
        if name is None:
            return False
        if name in self.capabilities.refused:  # learnt meanwhile from another request in flight
            return True
        caps = self.capabilities
        if name == "response_format":
            sent = body["response_format"].get("type")
            if sent != JSON_DIALECTS[caps.json_dialect][1]:
                return True  # another request in flight already moved on to the next form
            if caps.json_dialect + 1 < len(JSON_DIALECTS):  # try the next way of asking for a schema
                caps.json_dialect += 1
                log.info("the server refused response_format type %r (%s); trying the next form", sent, message)
                return True
        caps.refused[name] = f"HTTP {exc.status_code}: {message}"
        log.warning("the server does not support '%s' (HTTP %d: %s); sending requests without it",
                    name, exc.status_code, message)
        return True

    def _budget_spent(self) -> str | None:
        """Why no new request may start, or None while the budget lasts."""
        if self.max_tokens_budget is not None and self.usage.total_tokens >= self.max_tokens_budget:
            return f"token budget spent: {self.usage.total_tokens} of {self.max_tokens_budget} tokens"
        if self.max_cost is not None and self.usage.cost >= self.max_cost:
            return f"cost budget spent: ${self.usage.cost:.4f} of ${self.max_cost:.4f}"
        return None

    async def _wait_for_capacity(self, rt: _Runtime, estimate: int) -> None:
        pause = rt.cooldown_until - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        if rt.rpm:
            await rt.rpm.acquire(1)
        if rt.tpm:
            await rt.tpm.acquire(estimate)

    # ---- mapping ---------------------------------------------------------------------------
    def _body(self, request: ChatRequest, params: GenParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_id, "messages": request.as_dicts(), "max_tokens": params.max_tokens,
            "temperature": params.temperature, "top_p": params.top_p,
        }
        seed = request.seed if request.seed is not None else params.seed
        if seed is not None:
            body["seed"] = seed
        if params.stop:
            body["stop"] = list(params.stop)
        if params.logprobs:
            body["logprobs"] = True
            if params.top_logprobs:
                body["top_logprobs"] = params.top_logprobs
        if params.json_schema is not None and "response_format" not in self.capabilities.refused:
            _, _, form = JSON_DIALECTS[self.capabilities.json_dialect]
            body["response_format"] = form(json.loads(params.json_schema))
            body["max_tokens"] = max(params.max_tokens, JSON_MIN_TOKENS)
        if self.capabilities.server == "llama.cpp":
            # its default repeat_penalty 1.1 changes the chosen token (temperature 0 is then not
            # greedy, and a judge's digit can flip) while the logprobs it returns are from before
            body["repeat_penalty"] = 1.0
        for name in self.capabilities.refused:
            for key in OPTIONAL_FIELDS[name]:
                body.pop(key, None)
        return body

    def _parse(self, response: Any, request: ChatRequest) -> Completion:
        """A Completion from a response, or _Malformed. Token counts fall back to chars/4 when the
        server reports no usage, so budgets still hold."""
        choices = getattr(response, "choices", None) if isinstance(response, ChatCompletion) else None
        if not choices:
            raise _Malformed("malformed response: no choices")
        choice = choices[0]
        if getattr(choice, "message", None) is None:
            raise _Malformed("malformed response: a choice without a message")
        if not isinstance(choice.message.content, str):
            # null content (a refusal field, tool calls, a server fault): not an answer, and not
            # an empty one either; retried, never cached
            raise _Malformed("malformed response: the message has no text content (content is null)")
        text = choice.message.content
        usage = getattr(response, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        if prompt_tokens is None:
            prompt_tokens = _prompt_tokens_guess(request)
        completion_tokens = getattr(usage, "completion_tokens", None)
        if completion_tokens is None:
            completion_tokens = len(text) // 4
        logprobs = None
        if choice.logprobs is not None and choice.logprobs.content is not None:
            logprobs = [TokenLogprob(t.token, t.logprob, {a.token: a.logprob for a in t.top_logprobs or []})
                        for t in choice.logprobs.content]
        error = None
        if choice.finish_reason == "content_filter":
            finish, error = "error", "the server's content filter stopped the answer"
        else:  # "stop", "length"; tool calls and missing reasons count as a normal stop
            finish = "length" if choice.finish_reason == "length" else "stop"
        model = getattr(response, "model", None) or self.model_id
        return Completion(text=text, finish_reason=finish, prompt_tokens=prompt_tokens,
                          completion_tokens=completion_tokens, model=model, logprobs=logprobs, error=error)

    def _failure(self, exc: BaseException) -> _Failure:
        """Classify an error; messages are short and never carry the API key."""
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            after = _retry_after(exc.response.headers) if status in (429, 503) else None
            message = f"HTTP {status}: {self._scrub(_error_detail(exc))}"
            if status in (401, 403):
                message += f" (check the key in ${self.api_key_env})"
            if after is not None and after > MAX_RETRY_AFTER:
                return _Failure(f"{message}; the server asks to wait {after:.0f}s", retryable=False, fatal_for_all=True)
            return _Failure(message, status in RETRY_STATUSES or status >= 500, after, status == 429, status in SYSTEMIC_STATUSES)
        if isinstance(exc, openai.APITimeoutError):
            return _Failure(f"no answer within {self.timeout:g}s", retryable=True)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            return _Failure(self._scrub(f"connection error: {type(cause).__name__}: {cause}"[:200]), retryable=True)
        if isinstance(exc, _Malformed):
            return _Failure(str(exc), retryable=True)
        detail = "invalid JSON" if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        return _Failure(f"malformed response: {detail}", retryable=True)

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key != NO_KEY else text


def _prompt_tokens_guess(request: ChatRequest) -> int:
    return sum(len(content) for _, content in request.messages) // 4


def _read_key(env: str, base_url: str) -> str:
    key = os.environ.get(env, "").strip()
    if key:
        return key
    if urlsplit(base_url).hostname == urlsplit(OPENAI_BASE_URL).hostname:
        raise LLMError(f"no API key: set the environment variable {env} (or give the base URL of your own server)")
    return NO_KEY


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            date = email.utils.parsedate_tz(value)
            if date is not None:
                return max(0.0, email.utils.mktime_tz(date) - time.time())
    return None


def _error_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict):
            body = body.get("message", body)
    return str(body if body is not None else exc.message)[:200]


def _redact_url(url: str) -> str:
    """The URL without credentials (user:pass@) or query string."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _drain(results: queue.SimpleQueue, timeout: float) -> None:
    """Discard results until the end-of-batch marker (or the timeout)."""
    deadline = time.monotonic() + timeout
    try:
        while results.get(timeout=max(0.0, deadline - time.monotonic())) is not _DONE:
            pass
    except queue.Empty:
        log.warning("in-flight requests did not stop within %.0fs", timeout)
