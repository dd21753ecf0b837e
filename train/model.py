"""Models for training, merging and evaluation: load a base, add adapters, load an adapter back.

* :func:`check_method` refuses what cannot run on this machine (QLoRA without a CUDA GPU or
  without bitsandbytes) *before* anything heavy is loaded.
* :func:`resolve_runtime` turns ``bf16: auto`` and ``attn_implementation: auto`` into concrete
  settings: fp32 and sdpa on a CPU; bf16 on a GPU that supports it, and flash-attention 2 when
  it is installed (packed rows then run as variable-length sequences).
* :func:`load_for_training` loads the base through :func:`datagen.llm.models.load_model_and_tokenizer`
  (the loader generation shares), or 4-bit for QLoRA, and wraps it in LoRA/DoRA adapters.
* :func:`load_merged` loads a training output folder for inference: full weights as they are, an
  adapter folder as base + adapter merged in memory.
* :func:`save_for_generation` makes a saved folder stop generating at the end of an assistant turn,
  and readable by transformers 4.5x as well as 5.x (:func:`datagen.llm.portable.make_portable`).

A model without a chat template (a base model) gets one before anything is tokenized
(``chat_template`` setting, :mod:`datagen.llm.templates`); turn tokens its vocabulary lacks are
added, and with adapters the embedding rows of the format's turn tokens, added or not, are trained
(peft's ``trainable_token_indices``): a base model never learnt what they mean.

The adapter's ``adapter_config.json`` names the base by its folder's absolute path, so peft's own
``AutoPeftModelForCausalLM.from_pretrained(adapter)`` loads it on the machine that trained it;
``datagen_base.json`` beside it keeps the name the user gave (``gemma3-270m``), which ``train
merge`` and ``train eval`` resolve on any machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datagen.core.errors import UserError
from datagen.core.errors import LLMError
from datagen.llm.portable import make_portable
from datagen.llm.templates import apply_chat_template

from .config import TrainConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

ADAPTER_CONFIG = "adapter_config.json"
BASE_FILE = "datagen_base.json"  # {"model": the base as the user named it}


@dataclass(frozen=True)
class Runtime:
    """Machine-dependent settings, resolved once at start-up and written to the manifest."""

    device: str  # "cpu" | "cuda"
    bf16: bool
    attn_implementation: str
    load_dtype: str  # dtype the base weights are loaded in

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_method(cfg: TrainConfig) -> None:
    """Stop early, with a clear message, when the method cannot run here. Imports torch only to ask
    whether a GPU is visible; loads no model."""
    if cfg.method != "qlora":
        return
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError(
            "method qlora needs the bitsandbytes package and a CUDA GPU; install it with "
            "`pip install bitsandbytes` on a GPU machine, or use --method lora (or dora) here"
        )
    import torch

    if not torch.cuda.is_available():
        raise UserError("method qlora needs a CUDA GPU (4-bit bitsandbytes kernels); none is visible. Use --method lora (or dora) on a CPU")


def resolve_runtime(cfg: TrainConfig) -> Runtime:
    """Concrete device, precision and attention kernel for ``cfg`` on this machine."""
    import torch

    cuda = torch.cuda.is_available()
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if cfg.bf16 == "auto":
        bf16 = bf16_ok
    elif cfg.bf16 and not bf16_ok:
        raise UserError("bf16: true needs a CUDA GPU with bfloat16 support (on a CPU bf16 is ~2.5x slower than fp32); use bf16: auto")
    else:
        bf16 = bool(cfg.bf16)
    attn = cfg.attn_implementation
    if attn == "auto":
        attn = "flash_attention_2" if cuda and bf16 and importlib.util.find_spec("flash_attn") else "sdpa"
    elif attn.startswith("flash_attention") and not cuda:
        raise UserError(f"attn_implementation {attn} needs a CUDA GPU; use auto or sdpa on a CPU")
    # Frozen base weights may live in bf16; weights that train stay fp32 (autocast does the rest).
    load_dtype = "bfloat16" if bf16 and cfg.uses_adapter else "float32"
    return Runtime(device="cuda" if cuda else "cpu", bf16=bf16, attn_implementation=attn, load_dtype=load_dtype)


def load_for_training(cfg: TrainConfig, rt: Runtime) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model to train (adapters attached for lora/dora/qlora) and its tokenizer (right padding).

    The model stays on the CPU; the Trainer moves it to its device (one per process under DDP).
    """
    if cfg.method == "qlora":
        model, tokenizer = _load_4bit(cfg, rt)
    else:
        from datagen.llm.models import load_model_and_tokenizer

        try:
            model, tokenizer = load_model_and_tokenizer(cfg.model, device="cpu", dtype=rt.load_dtype, for_training=True)
        except LLMError as e:
            raise UserError(str(e)) from None
        model.set_attn_implementation(rt.attn_implementation)
    model.config.use_cache = False  # packed rows carry no attention mask; the KV cache is useless in training
    try:
        applied = apply_chat_template(tokenizer, model, cfg.chat_template)
    except LLMError as e:
        raise UserError(str(e)) from None
    if cfg.uses_adapter:
        model = _add_adapter(model, cfg, train_tokens=tokenizer.convert_tokens_to_ids(list(applied.turn_tokens)))
    model.datagen_chat_template = applied.to_dict()  # for the manifest
    return model, tokenizer


