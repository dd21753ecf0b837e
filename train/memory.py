"""Peak memory of a CPU training run, estimated before the first step, so that running out of
memory is never the first sign: ``train run`` stops with exit code 2 and the settings to change
when the estimate exceeds the memory available.

The estimate, in bytes (fp32):

* weights ``4 x parameters``, and ``16 x trainable parameters`` for their gradients and AdamW's
  two moments, plus 1 GB for the runtime itself;
* activations kept for the backward pass, per row of ``length`` tokens and per layer:
  ``4 x length x (10 x hidden + 3 x intermediate + 2.5 x heads x length)``: the layer's linear
  inputs and outputs, and the attention scores that a CPU materialises for each head (the
  ``length^2`` term, which dominates long rows). With gradient checkpointing only each layer's
  input is kept, and one layer's activations are rebuilt at a time;
* the logits: ``12 x vocab`` bytes per projected token (logits, softmax and gradient), for
  ``loss_chunk_tokens`` tokens at a time, or every token of the forward pass with the model's
  own loss.

Calibrated on SmolLM2-135M with LoRA, packed rows of 1,024 tokens on a 24 GiB machine: 2 rows
estimate 10.4 GB against 9.4 GB measured; 8 rows estimate 35 GB, and were killed at 24 GB. It
is an estimate for catching what clearly cannot fit, not a promise that what passes fits.

When the estimate exceeds the memory available, ``memory_check: adapt`` (the default) runs the
nearest settings that fit (:func:`fit`): fewer rows per forward pass with more accumulation, so
each optimizer step sees the same rows and the same loss normalisation, then gradient
checkpointing; ``refuse`` stops with those settings named instead. Either way nothing runs out of
memory half way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GB = 1e9
RUNTIME_BYTES = 1.0 * GB
CHUNK_LOGITS_BYTES = 1 << 28  # one loss chunk's fp32 logits, by default (see chunk_tokens)


@dataclass(frozen=True)
class Estimate:
    weights: float
    activations: float
    logits: float

    @property
    def total(self) -> float:
        return self.weights + self.activations + self.logits

    def to_dict(self) -> dict[str, float]:
        return {k: round(v / GB, 2) for k, v in (("weights_gb", self.weights), ("activations_gb", self.activations),
                                                  ("logits_gb", self.logits), ("total_gb", self.total))}


def _text_config(config: Any) -> Any:
    return getattr(config, "text_config", None) or config


def estimate(config: Any, n_params: int, n_trainable: int, *, rows: int, length: int,
             gradient_checkpointing: bool, loss_chunk_tokens: int) -> Estimate:
    c = _text_config(config)
    hidden, layers = c.hidden_size, c.num_hidden_layers
    inter = getattr(c, "intermediate_size", None) or 4 * hidden
    heads = c.num_attention_heads
    per_row_layer = 4.0 * length * (10 * hidden + 3 * inter + 2.5 * heads * length)
    if gradient_checkpointing:
        activations = rows * layers * 4.0 * length * hidden + 2 * rows * per_row_layer
    else:
        activations = rows * layers * per_row_layer
    projected = min(loss_chunk_tokens, rows * length) if loss_chunk_tokens else rows * length
    return Estimate(4.0 * n_params + 16.0 * n_trainable + RUNTIME_BYTES, activations, 12.0 * c.vocab_size * projected)


def available_bytes() -> float | None:
    """MemAvailable from /proc/meminfo (Linux), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def chunk_tokens(setting: int | None, vocab_size: int) -> int:
    """Trained tokens projected onto the vocabulary at a time: ``setting``, or by default as many
    as keep one chunk's fp32 logits near 256 MB (1,024 for SmolLM2's 49,152 tokens, 256 for
    Gemma 3's 262,144), between 64 and 1,024."""
    if setting is not None:
        return setting
    return max(64, min(1024, CHUNK_LOGITS_BYTES // (4 * vocab_size)))


@dataclass(frozen=True)
class Fit:
    """Settings that fit: ``rows`` per forward pass, ``accumulation`` passes per optimizer step
    (the same rows per step as asked), with or without gradient checkpointing."""

    rows: int
    accumulation: int
    gradient_checkpointing: bool
    estimate: Estimate

    def flags(self) -> str:
        gc = "--set gradient_checkpointing=true " if self.gradient_checkpointing else ""
        return f"{gc}--batch-size {self.rows} --grad-accum {self.accumulation}"


def fit(config: Any, n_params: int, n_trainable: int, *, rows: int, accumulation: int, length: int,
        gradient_checkpointing: bool, loss_chunk_tokens: int, budget: float) -> Fit | None:
    """The settings nearest to those asked that fit ``budget``: the most rows per forward pass
    that divide the rows per optimizer step, first without gradient checkpointing (unless it is
    on already), then with it; None when not even one row with checkpointing fits."""
    per_step = rows * accumulation
    divisors = sorted({d for d in range(1, rows + 1) if per_step % d == 0}, reverse=True)
    for gc in sorted({gradient_checkpointing, True}):  # False first, when allowed
        for r in divisors:
            est = estimate(config, n_params, n_trainable, rows=r, length=length, gradient_checkpointing=gc,
                           loss_chunk_tokens=loss_chunk_tokens)
            if est.total <= budget:
                return Fit(r, per_step // r, gc, est)
    return None
