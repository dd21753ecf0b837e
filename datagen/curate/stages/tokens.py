"""Token counts for the heuristics stage's length checks (``length_unit: tokens``): a model's
tokenizer, loaded offline once per process, counting a batch of texts in one call (the fast
tokenizers encode a batch in parallel, in Rust)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from datagen.core.errors import LLMError, UserError


def default_name() -> str:
    """The trainer's default model (``train --model``'s default), whose tokenizer counts."""
    from datagen.llm.models import EMBEDDED_NAME

    return EMBEDDED_NAME


@lru_cache(maxsize=4)
def load(name: str | None) -> Any:
    """The tokenizer of ``name`` (an embedded model's name or a local model folder; None: the
    default); a config error (exit 2) naming ``heuristics.tokenizer`` when it cannot be loaded."""
    from datagen.llm.models import load_tokenizer

    try:
        return load_tokenizer(name or default_name())
    except LLMError as e:
        raise UserError(f"heuristics.tokenizer: {e}") from None


def count(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Tokens in each of ``texts`` (no special tokens added). A fast tokenizer's Rust backend is
    called directly, without offsets (``encode_batch_fast``, where the installed tokenizers has
    it): the same counts as ``tokenizer(texts)``, without building Python lists of ids."""
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    encode = getattr(backend, "encode_batch_fast", None) or getattr(backend, "encode_batch", None)
    if encode is not None:
        return [len(e) for e in encode(list(texts), add_special_tokens=False)]
    enc = tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False)
    return [len(ids) for ids in enc["input_ids"]]
