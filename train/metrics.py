"""Throughput logging: non-padding tokens per second, padding waste and (on a GPU) MFU.

:class:`ThroughputCallback` adds three values to every training log line (and to
``log_history.json``):

* ``tokens_per_s``: real (non-padding) tokens processed per second of training, summed over all
  processes. Time spent evaluating or saving checkpoints is not counted.
* ``padding_waste``: the share of the token slots in the batches that held padding, since the
  previous log line. Packing brings it near 0; padded batches of mixed lengths waste a lot.
* ``mfu``: model FLOPs utilization, ``6 * N * tokens_per_s / peak FLOP/s`` with N the model's
  parameter count (frozen ones included: they still run forward and backward through their
  activations). An estimate that ignores the attention term; logged only on a GPU whose peak is
  known (or given as ``peak_tflops``).

The trainer feeds the callback each training batch through :meth:`ThroughputCallback.observe`.
A real token is one the attention mask marks, or, in packed batches (which carry no mask), one
that is not the pad token; chat templates never emit the pad token (``<|endoftext|>`` for SmolLM2).
"""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any

from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

if TYPE_CHECKING:
    import torch
    from transformers import TrainerControl, TrainerState, TrainingArguments

# Dense bf16 peak TFLOP/s by GPU name fragment (first match wins), from the vendors' data sheets.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("GH200", 989.0), ("B200", 2250.0),
    ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0), ("A10G", 125.0),
    ("A10", 125.0), ("RTX 4090", 165.0), ("RTX 3090", 71.0), ("V100", 125.0), ("T4", 65.0),
)


def peak_flops(device_name: str, override_tflops: float | None = None) -> float | None:
    """Peak FLOP/s of a GPU by name, or None when unknown."""
    if override_tflops:
        return override_tflops * 1e12
    for fragment, tflops in PEAK_BF16_TFLOPS:
        if fragment.lower() in device_name.lower():
            return tflops * 1e12
    return None


def count_tokens(batch: dict[str, torch.Tensor], pad_id: int | None) -> tuple[int, int]:
    """``(real tokens, token slots)`` of one collated batch."""
    ids = batch["input_ids"]
    slots = ids.numel()
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum()), slots
    if pad_id is None:
        return slots, slots
    return int((ids != pad_id).sum()), slots


