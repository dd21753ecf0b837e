"""What goes over the wire to an OpenAI-compatible server: the request body (with the fields a
server refused left out), the response read back into a :class:`~datagen.llm.base.Completion`,
what a failure means (retry, wait, or stop: the server, the key or the model is at fault), and
the token buckets of ``--rpm`` / ``--tpm``. Pure functions and small classes, no event loop."""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit, urlunsplit

import openai
from openai.types.chat import ChatCompletion

try:  # openai >= 3 is built on httpx2, older releases on httpx: the HTTP library of this process
    import httpx2 as httpx
except ImportError:  # pragma: no cover - depends on the installed openai
    import httpx  # type: ignore[no-redef]

__all__ = ['Failure', 'MAX_RETRY_AFTER', 'Malformed', 'NO_KEY', 'OPENAI_BASE_URL', 'RETRY_STATUSES', 'RateLimiter', 'SYSTEMIC_STATUSES', 'classify', 'error_detail', 'httpx', 'parse_response', 'prompt_tokens_guess', 'read_key', 'redact_url', 'request_body', 'retry_after']

from datagen.core.errors import LLMError
from datagen.llm.base import JSON_MIN_TOKENS, ChatRequest, Completion, GenParams, TokenLogprob
from datagen.llm.capabilities import JSON_DIALECTS, OPTIONAL_FIELDS, Capabilities

OPENAI_BASE_URL = "https://api.openai.com/v1"
NO_KEY = "sk-no-key"  # sent to servers that need no key (vLLM, Ollama, llama.cpp...)
RETRY_STATUSES = frozenset({408, 409, 429})  # plus every 5xx
SYSTEMIC_STATUSES = frozenset({401, 403, 404})  # not retried, but every request will fail alike
MAX_RETRY_AFTER = 600.0  # a server asking for a longer pause fails the request instead


class Malformed(Exception):
    """A 200 response that is not a usable chat completion."""


@dataclass
class Failure:
    message: str
    retryable: bool
    retry_after: float | None = None
    rate_limited: bool = False
    fatal_for_all: bool = False  # not retried, yet every request would fail alike (a refused key, an unknown model)

    @property
    def systemic(self) -> bool:
        """The server, the key or the model is at fault, not this request: counts toward the breaker."""
        return self.retryable or self.fatal_for_all


class RateLimiter:
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


def request_body(model_id: str, capabilities: Capabilities, request: ChatRequest, params: GenParams) -> dict[str, Any]:
    """The JSON body of one chat completion request, without the fields the server refused so far."""
    body: dict[str, Any] = {
        "model": model_id, "messages": request.as_dicts(), "max_tokens": params.max_tokens,
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
    if params.json_schema is not None and "response_format" not in capabilities.refused:
        _, _, form = JSON_DIALECTS[capabilities.json_dialect]
        body["response_format"] = form(json.loads(params.json_schema))
        body["max_tokens"] = max(params.max_tokens, JSON_MIN_TOKENS)
    if capabilities.server == "llama.cpp":
        # its default repeat_penalty 1.1 changes the chosen token (temperature 0 is then not
        # greedy, and a judge's digit can flip) while the logprobs it returns are from before
        body["repeat_penalty"] = 1.0
    for name in capabilities.refused:
        for key in OPTIONAL_FIELDS[name]:
            body.pop(key, None)
    return body


def parse_response(response: Any, request: ChatRequest, model_id: str) -> Completion:
    """A Completion from a response, or Malformed. Token counts fall back to chars/4 when the
    server reports no usage, so budgets still hold."""
    choices = getattr(response, "choices", None) if isinstance(response, ChatCompletion) else None
    if not choices:
        raise Malformed("malformed response: no choices")
    choice = choices[0]
    if getattr(choice, "message", None) is None:
        raise Malformed("malformed response: a choice without a message")
    if not isinstance(choice.message.content, str):
        # null content (a refusal field, tool calls, a server fault): not an answer, and not
        # an empty one either; retried, never cached
        raise Malformed("malformed response: the message has no text content (content is null)")
    text = choice.message.content
    usage = getattr(response, "usage", None)
    prompt_tokens = getattr(usage, "prompt_tokens", None)
    if prompt_tokens is None:
        prompt_tokens = prompt_tokens_guess(request)
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
    model = getattr(response, "model", None) or model_id
    return Completion(text=text, finish_reason=finish, prompt_tokens=prompt_tokens,
                      completion_tokens=completion_tokens, model=model, logprobs=logprobs, error=error)


def classify(exc: BaseException, scrub: Callable[[str], str], api_key_env: str, timeout: float) -> Failure:
    """Classify an error; messages are short and never carry the API key."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        after = retry_after(exc.response.headers) if status in (429, 503) else None
        message = f"HTTP {status}: {scrub(error_detail(exc))}"
        if status in (401, 403):
            message += f" (check the key in ${api_key_env})"
        if after is not None and after > MAX_RETRY_AFTER:
            return Failure(f"{message}; the server asks to wait {after:.0f}s", retryable=False, fatal_for_all=True)
        return Failure(message, status in RETRY_STATUSES or status >= 500, after, status == 429, status in SYSTEMIC_STATUSES)
    if isinstance(exc, openai.APITimeoutError):
        return Failure(f"no answer within {timeout:g}s", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return Failure(scrub(f"connection error: {type(cause).__name__}: {cause}"[:200]), retryable=True)
    if isinstance(exc, Malformed):
        return Failure(str(exc), retryable=True)
    detail = "invalid JSON" if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
    return Failure(f"malformed response: {detail}", retryable=True)


def prompt_tokens_guess(request: ChatRequest) -> int:
    return sum(len(content) for _, content in request.messages) // 4


def read_key(env: str, base_url: str) -> str:
    key = os.environ.get(env, "").strip()
    if key:
        return key
    if urlsplit(base_url).hostname == urlsplit(OPENAI_BASE_URL).hostname:
        raise LLMError(f"no API key: set the environment variable {env} (or give the base URL of your own server)")
    return NO_KEY


def retry_after(headers: Mapping[str, str]) -> float | None:
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


def error_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict):
            body = body.get("message", body)
    return str(body if body is not None else exc.message)[:200]


def redact_url(url: str) -> str:
    """The URL without credentials (user:pass@) or query string."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