def _load_4bit(cfg: TrainConfig, rt: Runtime) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from datagen.llm.models import quiet_loading, resolve_model

    path = resolve_model(cfg.model)
    compute = torch.bfloat16 if rt.bf16 else torch.float16
    quant = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute,
    )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    with quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(
            path, quantization_config=quant, dtype=compute, device_map={"": local_rank}, attn_implementation=rt.attn_implementation,
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model = prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=cfg.gradient_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    return model, tokenizer


@contextmanager
def _peft_quietly() -> Iterator[None]:
    """peft reads transformers' deprecated ``is_gradient_checkpointing`` alias: the FutureWarning is
    about peft's code, not the user's, and says nothing they can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def _add_adapter(model: PreTrainedModel, cfg: TrainConfig, train_tokens: list[int] | None = None) -> PreTrainedModel:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        # the embedding rows of the turn tokens of a format given to a base model: trained, saved with the adapter
        trainable_token_indices=list(train_tokens) if train_tokens else None,
        task_type="CAUSAL_LM",
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules,
        use_dora=cfg.method == "dora",
        bias="none",
    )
    with _peft_quietly():
        peft_model = get_peft_model(model, lora)
    peft_model.peft_config["default"].base_model_name_or_path = base_path(cfg.model)
    return peft_model  # type: ignore[return-value]


def base_path(model: str) -> str:
    """The absolute path of the base's folder (an embedded model's converted folder), as peft's own
    loader needs it in ``adapter_config.json``."""
    from datagen.llm.models import resolve_model

    return str(resolve_model(model).expanduser().resolve())


def write_base_name(out: str | os.PathLike[str], model: str) -> None:
    """``datagen_base.json``: the base as the user named it: an embedded model's name, or a local
    folder's absolute path."""
    from datagen.core.writing import write_json
    from datagen.llm.models import is_embedded

    write_json(Path(out) / BASE_FILE, {"model": model if is_embedded(model) else str(Path(model).expanduser().resolve())})


def is_adapter_dir(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base(path: str | os.PathLike[str]) -> str:
    """The base model an adapter folder was trained on: the name in ``datagen_base.json``, else
    the adapter config's ``base_model_name_or_path``."""
    named = Path(path) / BASE_FILE
    if named.is_file():
        try:
            base = json.loads(named.read_text(encoding="utf-8")).get("model")
        except (OSError, ValueError, AttributeError):
            base = None
        if isinstance(base, str) and base:
            return base
    cfg = json.loads((Path(path) / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise UserError(f"{path}/{ADAPTER_CONFIG} names no base model; pass --base")
    return str(base)


def load_merged(
    path: str | os.PathLike[str],
    dtype: str = "float32",
    base: str | None = None,
    device: str = "cpu",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A plain transformers model from a training output folder, in eval mode.

    An adapter folder is loaded as base (fp32) + adapter, merged (``merge_and_unload``), then cast
    to ``dtype``; merging in fp32 and casting once loses less than merging in 16 bits. A full model
    folder is loaded as it is. The tokenizer comes from ``path`` (training saved it there).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from datagen.llm.models import quiet_loading, resolve_model

    folder = Path(path)
    if not (folder / "config.json").is_file() and not is_adapter_dir(folder):
        raise UserError(f"{folder}: not a model folder (no config.json) nor an adapter folder (no {ADAPTER_CONFIG})")
    with quiet_loading():
        try:
            if is_adapter_dir(folder):
                from peft import PeftModel

                model = AutoModelForCausalLM.from_pretrained(resolve_model(base or adapter_base(folder)), dtype=torch.float32)
                tokenizer = AutoTokenizer.from_pretrained(folder)
                if len(tokenizer) > model.get_input_embeddings().num_embeddings:  # turn tokens added in training
                    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
                with _peft_quietly():
                    model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
            else:
                model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
                tokenizer = AutoTokenizer.from_pretrained(folder)
        except LLMError as e:
            raise UserError(str(e)) from None
        except (OSError, ValueError) as e:
            raise UserError(f"cannot load {folder}: {e}") from None
    model.to(device=device, dtype=getattr(torch, dtype))
    model.eval()
    model.config.use_cache = True
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def save_for_generation(out: str | os.PathLike[str], tokenizer: PreTrainedTokenizerBase, model: Any) -> None:
    """Save the tokenizer and a generation config that stop at the end-of-turn token.

    The tokenizer's eos becomes the end-of-turn token (``<|im_end|>`` for ChatML models); the
    generation config's ``eos_token_id`` lists it first, followed by the model's other eos ids.
    """
    from transformers import GenerationConfig

    from .data import end_of_turn_token

    eot = end_of_turn_token(tokenizer)
    eot_id = tokenizer.convert_tokens_to_ids(eot)
    tokenizer.eos_token = eot
    tokenizer.padding_side = "left"  # the folder is saved for generation
    tokenizer.init_kwargs["padding_side"] = "left"  # what save_pretrained writes (the attribute alone is not saved)
    tokenizer.save_pretrained(out)
    base = getattr(model, "generation_config", None) or GenerationConfig()
    gen = GenerationConfig.from_dict(base.to_dict())
    old = gen.eos_token_id
    others = [old] if isinstance(old, int) else list(old or [])
    gen.eos_token_id = [eot_id] + [i for i in others if i != eot_id]
    if gen.pad_token_id is None and tokenizer.pad_token_id is not None:
        gen.pad_token_id = tokenizer.pad_token_id
    gen.save_pretrained(out)
    make_portable(out)  # transformers 4.5x reads the folder as 5.x does (datagen/llm/portable.py)