class ThroughputCallback(TrainerCallback):
    """Adds ``tokens_per_s``, ``padding_waste`` and ``mfu`` to training logs (see the module docstring)."""

    def __init__(self, n_params: int, pad_id: int | None, peak: float | None) -> None:
        self.n_params = n_params
        self.pad_id = pad_id
        self.peak = peak
        self._real = 0
        self._slots = 0
        self._seconds = 0.0
        self._clock: float | None = None
        self.totals = {"tokens": 0, "slots": 0, "seconds": 0.0}

    def observe(self, batch: dict[str, Any]) -> None:
        real, slots = count_tokens(batch, self.pad_id)
        self._real += real
        self._slots += slots

    # the clock runs during optimizer steps only; evaluation and saving restart it
    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self._clock = time.perf_counter()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        now = time.perf_counter()
        if self._clock is not None:
            self._seconds += now - self._clock
        self._clock = now

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self._clock = time.perf_counter()

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self._clock = time.perf_counter()

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if logs is None or "loss" not in logs:
            return
        real, slots, seconds = self._reduce(args, self._real, self._slots, self._seconds)
        self._real = self._slots = 0
        self._seconds = 0.0
        self.totals["tokens"] += real
        self.totals["slots"] += slots
        self.totals["seconds"] += seconds
        extra: dict[str, float] = {}
        if slots:
            extra["padding_waste"] = round(1 - real / slots, 4)
        if seconds > 0:
            extra["tokens_per_s"] = round(real / seconds, 1)
            if self.peak:
                extra["mfu"] = round(6 * self.n_params * real / seconds / (self.peak * args.world_size), 4)
        logs.update(extra)
        if state.log_history:  # the Trainer appended its copy of this log line before calling us
            state.log_history[-1].update(extra)

    @staticmethod
    def _reduce(args: TrainingArguments, real: int, slots: int, seconds: float) -> tuple[int, int, float]:
        """Tokens summed over processes; time as the slowest process saw it."""
        import torch
        import torch.distributed as dist

        if args.world_size <= 1 or not dist.is_available() or not dist.is_initialized():
            return real, slots, seconds
        counts = torch.tensor([real, slots], dtype=torch.float64, device=args.device)
        dist.all_reduce(counts)
        t = torch.tensor([seconds], dtype=torch.float64, device=args.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(counts[0]), int(counts[1]), float(t[0])

    def summary(self) -> dict[str, float]:
        """Totals over the run, for metrics.json."""
        t = self.totals
        out: dict[str, float] = {"train_tokens": t["tokens"]}
        if t["slots"]:
            out["padding_waste"] = round(1 - t["tokens"] / t["slots"], 4)
        if t["seconds"]:
            out["tokens_per_s"] = round(t["tokens"] / t["seconds"], 1)
        return out


LOSS_STATE = "datagen_loss_accounting"  # key in a checkpoint's trainer_state.json "stateful_callbacks"


class CountingTrainer(Trainer):
    """``Trainer`` that shows each training batch to its :class:`ThroughputCallback` (``meter``)
    before the step (evaluation batches are not counted), and whose loss log survives a resume.

    The ``Trainer`` sums the training loss between two log lines in memory and starts that sum,
    and the run's total, from zero when it resumes: the first log line after a resume would
    average only the steps since the checkpoint, and ``train_loss`` only this call's steps. So
    each checkpoint also stores the loss sums as they stood (in its ``trainer_state.json``), a
    resume restores them, and :meth:`whole_run_train_loss` is the mean over every step. A resumed
    run then logs the same losses as one that was never interrupted (process 0's sums: under
    several processes the resumed partial sum is process 0's)."""

    meter: ThroughputCallback | None = None
    loss_chunk_tokens: int = 0  # > 0: the loss over trained tokens only, in chunks (train.loss)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_callback(_RestoreLossSums(self))
        self.resumed_loss_sums = False
        numeric_log_lines(self)

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
        if not self.loss_chunk_tokens or return_outputs or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        from .loss import trained_token_loss

        loss = trained_token_loss(model, inputs, num_items_in_batch, self.loss_chunk_tokens)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # as the Trainer's own compute_loss: num_items_in_batch counts every process's tokens,
            # and DDP averages the gradients over the processes
            loss = loss * self.accelerator.num_processes
        return loss

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        if self.meter is not None:
            self.meter.observe(inputs)
        return super().training_step(model, inputs, num_items_in_batch)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        self.state.stateful_callbacks[LOSS_STATE] = {
            "global_step": self.state.global_step,
            "tr_loss": float(self._tr_loss.item()),  # float32 -> float is exact, and back again
            "total_loss_scalar": float(self._total_loss_scalar),
            "globalstep_last_logged": int(self._globalstep_last_logged),
        }
        super()._save_checkpoint(model, trial)

    def whole_run_train_loss(self) -> float | None:
        """Mean training loss over every optimizer step of the run, resumed or not (None when
        this trainer's sums do not cover the steps before the resume)."""
        if self.state.global_step <= 0 or (self._initial_global_step and not self.resumed_loss_sums):
            return None
        return self._total_loss_scalar / self.state.global_step


class _RestoreLossSums(TrainerCallback):
    """On a resumed ``train()``, puts back the loss sums the checkpoint stored (the ``Trainer``
    has just set them to zero, right before ``on_train_begin``)."""

    def __init__(self, trainer: CountingTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        import torch

        saved = (state.stateful_callbacks or {}).get(LOSS_STATE)
        t = self.trainer
        if not isinstance(saved, dict) or saved.get("global_step") != state.global_step or state.global_step == 0:
            return
        t._tr_loss = torch.tensor(saved["tr_loss"], dtype=t._tr_loss.dtype, device=t._tr_loss.device)
        t._total_loss_scalar = saved["total_loss_scalar"]
        t._globalstep_last_logged = saved["globalstep_last_logged"]
        t.resumed_loss_sums = True


# -- log lines -------------------------------------------------------------------------------------
def log_line(logs: dict[str, Any]) -> str:
    """One training log as a JSON object whose numbers are numbers, floats to 4 significant
    digits (the Trainer's own printers write them as strings: ``{'loss': '0.9819'}``)."""
    return json.dumps({k: float(f"{v:.4g}") if isinstance(v, float) and math.isfinite(v) else v
                       for k, v in logs.items() if k != "total_flos"})


class _ProgressLogs(ProgressCallback):
    """The Trainer's progress bar, its log lines written by :func:`log_line`."""

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if state.is_world_process_zero and self.training_bar is not None and logs:
            self.training_bar.write(log_line(logs))


class _PrintLogs(PrinterCallback):
    """Without a progress bar: each log line printed by :func:`log_line`."""

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if state.is_local_process_zero and logs:
            print(log_line(logs), flush=True)


def numeric_log_lines(trainer: Trainer) -> None:
    """Replace the Trainer's log printer (a progress bar's or a plain one) with ours, in place."""
    for theirs, ours in ((ProgressCallback, _ProgressLogs), (PrinterCallback, _PrintLogs)):
        if trainer.pop_callback(theirs) is not None:
            trainer.add_callback(ours)
