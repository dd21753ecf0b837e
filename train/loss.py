"""The training loss over trained tokens only, in chunks: never the full ``rows x length x vocab``
logits tensor.

A causal LM's own loss projects every position of every row onto the vocabulary, then throws
away all but the positions whose label is trained. For packed rows of 1,024 tokens, a batch of 8
and SmolLM2's 49,152-token vocabulary that tensor alone is 1.6 GB in fp32, with as much again for
its gradient; with Gemma 3's 262,144 tokens, 8.6 GB. Here:

1. the model runs its forward pass as usual (through DDP and peft wrappers, NEFTune hooks and
   gradient checkpointing alike), except that a forward pre-hook on its output projection
   (``get_output_embeddings()``, the ``lm_head``) takes the final hidden states and hands the
   projection one position per row instead, so the model's own logits cost ``rows x vocab``;
2. the hidden states at the positions whose next token is trained (label != -100, shifted by one
   as the model's loss shifts it) are gathered: only the trained tokens, whatever the padding or
   packing;
3. they go through the same projection in chunks of ``chunk_tokens`` rows, each chunk under
   activation checkpointing, so at most one chunk's logits (``chunk_tokens x vocab``) exist at a
   time, in the forward and in the backward pass. Gemma's final logit soft-capping is applied
   where the config has it.

The sum of the token losses is divided by ``num_items_in_batch`` (the trained tokens of the whole
optimizer step, over every process) when the Trainer gives it, as the model's own loss does, so
the gradient is the same mean over the step's tokens. ``tests/train/test_train.py`` checks the loss and
the gradients against the model's own loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100


def _softcap(model: Any) -> float | None:
    config = getattr(model, "config", None)
    text = getattr(config, "text_config", None) or config
    cap = getattr(text, "final_logit_softcapping", None)
    return float(cap) if cap else None


def _chunk_nll(head: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor, softcap: float | None) -> torch.Tensor:
    logits = head(hidden).float()
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, labels, reduction="sum")


def trained_token_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None, chunk_tokens: int = 1024) -> torch.Tensor:
    """The causal LM loss of ``inputs`` (with ``labels``) over its trained tokens, computed as
    the module docstring says. ``model`` may be wrapped (DDP, peft); its unwrapped form must have
    ``get_output_embeddings()``."""
    inner = model.module if hasattr(model, "module") and not hasattr(model, "get_output_embeddings") else model
    head = inner.get_output_embeddings()
    if head is None:
        raise ValueError("the model has no output embeddings (lm_head) to project hidden states with")
    captured: dict[str, torch.Tensor] = {}

    def keep_hidden(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        hidden = args[0]
        captured["hidden"] = hidden
        return (hidden[:, -1:, :], *args[1:])  # the model's own logits: one position per row

    labels = inputs["labels"]
    handle = head.register_forward_pre_hook(keep_hidden)
    try:
        model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False)
    finally:
        handle.remove()
    hidden = captured["hidden"]
    if hidden.shape[1] != labels.shape[1]:
        raise ValueError(f"hidden states cover {hidden.shape[1]} positions, labels {labels.shape[1]}")
    targets = labels[:, 1:]
    trained = targets != IGNORE_INDEX
    picked = hidden[:, :-1][trained]  # (trained tokens, hidden size)
    wanted = targets[trained]
    softcap = _softcap(inner)
    total = hidden.float().sum() * 0.0  # zero, but in the graph even when no token is trained
    for start in range(0, picked.shape[0], chunk_tokens):
        part = slice(start, start + chunk_tokens)
        if torch.is_grad_enabled():
            total = total + checkpoint(_chunk_nll, head, picked[part], wanted[part], softcap, use_reentrant=False)
        else:
            total = total + _chunk_nll(head, picked[part], wanted[part], softcap)
    denom = num_items_in_batch if num_items_in_batch is not None else trained.sum()
    if isinstance(denom, torch.Tensor):
        denom = denom.to(total.device)
    return total / denom
