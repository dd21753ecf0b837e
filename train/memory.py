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
is an estimate for refusing what clearly cannot fit, not a promise that what passes fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GB = 1e9
RUNTIME_BYTES = 1.0 * GB


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


def advice(config: Any, n_params: int, n_trainable: int, *, rows: int, accumulation: int, length: int,
           loss_chunk_tokens: int, budget: float) -> str:
    """Settings that fit ``budget``: fewer rows per forward pass (the same rows per optimizer step),
    else gradient checkpointing, else shorter rows."""
    per_step = rows * accumulation
    for r in sorted({d for d in range(1, rows) if per_step % d == 0}, reverse=True):
        if estimate(config, n_params, n_trainable, rows=r, length=length, gradient_checkpointing=False,
                    loss_chunk_tokens=loss_chunk_tokens).total <= budget:
            return f"--batch-size {r} --grad-accum {per_step // r} (the same {per_step} rows per optimizer step)"
    for r in sorted({d for d in range(1, rows + 1) if per_step % d == 0}, reverse=True):
        if estimate(config, n_params, n_trainable, rows=r, length=length, gradient_checkpointing=True,
                    loss_chunk_tokens=loss_chunk_tokens).total <= budget:
            return f"--set gradient_checkpointing=true --batch-size {r} --grad-accum {per_step // r}"
    return "a shorter --max-length, or a machine with more memory"
