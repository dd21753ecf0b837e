"""LLM backends behind one protocol. Heavy modules (torch, openai) load only when a backend is built."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from datagen.llm.base import BackendUnavailable, BudgetExceeded, ChatRequest, Completion, GenParams, LLM, TokenLogprob, Usage
from datagen.core.errors import LLMError

__all__ = [
    "BackendUnavailable", "BudgetExceeded", "ChatRequest", "Completion", "GenParams", "LLM", "LLMConfig", "LLMError",
    "TokenLogprob", "Usage", "make_llm",
]

DEFAULT_LOCAL_MODEL = "smollm2"


@dataclass
class LLMConfig:
    backend: str = "local"  # "local" | "openai"
    model: str | None = None  # local: "smollm2" (embedded) or a HF model folder; openai: model name
    # openai-compatible server
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 16
    rpm: float | None = None  # requests per minute
    tpm: float | None = None  # tokens per minute
    timeout: float = 120.0
    max_retries: int = 6
    max_consecutive_failures: int | None = None  # stop after this many failed requests in a row; None: max(20, 2 x concurrency); 0: never
    max_tokens_budget: int | None = None  # stop cleanly once this many tokens were spent
    max_cost: float | None = None  # stop cleanly once this much was spent (needs prices)
    price_in: float = 0.0  # per 1M prompt tokens
    price_out: float = 0.0  # per 1M completion tokens
    # local model
    batch_size: int = 8
    device: str | None = None  # default: cuda if available, else cpu
    # request cache
    cache: str | None = None  # sqlite path; default ~/.cache/datagen/llm_cache.sqlite
    no_cache: bool = False

    def to_manifest(self) -> dict[str, Any]:
        """Settings for manifest.json. Holds the *name* of the key variable, never the key."""
        return asdict(self)


def make_llm(cfg: LLMConfig) -> LLM:
    if cfg.backend == "local":
        from datagen.llm.local import LocalLLM

        llm: LLM = LocalLLM(cfg.model or DEFAULT_LOCAL_MODEL, batch_size=cfg.batch_size, device=cfg.device)
    elif cfg.backend == "openai":
        from datagen.llm.openai_compat import OpenAICompatLLM

        if not cfg.model:
            raise LLMError("--llm openai needs --model (the model name the server serves)")
        llm = OpenAICompatLLM.from_config(cfg)
    else:
        raise LLMError(f"unknown LLM backend {cfg.backend!r}; use 'local' or 'openai'")
    if cfg.no_cache:
        return llm
    from datagen.llm.cache import CachedLLM, RequestCache

    return CachedLLM(llm, RequestCache(cfg.cache))
