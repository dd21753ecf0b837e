"""The training configuration: one pydantic model, read from a YAML recipe plus command-line overrides.

Precedence, lowest to highest: the defaults below, the recipe (``--config recipe.yaml``), each
``--set key=value`` in order, then the named flags (``--method``, ``--max-steps``, ``--lr``...).
Values given with ``--set`` are parsed as YAML scalars, so ``--set packing=false``,
``--set lora_target_modules=[q_proj,v_proj]`` and ``--set eval_split=gold.jsonl`` all work.

Every field carries its help text (``train config`` prints them). An unknown key is an
error that names it, where it came from, and the closest known key::

    error: recipe.yaml: unknown key 'learning_rat' (did you mean 'learning_rate'?)

Nothing here imports torch: settings that depend on the machine (``bf16: auto``,
``attn_implementation: auto``) are resolved by :mod:`train.run` at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from datagen.core.errors import UserError
from datagen.core.settings import check_keys, merge_layers, read_yaml

Method = Literal["full", "lora", "dora", "qlora"]
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"


class TrainConfig(BaseModel):
    """Everything that decides a training run, besides the data file and the output folder."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # -- model and method -------------------------------------------------------------------------
    model: str = Field("smollm2", description="base model: 'smollm2' (the embedded SmolLM2-135M-Instruct), 'gemma3-270m' (the embedded Gemma 3 270M base) or a local Hugging Face model folder")
    chat_template: str = Field("auto", description=(
        "the conversation format: auto (the model's own template; a base model without one gets the format whose turn tokens "
        "its vocabulary holds: gemma or chatml), chatml, gemma, or a FILE.jinja; its end-of-turn token becomes the eos the loss trains"))
    method: Method = Field("lora", description="full: all weights; lora / dora: low-rank adapters (DoRA: weight-decomposed); qlora: LoRA on a 4-bit base (needs a CUDA GPU and bitsandbytes)")
    lora_r: int = Field(16, ge=1, description="adapter rank")
    lora_alpha: float = Field(32, gt=0, description="adapter scaling numerator (scale = alpha / r)")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter input")
    lora_target_modules: list[str] | str = Field("all-linear", description="modules that get adapters: 'all-linear' or a list such as [q_proj, v_proj]")
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"] = Field(
        "auto", description="auto: flash_attention_2 on a GPU where flash-attn is installed (packed batches then run varlen kernels), else sdpa",
    )

    # -- data ----------------------------------------------------------------------------------------
    data_format: Literal["alpaca", "sharegpt", "messages", "record", "dolly", "ultrachat", "prompt-completion"] | None = Field(None, description="input format (default: detected from the first row)")
    data_split: str | None = Field(None, description="the split to read from a DatasetDict folder or a cached dataset (--data hf:ORG/NAME)")
    data_map: str | None = Field(None, description="rename columns before the format is detected: response=output,context=input")
    data_roles: str | None = Field(None, description="rename turn roles before reading: bot=assistant,customer=user")
    limit: int | None = Field(None, ge=1, description="train on the first N records only")
    on_error: Literal["raise", "skip"] = Field("raise", description="bad input rows: stop with an error naming the line, or skip them (counted in the manifest)")
    max_length: int = Field(1024, ge=8, description="longest sample in tokens; longer samples are truncated, and packed bins hold this many tokens")
    packing: bool = Field(True, description="pack several samples per row (best-fit-decreasing, attention restarted per sample): no compute spent on padding")
    mask_history: bool = Field(False, description="train only on the final assistant turn of multi-turn conversations")
    train_on_prompt: bool = Field(False, description="also train on system and user tokens (default: assistant tokens only)")
    eval_split: float | str | None = Field(None, description="held-out evaluation data: a fraction of the records in (0, 1), or a data file; none: no evaluation during training")

    # -- optimisation ----------------------------------------------------------------------------------
    learning_rate: float = Field(2e-4, gt=0, description="peak learning rate (full fine-tuning wants ~1e-5, adapters ~1e-4 to 3e-4)")
    lr_scheduler_type: Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay"] = Field(
        "cosine", description="learning-rate schedule after the warmup",
    )
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="fraction of the optimizer steps spent warming the learning rate up from 0")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping (0: off)")
    optim: str = Field("adamw_torch", description="optimizer name as transformers knows it (adamw_torch, adamw_torch_fused, adafactor, paged_adamw_8bit...)")
    # 2 x 4 rather than 8 x 1: the same 8 rows per optimizer step, a quarter of the activations
    # (measured on 2 CPU cores, SmolLM2, packed rows of 1,024: 8 x 1 was killed at 24 GB, 2 x 4
    # peaked at 9.4 GB and trained 1.4x faster than 8 x 1 with gradient checkpointing)
    per_device_batch_size: int = Field(2, ge=1, description="rows per device per forward pass (a row is one packed bin, or one sample without packing)")
    gradient_accumulation_steps: int = Field(4, ge=1, description="forward passes per optimizer step; the loss is normalized by the number of trained tokens across all of them")
    num_epochs: float = Field(3.0, gt=0, description="passes over the training data (ignored when max_steps is set)")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (overrides num_epochs)")
    neftune_noise_alpha: float | None = Field(None, ge=0, description="NEFTune: uniform noise of this scale on the input embeddings during training (typical 5-15); none: off")
    loss_chunk_tokens: int | None = Field(None, ge=0, description=(
        "compute the loss over trained tokens only, projecting this many at a time onto the vocabulary (never the full "
        "rows x length x vocab logits); default: as many as keep a chunk's logits near 256 MB (1,024 for SmolLM2, 256 for "
        "Gemma 3); 0: the model's own loss over every position"))
    memory_check: Literal["adapt", "refuse", "off"] = Field("adapt", description=(
        "on a CPU, before the first step, compare the estimated peak memory with what is available; when it does not fit, "
        "adapt: run fewer rows per forward pass with more accumulation (the same rows per step), then gradient "
        "checkpointing; refuse: stop with exit 2 naming those settings; off: no check"))
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass: less memory, about 30% slower")
    bf16: bool | Literal["auto"] = Field("auto", description="bfloat16 mixed precision. auto: on a CUDA GPU that supports it, never on CPU (bf16 is ~2.5x slower than fp32 there)")
    seed: int = Field(42, description="seed for initialization, data order and dropout: the same seed, data and config give the same run")

    # -- evaluation, checkpoints, logging -----------------------------------------------------------------
    eval_steps: int | None = Field(None, ge=1, description="evaluate every N optimizer steps (default: every save_steps); needs eval_split")
    save_steps: int = Field(200, ge=1, description="write a checkpoint every N optimizer steps (train run --resume continues from the last one)")
    save_total_limit: int | None = Field(2, ge=1, description="checkpoints to keep (older ones are deleted); none: keep all")
    logging_steps: int = Field(10, ge=1, description="log loss, learning rate, tokens/s and padding waste every N optimizer steps")
    dataloader_num_workers: int = Field(0, ge=0, description="data-loading worker processes (samples are pre-tokenized, so 0 is usually best)")
    peak_tflops: float | None = Field(None, gt=0, description="the accelerator's peak dense TFLOP/s for MFU (default: looked up from the GPU name; MFU is not logged on CPU)")

    @field_validator("lora_target_modules")
    @classmethod
    def _targets(cls, v: list[str] | str) -> list[str] | str:
        if isinstance(v, str) and v != "all-linear":
            return [m.strip() for m in v.split(",") if m.strip()]
        if isinstance(v, list) and not v:
            raise ValueError("needs at least one module name, or 'all-linear'")
        return v

    @field_validator("memory_check", mode="before")
    @classmethod
    def _memory_check(cls, v: Any) -> Any:
        return {True: "adapt", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @field_validator("eval_split")
    @classmethod
    def _eval_split(cls, v: float | str | None) -> float | str | None:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if v == 0:
                return None
            if not 0 < v < 1:
                raise ValueError("a fraction must be in (0, 1); give a file path for a separate eval set")
            return float(v)
        if isinstance(v, str):
            if v.strip().lower() in ("", "none", "null", "0"):
                return None
            try:
                return cls._eval_split(float(v))  # "0.1" from the command line
            except ValueError:
                return v
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.train_on_prompt and self.mask_history:
            raise ValueError("train_on_prompt and mask_history contradict each other; set only one")
        return self

    @property
    def uses_adapter(self) -> bool:
        return self.method in ("lora", "dora", "qlora")


def describe(cfg: TrainConfig) -> str:
    """``cfg`` as a YAML recipe, each setting preceded by its help as a comment."""
    import yaml

    lines = []
    for name, f in TrainConfig.model_fields.items():
        lines.append(f"# {f.description}")
        lines.append(yaml.safe_dump({name: getattr(cfg, name)}, default_flow_style=True, width=1000).strip().strip("{}"))
    return "\n".join(lines) + "\n"


def cli_show(args: Any) -> int:
    """``train config``: print the resolved configuration as a commented recipe."""
    from .cli import config_flags

    print(describe(build_config(args.config, args.sets, config_flags(args))), end="")
    return 0


def resolve_recipe(path_or_name: str) -> Path:
    """A recipe file: a path, or the name of a bundled recipe (``lora-smollm2-cpu``)."""
    p = Path(path_or_name).expanduser()
    if p.is_file():
        return p
    bundled = RECIPES_DIR / (p.name if p.suffix in (".yaml", ".yml") else f"{p.name}.yaml")
    if bundled.is_file():
        return bundled
    names = ", ".join(sorted(x.stem for x in RECIPES_DIR.glob("*.yaml")))
    raise UserError(f"--config {path_or_name}: no such file, and no bundled recipe of that name (bundled: {names})")


def read_recipe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping in a YAML recipe file (an empty file is an empty mapping)."""
    return read_yaml(path, what="a recipe")


def build_config(
    recipe: str | os.PathLike[str] | None = None,
    sets: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Defaults < recipe < ``--set`` items < flags (None values in ``flags`` mean "not given"),
    merged as every command's settings are (:func:`datagen.core.settings.merge_layers`)."""
    path = resolve_recipe(str(recipe)) if recipe is not None else None
    merged, origin = merge_layers(TrainConfig, file=path, file_values=read_recipe(path) if path else None, sets=sets, flags=flags,
                                  hints=_HABITS, listing=_LISTING)
    return validate(merged, origin)


def validate(values: Mapping[str, Any], origin: Mapping[str, str] | str = "config") -> TrainConfig:
    """A :class:`TrainConfig` from a mapping, or a :class:`UserError` naming each bad key and where
    it was set (``origin``: one source for all keys, or a source per key)."""
    where = (lambda key: origin) if isinstance(origin, str) else (lambda key: origin.get(key, "config"))
    if isinstance(origin, str):
        _check_keys(origin, values)
    try:
        return TrainConfig.model_validate(dict(values))
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = str(err["loc"][0]) if err["loc"] else ""
            field = ".".join(str(x) for x in err["loc"])
            problems.append(f"{where(key)}: '{field}': {err['msg']} (got {err.get('input')!r})" if key else f"{where(key)}: {err['msg']}")
        raise UserError("; ".join(problems)) from None


# names people type from habit (TRL, axolotl, the flags), for the "did you mean" hint only
_HABITS = {
    "lr": "learning_rate", "epochs": "num_epochs", "num_train_epochs": "num_epochs", "batch_size": "per_device_batch_size",
    "per_device_train_batch_size": "per_device_batch_size", "grad_accum": "gradient_accumulation_steps",
    "max_seq_length": "max_length", "sequence_len": "max_length", "neftune": "neftune_noise_alpha",
    "target_modules": "lora_target_modules", "r": "lora_r", "use_dora": "method", "base_model": "model",
}


_LISTING = "`train config` lists the settings"


def _check_keys(source: str, values: Mapping[str, Any]) -> None:
    check_keys(TrainConfig, source, values, _HABITS, _LISTING)
