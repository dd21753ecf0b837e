"""LLM backends behind one protocol. Heavy modules (torch, openai) load only when a backend is built."""

from __future__ import annotations

from datagen.llm.base import BackendUnavailable, BudgetExceeded, ChatRequest, Completion, GenParams, LLM, TokenLogprob, Usage
from datagen.core.errors import LLMError
from datagen.llm.config import LLMConfig, Sampling

__all__ = [
    "BackendUnavailable", "BudgetExceeded", "ChatRequest", "Completion", "GenParams", "LLM", "LLMConfig", "LLMError",
    "Sampling", "TokenLogprob", "Usage", "make_llm",
]

DEFAULT_LOCAL_MODEL = "smollm2"


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
