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

* Several ``base_url`` make a fleet (:mod:`.endpoints`): each attempt goes to the least loaded
  server, ``concurrency`` in flight at each; a failing server is set aside and its requests go to
  the others at once. The request cache keys do not name the server, so any of them may answer.

The API key is read from the environment variable named by ``api_key_env`` and never leaves the
HTTP client: it is not in ``describe()``, in logs or in error messages.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import openai
from openai.types.chat import ChatCompletion
from datagen.core.progress import bar as progress_bar
from datagen.llm.base import BackendUnavailable, BudgetExceeded, ChatRequest, Completion, GenParams, Usage
from datagen.core.errors import LLMError
from datagen.llm.discovery import discover
from datagen.llm.endpoints import Endpoint, Fleet, Outcome
from datagen.llm.openai_loop import DONE, Batch, Runtime, drain
from datagen.llm.openai_wire import (
    NO_KEY, httpx, OPENAI_BASE_URL, Malformed, RateLimiter, classify, error_detail, parse_response, prompt_tokens_guess, read_key,
    redact_url, request_body,
)
from datagen.llm.capabilities import Capabilities


if TYPE_CHECKING:
    from datagen.llm import LLMConfig

log = logging.getLogger(__name__)

class OpenAICompatLLM:
    """Chat completions from an OpenAI-compatible server (see the module docstring)."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | Sequence[str] | None = None,
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
        not list (see :meth:`_probe`). Several ``base_url`` make a fleet (:mod:`.endpoints`):
        ``concurrency`` requests in flight at each server."""
        if concurrency < 1:
            raise LLMError("concurrency must be >= 1")
        if max_consecutive_failures is not None and max_consecutive_failures < 0:
            raise LLMError("max_consecutive_failures must be >= 0 (0: never stop)")
        if max_retries < 0 or timeout <= 0 or (rpm is not None and rpm <= 0) or (tpm is not None and tpm <= 0):
            raise LLMError("max_retries must be >= 0; timeout, rpm and tpm must be > 0")
        if max_cost is not None and not (price_in or price_out):
            raise LLMError("a cost budget needs prices: set price_in and/or price_out (per 1M tokens)")
        self.model_id = model
        urls = [base_url] if isinstance(base_url, str) else list(base_url or ())
        self.base_urls = list(dict.fromkeys(urls)) or [os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL]
        self.base_url = self.base_urls[0]
        self.api_key_env = api_key_env
        self._api_key = read_key(api_key_env, self.base_url)
        self.fleet = Fleet([Endpoint(i, url, concurrency) for i, url in enumerate(self.base_urls)])
        self.rpm, self.tpm = rpm, tpm
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_tokens_budget, self.max_cost = max_tokens_budget, max_cost
        self.price_in, self.price_out = price_in, price_out
        self.backoff_base, self.backoff_max = backoff_base, backoff_max

        self.usage = Usage()
        self._runtime_lock = threading.Lock()
        self._rt: Runtime | None = None
        self.capabilities = Capabilities()
        self.requested_concurrency = concurrency
        if probe:
            for ep in self.fleet.endpoints:
                self._probe(ep)
        self.concurrency = self.fleet.capacity  # requests in flight, over every endpoint
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

    def _probe(self, ep: Endpoint) -> None:
        """What the server says of itself, once, before any work (:func:`datagen.llm.discovery.discover`):
        the models it serves (``--model`` must be one of them, when it lists any), what kind of
        server it is, and how many requests it serves at once (the concurrency is lowered to that:
        more only queue there, where long answers time out)."""
        found = discover(ep.url, self._api_key, min(self.timeout, 10.0))
        if found is None:
            return
        self.capabilities.models = found.models
        self.capabilities.server = found.server
        if found.json_dialect is not None:
            self.capabilities.json_dialect = found.json_dialect
        if found.slots is not None and found.slots < ep.capacity:
            log.info("%s serves %d request(s) at a time: concurrency %d -> %d", redact_url(ep.url), found.slots, ep.capacity, found.slots)
            self.capabilities.slots = found.slots
            ep.capacity = found.slots
        if found.models and self.model_id not in found.models:
            shown = ", ".join(found.models[:10]) + (", ..." if len(found.models) > 10 else "")
            raise LLMError(f"--model {self.model_id}: the server at {redact_url(ep.url)} does not serve it; it serves: {shown}")

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "openai", "model": self.model_id,
            "base_url": redact_url(self.base_url) if len(self.fleet) == 1 else [redact_url(u) for u in self.base_urls],
            "api_key_env": self.api_key_env, "concurrency": self.concurrency, "requested_concurrency": self.requested_concurrency, "rpm": self.rpm,
            "tpm": self.tpm, "timeout": self.timeout, "max_retries": self.max_retries,
            "max_tokens_budget": self.max_tokens_budget, "max_cost": self.max_cost,
            "price_in": self.price_in, "price_out": self.price_out, "max_consecutive_failures": self.max_consecutive_failures,
            "capabilities": self.capabilities.to_dict(),
            **({"endpoints": [e.to_dict() for e in self.fleet.endpoints]} if len(self.fleet) > 1 else {}),
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
        batch = Batch()
        future = asyncio.run_coroutine_threadsafe(self._run(rt, batch, requests, params), rt.loop)
        bar = progress_bar(len(requests), self.model_id, "req", dynamic_ncols=True)
        finished = False
        try:
            while (item := batch.results.get()) is not DONE:
                bar.update(1)
                if self.usage.retries or self.usage.failures:
                    bar.set_postfix(retries=self.usage.retries, failed=self.usage.failures, refresh=False)
                yield item
            finished = True
        finally:
            bar.close()
            if not finished:  # closed early, or interrupted: cancel what is in flight, wait for it
                rt.loop.call_soon_threadsafe(batch.cancel)
                drain(batch.results, timeout=30.0)
        future.result()  # BudgetExceeded, or a bug in this module

    def close(self) -> None:
        """Close the connections and stop the event loop (not while a batch is running). A later
        call starts afresh."""
        with self._runtime_lock:
            rt, self._rt = self._rt, None
        if rt is None:
            return
        try:
            for ep in rt.fleet.endpoints:
                asyncio.run_coroutine_threadsafe(ep.client.close(), rt.loop).result(10)
        finally:
            rt.stop_loop()
            rt.thread.join(10)
            if not rt.thread.is_alive():
                rt.loop.close()

    def __enter__(self) -> "OpenAICompatLLM":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _runtime(self) -> Runtime:
        with self._runtime_lock:
            if self._rt is None or self._rt.pid != os.getpid():
                self.fleet.on_new_loop()
                for ep in self.fleet.endpoints:
                    # one pooled connection per concurrent request, kept alive between batches
                    limits = httpx.Limits(max_connections=ep.capacity, max_keepalive_connections=ep.capacity)
                    ep.client = openai.AsyncOpenAI(
                        api_key=self._api_key, base_url=ep.url, timeout=self.timeout, max_retries=0,
                        http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=self.timeout),
                    )
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=f"openai-{self.model_id}", daemon=True)
                thread.start()
                self._rt = Runtime(
                    loop, thread, self.fleet, asyncio.Semaphore(self.fleet.capacity),
                    RateLimiter(self.rpm) if self.rpm else None, RateLimiter(self.tpm) if self.tpm else None,
                    # stop the loop thread if this backend is dropped without close()
                    weakref.finalize(self, loop.call_soon_threadsafe, loop.stop),
                    os.getpid(),
                )
            return self._rt

    # ---- on the event loop -----------------------------------------------------------------
    async def _run(self, rt: Runtime, batch: Batch, requests: list[ChatRequest], params: GenParams) -> None:
        """Send the batch through at most ``concurrency`` workers (the shared semaphore also bounds
        concurrent batches). Each worker puts its results on the queue; the end marker goes last."""
        batch.task = asyncio.current_task()
        pending = iter(enumerate(requests))  # shared by the workers: each request is taken once
        unsent = 0

        async def worker() -> None:
            nonlocal unsent
            for index, request in pending:
                async with rt.semaphore:
                    if self.usage.spent(self.max_tokens_budget, self.max_cost) or self._tripped(rt):
                        unsent += 1
                        continue
                    completion = await self._complete(rt, request, params, batch)
                batch.results.put((index, completion))

        workers: list[asyncio.Future[None]] = []
        try:
            if batch.cancelled:
                return
            workers = [asyncio.ensure_future(worker()) for _ in range(min(rt.fleet.capacity, len(requests)))]
            await asyncio.gather(*workers)
            if self._tripped(rt):
                failed, rt.failures_in_a_row = rt.failures_in_a_row, 0  # the next call starts afresh
                raise BackendUnavailable(
                    f"{rt.fleet.where()} failed {failed} requests in a row after "
                    f"their retries (last: {rt.last_failure}); {unsent} of {len(requests)} requests were not sent")
            if batch.server_failures:  # never let the caller take the server's failures as answers
                raise BackendUnavailable(
                    f"{rt.fleet.where()} failed {batch.server_failures} of {len(requests)} "
                    f"requests after their retries (last: {batch.last_failure})")
            if unsent:
                raise BudgetExceeded(f"{self.usage.spent(self.max_tokens_budget, self.max_cost)}; {unsent} of {len(requests)} requests were not "
                                     "sent (finished ones are kept: rerun with a larger budget)")
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            batch.results.put(DONE)

    def _tripped(self, rt: Runtime) -> bool:
        """Whether the circuit breaker is open."""
        return 0 < self.max_consecutive_failures <= rt.failures_in_a_row

    async def _complete(self, rt: Runtime, request: ChatRequest, params: GenParams, batch: Batch | None = None) -> Completion:
        estimate = prompt_tokens_guess(request) + params.max_tokens
        attempt = -1
        tried: set[int] = set()  # endpoints this request failed at, the server's fault
        while attempt < self.max_retries:
            attempt += 1
            body = request_body(self.model_id, self.capabilities, request, params)  # without the fields the server refused so far
            ep = await rt.fleet.acquire(tried)
            outcome: Outcome = "cancelled"  # until the attempt ends otherwise
            try:
                await self._wait_for_capacity(rt, ep, estimate)
                # The SDK's documented raw-request method: the same transport, auth, error types
                # and typed response as chat.completions.create, without its parameter transform
                # (measured: ~0.5 ms of CPU per request, a third of the client's cost).
                response = await ep.client.post("/chat/completions", body=body, cast_to=ChatCompletion)
                completion = parse_response(response, request, self.model_id)
                outcome = "ok"
            except (openai.APIError, Malformed, json.JSONDecodeError) as exc:
                if rt.tpm:
                    rt.tpm.give_back(estimate)
                if self._learn_refusal(exc, body):
                    outcome = "request"
                    attempt -= 1  # a missing capability, not a failure: send again without the field
                    continue
                failure = classify(exc, self._scrub, self.api_key_env, self.timeout)
                outcome = "systemic" if failure.systemic else "request"
            finally:
                rt.fleet.release(ep, outcome)
            if outcome == "ok":
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
            if failure.systemic and len(rt.fleet) > 1 and ep.index not in tried:
                tried.add(ep.index)
                if rt.fleet.others(tried):  # another server may answer it: go there now, no retry spent
                    attempt -= 1
                    self.usage.add(retries=1)
                    log.debug("%s at %s; trying another server", failure.message, redact_url(ep.url))
                    continue
            if not failure.retryable or attempt == self.max_retries:
                break
            delay = random.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))
            if failure.retry_after is not None:
                delay = max(delay, failure.retry_after)
                if failure.rate_limited:  # the whole account is limited: hold every request to this server back
                    ep.cooldown_until = max(ep.cooldown_until, time.monotonic() + failure.retry_after)
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
        every later request (:meth:`Capabilities.learn_refusal`)."""
        if not isinstance(exc, openai.APIStatusError):
            return False
        return self.capabilities.learn_refusal(exc.status_code, self._scrub(error_detail(exc)), body)

    async def _wait_for_capacity(self, rt: Runtime, ep: Endpoint, estimate: int) -> None:
        pause = ep.cooldown_until - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        if rt.rpm:
            await rt.rpm.acquire(1)
        if rt.tpm:
            await rt.tpm.acquire(estimate)

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key != NO_KEY else text
