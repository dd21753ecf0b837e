"""Peak memory of a CPU training run, estimated before the first step, so that running out of
memory is never the first sign: ``train run`` stops with exit code 2 and the settings to change
when the estimate exceeds the memory available.

The estimate, in bytes:

* weights ``4 x parameters`` (fp32), ``16 x trainable parameters`` for their gradients and
  AdamW's two moments, plus the runtime itself (libraries, tokenizer, the allocator's small
  blocks; 1 GB);
* the activations autograd keeps for the backward pass, **measured** on this model before the
  first step (:func:`probe`): one forward pass of one row at three short lengths, counting the
  tensors autograd saved, fitted as ``fixed + linear x length + quadratic x length^2`` per row.
  This sees what a formula over the config cannot: the adapters' dropout copies (LoRA's input
  dropout keeps a copy of every adapted layer's input, 40-70% of the total), attention widths
  other than the hidden size (Gemma 3's 4 x 256 heads on a 640-wide model), and whether the
  attention kernel keeps the ``length^2`` scores (the CPU's SDPA kernel does not). With gradient
  checkpointing only each layer's input is kept, and one layer's activations are rebuilt at a time;
* the loss's transient tensors: ``12 x vocab`` bytes per projected token (logits, softmax and
  gradient), for ``loss_chunk_tokens`` tokens at a time, or every token of the forward pass with
  the model's own loss; plus a merged copy of the embedding and its gradient (``8 x vocab x
  hidden``) when peft trains some of its rows (the turn tokens of a chat format given to a base
  model): peft rebuilds the whole matrix for every projection.

Calibrated with ``bench/memory.py`` (one optimizer step per setting, peak RSS against the
estimate; docs/BENCHMARKS.md): for both embedded models, 4 shapes, with and without
checkpointing, the measured peak is 0.76-0.99 of the estimate: never above it. It is an estimate for
catching what cannot fit, not a promise that what passes fits.

The measured peaks assume :func:`release_freed_memory`: glibc's allocator keeps freed tensors
mapped (its mmap threshold rises with every large free), so a CPU run's RSS grows far past its
live tensors, 1.5-3x on these models. ``train run`` fixes the threshold first (1 MB).

When the estimate exceeds the memory available, ``memory_check: adapt`` (the default) runs the
nearest settings that fit (:func:`fit`): fewer rows per forward pass with more accumulation, so
each optimizer step sees the same rows and the same loss normalisation, then gradient
checkpointing; ``refuse`` stops with those settings named instead. Either way nothing runs out of
memory half way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from datagen.core.errors import UserError

if TYPE_CHECKING:
    from .config import TrainConfig
    from .model import Runtime

GB = 1e9
RUNTIME_BYTES = 1.0 * GB
CHUNK_LOGITS_BYTES = 1 << 28  # one loss chunk's fp32 logits, by default (see chunk_tokens)
PROBE_LENGTHS = (64, 128, 256)
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD_BYTES = 1 << 20  # 64 KB frees as much but costs short padded batches 40% of their speed


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


@dataclass(frozen=True)
class Saved:
    """The bytes autograd keeps for the backward pass of one forward pass: ``fixed`` once, plus
    ``linear x length + quadratic x length^2`` for each row of ``length`` tokens."""

    linear: float
    quadratic: float = 0.0
    fixed: float = 0.0

    def per_row(self, length: int) -> float:
        return self.linear * length + self.quadratic * length * length

    @classmethod
    def fitted(cls, points: list[tuple[int, float]]) -> Saved:
        """Through ``(length, bytes)`` points: a line through the origin for one, a line for two,
        a parabola for three; negative coefficients (rounding of tiny terms) are dropped."""
        if len(points) == 1:
            (n, b), = points
            return cls(b / n)
        if len(points) == 2:
            (n0, b0), (n1, b1) = points
            lin = (b1 - b0) / (n1 - n0)
            return cls(lin, 0.0, max(0.0, b0 - lin * n0))
        (x0, y0), (x1, y1), (x2, y2) = points[:3]
        quad = ((y2 - y1) / (x2 - x1) - (y1 - y0) / (x1 - x0)) / (x2 - x0)
        lin = (y1 - y0) / (x1 - x0) - quad * (x0 + x1)
        fixed = y0 - lin * x0 - quad * x0 * x0
        if quad < 0:
            return cls.fitted([points[0], points[-1]])
        return cls(lin, quad, max(0.0, fixed))


def _text_config(config: Any) -> Any:
    return getattr(config, "text_config", None) or config


def estimate(config: Any, n_params: int, n_trainable: int, *, rows: int, length: int, saved: Saved,
             gradient_checkpointing: bool, loss_chunk_tokens: int, merged_embedding: bool = False) -> Estimate:
    c = _text_config(config)
    hidden, layers = c.hidden_size, c.num_hidden_layers
    if gradient_checkpointing:  # each layer's input, plus one layer rebuilt (and its gradients) at a time
        activations = rows * layers * 4.0 * length * hidden + 2 * rows * saved.per_row(length) / layers + saved.fixed
    else:
        activations = rows * saved.per_row(length) + saved.fixed
    projected = min(loss_chunk_tokens, rows * length) if loss_chunk_tokens else rows * length
    transient = 12.0 * c.vocab_size * projected + (8.0 * c.vocab_size * hidden if merged_embedding else 0.0)
    return Estimate(4.0 * n_params + 16.0 * n_trainable + RUNTIME_BYTES, activations, transient)


class _Held:
    """A tensor autograd saved, held through a plain Python object, so that a weak reference to it
    says whether the graph still holds the tensor."""

    __slots__ = ("t", "__weakref__")

    def __init__(self, t: Any) -> None:
        self.t = t

    @staticmethod
    def unpack(h: _Held) -> Any:
        return h.t


def probe(model: Any, *, length: int, loss_chunk_tokens: int) -> Saved:
    """Measure what autograd keeps for one row of this model (in training mode, as the run will
    train it), at up to three lengths no longer than ``length``, and fit :class:`Saved`. The
    loss is the chunked one (its logits are the estimate's own term); the random state is left as
    it was, so the run trains exactly as it would without the probe."""
    import torch

    lengths = sorted({max(2, min(length, n)) for n in PROBE_LENGTHS})
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    was_training = model.training
    model.train()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            points = [(n, _saved_bytes(model, n, loss_chunk_tokens or 1024, weights)) for n in lengths]
    finally:
        model.train(was_training)
    return Saved.fitted(points)


def _saved_bytes(model: Any, length: int, chunk: int, weights: set[int]) -> float:
    """Bytes of the tensors autograd still holds after one forward pass and loss over one row of
    ``length`` random tokens (each storage once, the weights left out); the graph is freed on
    return, no gradient is computed."""
    import gc
    import weakref

    import torch

    from .loss import trained_token_loss

    held: list[weakref.ref[_Held]] = []

    def pack(t: torch.Tensor) -> _Held:
        h = _Held(t.detach())  # the tensor itself would tie the graph to itself: a cycle gc cannot see
        held.append(weakref.ref(h))
        return h

    ids = torch.randint(0, _text_config(model.config).vocab_size, (1, length))
    inputs = {"input_ids": ids, "position_ids": torch.arange(length).unsqueeze(0), "labels": ids.clone()}
    with torch.autograd.graph.saved_tensors_hooks(pack, _Held.unpack):
        loss = trained_token_loss(model, inputs, None, chunk)
    live: dict[int, int] = {}
    for ref in held:
        if (h := ref()) is not None and (st := h.t.untyped_storage()).data_ptr() not in weights:
            live[st.data_ptr()] = max(live.get(st.data_ptr(), 0), st.nbytes())
    h = None
    del loss
    gc.collect()
    return float(sum(live.values()))


def release_freed_memory() -> bool:
    """Make glibc hand large freed blocks back to the system at once (a fixed mmap threshold of
    1 MB): without it a CPU run's RSS grows to 1.5-2.6x its live tensors (bench/memory.py).
    Leaves a threshold the user set (``MALLOC_MMAP_THRESHOLD_``) alone. True when set."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc
        return False


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


def fit(config: Any, n_params: int, n_trainable: int, *, rows: int, accumulation: int, length: int, saved: Saved,
        gradient_checkpointing: bool, loss_chunk_tokens: int, budget: float, merged_embedding: bool = False) -> Fit | None:
    """The settings nearest to those asked that fit ``budget``: the most rows per forward pass
    that divide the rows per optimizer step, first without gradient checkpointing (unless it is
    on already), then with it; None when not even one row with checkpointing fits."""
    per_step = rows * accumulation
    divisors = sorted({d for d in range(1, rows + 1) if per_step % d == 0}, reverse=True)
    for gc in sorted({gradient_checkpointing, True}):  # False first, when allowed
        for r in divisors:
            est = estimate(config, n_params, n_trainable, rows=r, length=length, saved=saved, gradient_checkpointing=gc,
                           loss_chunk_tokens=loss_chunk_tokens, merged_embedding=merged_embedding)
            if est.total <= budget:
                return Fit(r, per_step // r, gc, est)
    return None


def check_memory(cfg: TrainConfig, rt: Runtime, model: Any) -> dict[str, Any] | None:
    """Compare the estimated peak of this run (:mod:`train.memory`) with the memory available, on a
    CPU only (a GPU run is bounded by the GPU's memory, which torch reports itself). When it does
    not fit: with ``memory_check: adapt`` switch ``cfg`` to the nearest settings that fit and say
    so; with ``refuse``, or when nothing fits, stop with exit code 2 naming the settings to change.
    Returns the estimate (and any adaptation) for the manifest."""
    if rt.device != "cpu":
        return None
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    procs = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # processes of this run on this machine
    chunk = chunk_tokens(cfg.loss_chunk_tokens, model.config.get_text_config().vocab_size)
    merged = any("TrainableTokens" in type(m).__name__ for m in model.modules())  # peft trains some embedding rows
    shape = {"length": cfg.max_length, "loss_chunk_tokens": chunk, "merged_embedding": merged,
             "saved": probe(model, length=cfg.max_length, loss_chunk_tokens=chunk)}
    est = estimate(model.config, n_params, n_trainable, rows=cfg.per_device_batch_size,
                          gradient_checkpointing=cfg.gradient_checkpointing, **shape)
    available = available_bytes()
    doc: dict[str, Any] = {**est.to_dict(), "processes": procs, "available_gb": round(available / GB, 2) if available else None}
    if cfg.memory_check == "off" or available is None or est.total * procs <= available:
        return doc  # recorded either way: the manifest says what was expected
    found = fit(model.config, n_params, n_trainable, rows=cfg.per_device_batch_size, accumulation=cfg.gradient_accumulation_steps,
                       gradient_checkpointing=cfg.gradient_checkpointing, budget=available / procs, **shape)
    need = (f"this run would need about {est.total * procs / GB:.1f} GB ({procs} process(es) x {est.total / GB:.1f} GB: "
            f"{cfg.per_device_batch_size} rows of {cfg.max_length} tokens per forward pass, activations "
            f"{est.activations / GB:.1f} GB), and {available / GB:.1f} GB is available")
    if found is None:
        raise UserError(f"{need}; not even one row per pass with gradient checkpointing fits: try a shorter --max-length, "
                        "or a machine with more memory (or --set memory_check=off to try anyway)")
    if cfg.memory_check == "refuse":
        raise UserError(f"{need}; try {found.flags()} (the same rows per optimizer step), or --set memory_check=adapt")
    asked = {"per_device_batch_size": cfg.per_device_batch_size, "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
             "gradient_checkpointing": cfg.gradient_checkpointing}
    cfg.per_device_batch_size, cfg.gradient_accumulation_steps = found.rows, found.accumulation
    cfg.gradient_checkpointing = found.gradient_checkpointing
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"memory: {need}; running {found.flags()} instead (the same rows per optimizer step, "
              f"about {found.estimate.total / GB:.1f} GB)", file=sys.stderr)
    return {**found.estimate.to_dict(), "processes": procs, "available_gb": doc["available_gb"],
            "adapted_from": {**asked, "total_gb": doc["total_gb"]}}
