"""The LLM protocol every backend implements, and the value types that cross it.

A backend turns a batch of chat requests into completions, in order. Nothing here imports torch
or the network client: backends are loaded lazily by :func:`datagen.llm.make_llm`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Collection, Protocol, Sequence, runtime_checkable

from datagen.core.errors import BackendUnavailable, BudgetExceeded, RunStopped

__all__ = ["BackendUnavailable", "BudgetExceeded", "RunStopped"]  # raised by backends; defined with the other errors


JSON_MIN_TOKENS = 24


@dataclass(frozen=True)
class GenParams:
    """Sampling parameters. Part of the request-cache key (all fields)."""

    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int | None = 0
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    # A JSON schema (as canonical JSON text) the reply must follow, for a backend that can
    # constrain its output to one (an OpenAI-compatible server with response_format); such a
    # backend allows at least JSON_MIN_TOKENS for the JSON syntax. A backend that cannot (the
    # local one, a server that refuses it) ignores it: readers of the reply accept either form.
    json_schema: str | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_logprobs < 0 or self.top_logprobs > 20:
            raise ValueError("top_logprobs must be in [0, 20]")
        object.__setattr__(self, "stop", tuple(self.stop))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass(frozen=True)
class ChatRequest:
    """One conversation to complete. ``seed`` overrides ``GenParams.seed`` for this request, so
    several samples of the same prompt are distinct cache entries."""

    messages: tuple[tuple[str, str], ...]
    seed: int | None = None
    tag: str | None = None  # caller's bookkeeping; not part of the cache key

    @classmethod
    def of(cls, messages: Sequence[Any], seed: int | None = None, tag: str | None = None) -> "ChatRequest":
        pairs = []
        for m in messages:
            if isinstance(m, dict):
                pairs.append((m["role"], m["content"]))
            elif isinstance(m, (tuple, list)):
                pairs.append((m[0], m[1]))
            else:  # datagen.core.record.Message
                pairs.append((m.role, m.content))
        return cls(messages=tuple(pairs), seed=seed, tag=tag)

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)  # alternative token -> logprob

    def probs_of(self, options: Collection[str]) -> dict[str, float]:
        """Probability of each of ``options`` at this position, from the chosen token and its
        alternatives; tokens are compared stripped, so ``"4"`` and ``" 4"`` add up. Options that
        do not appear are left out."""
        probs: dict[str, float] = {}
        for token, logprob in {self.token: self.logprob, **self.top}.items():
            text = token.strip()
            if text in options:
                probs[text] = probs.get(text, 0.0) + math.exp(logprob)
        return probs


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" | "length" | "error"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    logprobs: list[TokenLogprob] | None = None
    cached: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def usable(self) -> bool:
        """Worth keeping in the request cache: a success with some text. An empty reply is a
        real answer for this run (rejected as ``empty_answer`` or unparsed), but not one to serve
        again for ever: a later run asks anew."""
        return self.error is None and isinstance(self.text, str) and bool(self.text.strip())

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("cached")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Completion":
        lps = d.get("logprobs")
        return cls(
            text=d["text"],
            finish_reason=d["finish_reason"],
            prompt_tokens=d.get("prompt_tokens", 0),
            completion_tokens=d.get("completion_tokens", 0),
            model=d.get("model", ""),
            logprobs=[TokenLogprob(**t) for t in lps] if lps is not None else None,
            error=d.get("error"),
        )


@dataclass
class Usage:
    """Thread-safe counters for one run: requests, tokens, cache hits, retries, failures."""

    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    failures: int = 0
    cost: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **kw: float) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def spent(self, max_tokens: int | None, max_cost: float | None) -> str | None:
        """Why a budget of ``max_tokens`` tokens or ``max_cost`` is spent, or None while it lasts."""
        if max_tokens is not None and self.total_tokens >= max_tokens:
            return f"token budget spent: {self.total_tokens} of {max_tokens} tokens"
        if max_cost is not None and self.cost >= max_cost:
            return f"cost budget spent: ${self.cost:.4f} of ${max_cost:.4f}"
        return None

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "cache_hits": self.cache_hits,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens,
                "retries": self.retries,
                "failures": self.failures,
                "cost": round(self.cost, 6),
            }


@runtime_checkable
class LLM(Protocol):
    """A chat model. ``generate`` returns one Completion per request, in request order; a request
    that failed after retries comes back with ``error`` set rather than raising, so a batch never
    loses the work that succeeded. Only :class:`RunStopped` (a spent budget, an unavailable
    server) is raised."""

    model_id: str
    usage: Usage

    def generate(self, requests: Sequence[ChatRequest], params: GenParams) -> list[Completion]: ...

    def describe(self) -> dict[str, Any]:
        """What goes in a run manifest: backend, model id, settings. Never secrets."""
        ...


# A backend may also offer ``generate_iter(requests, params) -> Iterator[tuple[int, Completion]]``
# that yields each completion (with its request index) as soon as it is ready. The request cache
# uses it to store results incrementally, so a run killed mid-batch loses only in-flight requests.
