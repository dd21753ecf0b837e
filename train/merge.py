"""``train merge``: fold a LoRA/DoRA adapter into its base and save a plain model folder.

The base is loaded in fp32, the adapter merged (``merge_and_unload``), and the result cast once to
the output dtype (bf16 by default; fp16 or fp32 on request): merging in 16 bits would round each
updated weight twice. The folder holds safetensors weights, the tokenizer and the generation config
from the adapter folder (which stop at the end-of-turn token), and loads with a plain
``AutoModelForCausalLM.from_pretrained``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from datagen.core.errors import UserError

from .model import is_adapter_dir, load_merged, save_for_generation

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def merge(adapter: str, out: str, dtype: str = "bf16", base: str | None = None, force: bool = False) -> Path:
    """Merge the adapter in ``adapter`` into its base; save to ``out``. Returns ``out``."""
    src, dst = Path(adapter), Path(out)
    if not is_adapter_dir(src):
        raise UserError(f"--adapter {src}: not an adapter folder (no adapter_config.json); a full fine-tune needs no merge")
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    if dst.exists() and any(dst.iterdir()) and not force:
        raise UserError(f"--out {dst}: exists and is not empty; pass --force to replace it")
    if dst.resolve() == src.resolve():
        raise UserError("--out must differ from --adapter")
    model, tokenizer = load_merged(src, dtype=DTYPES[dtype], base=base)
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    save_for_generation(tmp, tokenizer, model)
    if dst.exists():
        shutil.rmtree(dst)
    tmp.rename(dst)
    return dst


def cli(args: argparse.Namespace) -> int:
    dst = merge(args.adapter, args.out, dtype=args.dtype, base=args.base, force=args.force)
    print(f"merged model written to {dst}")
    return 0
