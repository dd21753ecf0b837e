"""``train run``: supervised fine-tuning with the plain transformers ``Trainer`` and peft.

Reading top to bottom, :func:`run`:

1. checks what cannot work here (QLoRA without a GPU) and the output folder, before loading
   anything heavy;
2. resolves device, precision and attention kernel (:func:`train.model.resolve_runtime`);
3. loads the base model and attaches adapters (:mod:`train.model`);
4. renders the records into token ids with loss masks, splits off the eval set, and packs the
   training samples into rows of ``max_length`` tokens (:mod:`train.data`);
5. trains with ``Trainer``: LR schedule with warmup, weight decay, gradient accumulation,
   NEFTune, gradient checkpointing, bf16 where supported, eval loss every ``eval_steps``,
   checkpoints every ``save_steps`` (``--resume`` continues from the last one);
6. saves the model (the adapter for lora/dora/qlora, all weights for full), the tokenizer and a
   generation config that stop at the end-of-turn token, then ``metrics.json``,
   ``log_history.json`` and, last, ``train_manifest.json``.

Loss normalization: the model's forward takes ``**kwargs``, so the Trainer passes it
``num_items_in_batch``, the number of trained (label != -100) tokens over all the micro-batches of
an optimizer step and all processes. Each micro-batch's summed loss is divided by that count, so
the gradient is the mean over tokens of the whole step, whatever the accumulation and however
the tokens fall into rows. The manifest records whether this was active
(``runtime.loss_normalized_by_tokens``).

Multi-process: run the same command under ``torchrun --nproc_per_node N`` or ``accelerate
launch``; each process loads and packs the data identically, the Trainer shards the rows, and on
a CPU the processes talk over gloo. Only process 0 writes the final files.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datagen.core.progress import progress_enabled
from datagen.core.errors import UserError
from datagen.core.writing import write_json

from .config import TrainConfig
from .memory import check_memory, chunk_tokens, release_freed_memory
from .model import (
    Runtime,
    check_method,
    load_for_training,
    resolve_runtime,
    save_for_generation,
    write_base_name,
)
from .outdir import MANIFEST, check_out, lock_out

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, Trainer

    from .data import Sample

def run(cfg: TrainConfig, data: str, out: str, *, resume: bool = False, force: bool = False) -> dict[str, Any]:
    """Train on the records in ``data`` and save the result in ``out``. Returns the final metrics."""
    started = time.time()
    check_method(cfg)
    release_freed_memory()  # before the model is loaded: a CPU run's RSS then follows its live tensors
    out_dir = Path(out)
    _check_data_paths(cfg, data)
    records = read_data(cfg, data)  # a bad row stops the run here, before a model is loaded
    existed = out_dir.exists()
    lock = lock_out(out_dir)  # first: --force must never clear a folder another run is writing
    checkpoint = check_out(out_dir, resume=resume, force=force)

    rt = resolve_runtime(cfg)
    from transformers import set_seed

    set_seed(cfg.seed)
    model, tokenizer = load_for_training(cfg, rt)
    try:
        memory = check_memory(cfg, rt, model)  # before any work that could run out of memory
    except UserError:
        if lock is not None:
            lock.release()
        if not existed:  # refused before any work: leave nothing behind
            import shutil

            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    train_samples, eval_samples, data_stats = load_data(cfg, data, tokenizer, records)
    data_stats["memory_estimate"] = memory

    data_stats["chat_template"] = getattr(model, "datagen_chat_template", None)
    trainer, meter = build_trainer(cfg, rt, model, tokenizer, train_samples, eval_samples, out_dir)
    if checkpoint and trainer.is_world_process_zero():
        print(f"resuming from {checkpoint}", file=sys.stderr)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    metrics: dict[str, Any] = dict(result.metrics)
    if checkpoint and (whole := trainer.whole_run_train_loss()) is not None:
        # the Trainer's train_loss averages this call's steps only: report the whole run's
        metrics["train_loss"] = whole
        for entry in reversed(trainer.state.log_history):
            if "train_loss" in entry:
                entry["train_loss"] = whole
                break
    metrics.update(meter.summary())
    if eval_samples:
        metrics.update(trainer.evaluate())

    _save_model(trainer, tokenizer, out_dir, cfg)
    if trainer.is_world_process_zero():
        write_json(out_dir / "log_history.json", trainer.state.log_history)
        write_json(out_dir / "metrics.json", metrics)
        write_json(out_dir / MANIFEST, _manifest(cfg, rt, trainer, data, data_stats, metrics, started, checkpoint))
    if lock is not None:
        lock.release()
    return metrics


def _check_data_paths(cfg: TrainConfig, data: str) -> None:
    from datagen.core.hfdata import input_files

    for label, path, split in (("--data", data, cfg.data_split), ("eval_split", cfg.eval_split if isinstance(cfg.eval_split, str) else None, None)):
        if path is not None and not all(f.is_file() for f in input_files(path, split)):
            raise UserError(f"{label} {path}: no such file")


# -- data ------------------------------------------------------------------------------------------
def read_data(cfg: TrainConfig, data: str) -> list[Any]:
    """The training records, then those of an eval file, read and validated: a
    ``(records, problems)`` pair for each."""
    from .data import read_training_records

    mapping = {"columns": cfg.data_map, "roles": cfg.data_roles}
    out = [read_training_records(data, fmt=cfg.data_format, limit=cfg.limit, on_error=cfg.on_error, split=cfg.data_split, **mapping)]
    if isinstance(cfg.eval_split, str):
        out.append(read_training_records(cfg.eval_split, fmt=cfg.data_format, on_error=cfg.on_error, **mapping))
    return out


def load_data(
    cfg: TrainConfig, data: str, tokenizer: PreTrainedTokenizerBase, records: list[Any] | None = None,
) -> tuple[list[Sample], list[Sample], dict[str, Any]]:
    """Training and eval samples, and their statistics for the manifest. ``records``: what
    :func:`read_data` returned (read again when None)."""
    from .data import load_samples

    records = records if records is not None else read_data(cfg, data)
    opts = {"mask_history": cfg.mask_history, "train_on_prompt": cfg.train_on_prompt, "max_length": cfg.max_length, "on_error": cfg.on_error}
    samples, rejected = load_samples(data, tokenizer, fmt=cfg.data_format, limit=cfg.limit, records=records[0], **opts)
    if isinstance(cfg.eval_split, str):
        eval_samples, eval_rejected = load_samples(cfg.eval_split, tokenizer, fmt=cfg.data_format, records=records[1], **opts)
        rejected = rejected + eval_rejected
        train_samples = samples
    elif isinstance(cfg.eval_split, float):
        train_samples, eval_samples = split(samples, cfg.eval_split, cfg.seed)
    else:
        train_samples, eval_samples = samples, []
    if not train_samples:
        raise UserError(f"--data {data}: no trainable samples (every record was empty after masking, or rejected)")
    stats = {
        "records": len(samples) + (len(eval_samples) if isinstance(cfg.eval_split, str) else 0),
        "rejected": len(rejected),
        "rejected_reasons": _reasons(rejected),
        "train_samples": len(train_samples),
        "eval_samples": len(eval_samples),
        "train_tokens": sum(len(s.input_ids) for s in train_samples),
        "train_trainable_tokens": sum(s.n_trainable for s in train_samples),
    }
    return train_samples, eval_samples, stats


def split(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """A seeded random ``fraction`` of the samples (at least one) held out for evaluation."""
    if len(samples) < 2:
        raise UserError(f"eval_split {fraction}: needs at least 2 records, got {len(samples)}")
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(samples) - 1, max(1, round(fraction * len(samples))))
    held = set(order[:n_eval])
    return [s for i, s in enumerate(samples) if i not in held], [s for i, s in enumerate(samples) if i in held]


def _reasons(rejected: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rejected:
        reason = str(r.get("reason", "rejected"))
        counts[reason] = counts.get(reason, 0) + 1
    return counts


# -- the trainer -----------------------------------------------------------------------------------
def build_trainer(
    cfg: TrainConfig,
    rt: Runtime,
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    train_samples: list[Sample],
    eval_samples: list[Sample],
    out: Path,
) -> tuple[Trainer, Any]:
    """A ``Trainer`` over packed rows (or padded samples), with the throughput callback."""
    import torch
    from transformers import TrainingArguments

    from .packing import PackedCollator, PaddedCollator, pack
    from .metrics import CountingTrainer, ThroughputCallback, peak_flops

    if cfg.packing:
        train_rows: list[Any] = pack(train_samples, cfg.max_length)
        eval_rows: list[Any] = pack(eval_samples, cfg.max_length) if eval_samples else []
        collator: Any = PackedCollator(tokenizer.pad_token_id)
    else:
        train_rows, eval_rows = list(train_samples), list(eval_samples)
        collator = PaddedCollator(tokenizer.pad_token_id)

    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=cfg.per_device_batch_size,
        per_device_eval_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        optim=cfg.optim,
        num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps or -1,
        neftune_noise_alpha=cfg.neftune_noise_alpha,
        **_checkpointing_args(cfg.gradient_checkpointing and cfg.method != "qlora"),  # qlora: enabled at load
        bf16=rt.bf16,
        eval_strategy="steps" if eval_rows else "no",
        eval_steps=(cfg.eval_steps or cfg.save_steps) if eval_rows else None,
        prediction_loss_only=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        seed=cfg.seed,
        data_seed=cfg.seed,
        disable_tqdm=not progress_enabled(),
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        use_cpu=rt.device == "cpu",
        ddp_backend="gloo" if rt.device == "cpu" and _world_size() > 1 else None,
        ddp_find_unused_parameters=False,
        dataloader_num_workers=cfg.dataloader_num_workers,
    )
    peak = peak_flops(torch.cuda.get_device_name(), cfg.peak_tflops) if rt.device == "cuda" else None
    n_params = sum(p.numel() for p in model.parameters())
    meter = ThroughputCallback(n_params=n_params, pad_id=tokenizer.pad_token_id, peak=peak)
    trainer = CountingTrainer(
        model=model,
        args=args,
        train_dataset=train_rows,
        eval_dataset=eval_rows or None,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[meter],
    )
    trainer.meter = meter
    trainer.loss_chunk_tokens = chunk_tokens(cfg.loss_chunk_tokens, model.config.get_text_config().vocab_size)
    return trainer, meter


def _checkpointing_args(enabled: bool) -> dict[str, Any]:
    """Gradient checkpointing under the name this transformers knows (v5 calls it activation checkpointing)."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    prefix = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {prefix: enabled, f"{prefix}_kwargs": {"use_reentrant": False}}


