"""What a command says about its model backend and its sampling: :class:`LLMConfig` and
:class:`Sampling`, the models every generating command's flags are derived from
(:func:`datagen.core.settings.add_flags`), so that the flags, a ``--config`` file and the
manifest name the same settings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from datagen.llm.base import GenParams


class LLMConfig(BaseModel):
    """The model backend: which model, where, and how hard to push it."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "openai"] = Field("local", json_schema_extra={"flag": "--llm"}, description=(
        "local: embedded SmolLM2-135M-Instruct or a local HF folder; openai: any OpenAI-compatible server"))
    model: str | None = Field(None, description="local: 'smollm2' (the default) or a model folder; openai: the served model name (required)")
    base_url: str | list[str] | None = Field(None, json_schema_extra={"metavar": "URL", "repeatable": True}, description=(
        "OpenAI-compatible server, e.g. http://localhost:8000/v1 (vLLM), http://localhost:11434/v1 (Ollama); "
        "give it once per server of a fleet: requests are spread over them, a failing one is set aside"))
    api_key_env: str = Field("OPENAI_API_KEY", json_schema_extra={"metavar": "VAR"}, description=(
        "environment variable holding the API key (the key itself is never logged or stored)"))
    concurrency: int = Field(16, ge=1, description="openai: requests in flight (at each server of a fleet)")
    rpm: float | None = Field(None, gt=0, description="openai: requests-per-minute limit")
    tpm: float | None = Field(None, gt=0, description="openai: tokens-per-minute limit")
    timeout: float = Field(120.0, gt=0, description="openai: seconds per request before retrying")
    max_retries: int = Field(6, ge=0, description="openai: retries on 429/5xx/timeouts")
    max_consecutive_failures: int | None = Field(None, ge=0, description=(
        "openai: stop sending after N requests in a row failed for good (default: max(20, 2 x concurrency); 0: finish the batch). "
        "Either way a request the server failed stays pending: the command stops with exit 3 and a rerun sends it"))
    max_tokens_budget: int | None = Field(None, ge=1, json_schema_extra={"flag": "--max-tokens"}, description=(
        "budget: stop cleanly (resumable) after N tokens"))
    max_cost: float | None = Field(None, gt=0, description="budget: stop cleanly (resumable) after this cost; needs --price-in/--price-out")
    price_in: float = Field(0.0, ge=0, description="price per 1M prompt tokens")
    price_out: float = Field(0.0, ge=0, description="price per 1M completion tokens")
    batch_size: int = Field(8, ge=1, description="local: prompts per generation batch")
    device: str | None = Field(None, description="local: cpu, cuda, cuda:1 ... (default: cuda if available)")
    cache: str | None = Field(None, json_schema_extra={"metavar": "PATH"}, description=(
        "request cache (sqlite; default: ~/.cache/datagen/llm_cache.sqlite)"))
    no_cache: bool = Field(False, json_schema_extra={"negatable": False}, description="do not read or write the request cache")

    @field_validator("base_url")
    @classmethod
    def _one_or_several(cls, urls: str | list[str] | None) -> str | list[str] | None:
        """One server stays a string (as in runs made before fleets); several stay a list."""
        if isinstance(urls, list):
            urls = list(dict.fromkeys(u.strip() for u in urls if u.strip()))
            return None if not urls else urls[0] if len(urls) == 1 else urls
        return urls

    @model_validator(mode="after")
    def _cost_needs_prices(self) -> LLMConfig:
        if self.max_cost is not None and not (self.price_in or self.price_out):
            raise ValueError("--max-cost needs --price-in and/or --price-out (price per 1M tokens)")
        return self

    def to_manifest(self) -> dict[str, Any]:
        """Settings for manifest.json. Holds the *name* of the key variable, never the key."""
        return self.model_dump()


class Sampling(BaseModel):
    """How each request is sampled; :meth:`params` makes the request's :class:`GenParams`."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(512, ge=1, description="longest generation per request")
    temperature: float = Field(0.7, ge=0, description="sampling temperature (0: greedy)")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus sampling: the smallest set of tokens whose probability reaches this")
    seed: int = Field(0, description="sampling seed (each request's own seed derives from it)")

    def params(self, **overrides: Any) -> GenParams:
        kw: dict[str, Any] = dict(max_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p, seed=self.seed)
        kw.update(overrides)
        return GenParams(**kw)