def _world_size() -> int:
    """Processes in this run, as torchrun / accelerate launch announce them."""
    return int(os.environ.get("WORLD_SIZE", "1"))


# -- saving ------------------------------------------------------------------------------------------
def _save_model(trainer: Trainer, tokenizer: PreTrainedTokenizerBase, out: Path, cfg: TrainConfig) -> None:
    """The adapter (lora/dora/qlora) and the base's name, or the full weights; plus tokenizer and
    generation config."""
    from peft import PeftModel

    model = trainer.accelerator.unwrap_model(trainer.model)
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    base.config.use_cache = True  # saved for generation
    trainer.save_model(str(out))  # every process must call it (it synchronizes); process 0 writes
    if trainer.is_world_process_zero():
        save_for_generation(out, tokenizer, base)
        if cfg.uses_adapter:
            write_base_name(out, cfg.model)


def _manifest(
    cfg: TrainConfig,
    rt: Runtime,
    trainer: Trainer,
    data: str,
    data_stats: dict[str, Any],
    metrics: dict[str, Any],
    started: float,
    checkpoint: Path | None,
) -> dict[str, Any]:
    from datagen.core.hfdata import input_digest
    from datagen.core.rundir import package_versions

    from .packing import expected_padding

    model = trainer.model
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    inputs = {"data": {"path": str(data), "sha256": input_digest(str(data), cfg.data_split)}}
    if isinstance(cfg.eval_split, str):
        inputs["eval"] = {"path": cfg.eval_split, "sha256": input_digest(cfg.eval_split)}
    return {
        "command": "train run",
        "status": "complete",
        "config": cfg.model_dump(mode="json"),
        "inputs": inputs,
        "runtime": {
            **rt.to_dict(),
            "world_size": trainer.args.world_size,
            "loss_normalized_by_tokens": bool(trainer.model_accepts_loss_kwargs),
            "resumed_from": str(checkpoint) if checkpoint else None,
        },
        "model": {"parameters": n_params, "trainable_parameters": n_trainable, "saved": "adapter" if cfg.uses_adapter else "full"},
        "data": data_stats,
        "batches": expected_padding(trainer.train_dataset, batch_size=cfg.per_device_batch_size, seed=cfg.seed).as_dict(),
        "global_step": trainer.state.global_step,
        "final_metrics": metrics,
        "versions": package_versions(),
        "seconds": round(time.time() - started, 1),
    }


def cli(args: Any) -> int:
    """``train run``."""
    from .cli import config_flags
    from .config import build_config

    cfg = build_config(args.config, args.sets, config_flags(args))
    metrics = run(cfg, args.data, args.out, resume=args.resume, force=args.force)
    _leave_process_group()  # after a finished run only: a failing rank exits, and torchrun stops the others
    if int(os.environ.get("RANK", "0")) == 0:
        shown = {k: metrics[k] for k in ("train_loss", "eval_loss", "tokens_per_s", "padding_waste") if k in metrics}
        from .metrics import log_line

        print(f"trained model written to {args.out}: {log_line(shown)}")
    return 0


def _leave_process_group() -> None:
    """Under torchrun: every rank waits for the others, then closes the process group, so that no
    rank exits while a peer's collective threads still talk to it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
