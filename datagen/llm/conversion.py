"""The embedded models' one-time conversion from GGUF to a safetensors folder
(:func:`datagen.llm.models.resolve_model`): the source fingerprint, the marker a finished
conversion leaves, the exclusive lock, and the temporary folder renamed into place."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from datagen.core.errors import LLMError
from datagen.llm.portable import make_portable

if TYPE_CHECKING:
    from datagen.llm.models import Embedded

log = logging.getLogger(__name__)

MARKER_FILE = "datagen_source.json"
# Bump when the conversion itself changes (special tokens, saved dtype...): forces a re-conversion.
CONVERTER_VERSION = 1


def file_fingerprint(gguf: Path) -> dict[str, Any]:
    """Identifies the GGUF by content, not by path or mtime: two virtual environments holding the
    same package version share one conversion instead of taking turns redoing it."""
    size = gguf.stat().st_size
    digest = hashlib.sha256()
    with open(gguf, "rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        digest.update(f.read(1 << 20))
    return {"gguf": gguf.name, "size": size, "sha256_head_tail": digest.hexdigest()[:16], "converter": CONVERTER_VERSION}


def marker(folder: Path) -> dict[str, Any] | None:
    """The source fingerprint a finished conversion left in ``folder``, or None."""
    try:
        data = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("source") if isinstance(data, dict) else None


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def remove_leftovers(target: Path) -> None:
    """Delete temporary folders of interrupted conversions. Only the lock holder calls this, so no
    live conversion owns them."""
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def convert_into_place(emb: "Embedded", target: Path, source: dict[str, Any]) -> None:
    log.warning("converting the embedded model %s to safetensors in %s (once, about a minute)", emb.name, target)
    tmp = _new_temp_dir(target)
    scratch = _new_temp_dir(target)  # an assembled GGUF lives here, and goes when converted
    try:
        _convert_gguf(emb, emb.gguf(scratch), tmp)
        (tmp / MARKER_FILE).write_text(json.dumps({"source": source}, indent=2) + "\n", encoding="utf-8")
        if target.exists():  # an outdated or half-written folder: move it aside, then swap
            old = _new_temp_dir(target)
            target.rename(old / "old")
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # only left over if something failed
        shutil.rmtree(scratch, ignore_errors=True)


def _new_temp_dir(target: Path) -> Path:
    """An empty folder beside ``target`` that :func:`remove_leftovers` recognises. Unlike
    ``tempfile.mkdtemp`` (mode 0700) it honours the umask, so a shared cache root stays shared."""
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
    tmp.mkdir()
    return tmp


def _convert_gguf(emb: "Embedded", gguf: Path, out_dir: Path) -> None:
    """Dequantize the GGUF model to an fp32 safetensors folder with correct special tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from datagen.llm.models import quiet_loading

    with quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    if emb.instruct and not tokenizer.chat_template:
        raise LLMError(f"{gguf} carries no chat template; the package may be damaged")
    # save_pretrained refuses a model that still has its GGUF quantizer. The weights are already
    # dequantized to fp32, so dropping it loses nothing.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer.model_max_length = model.config.max_position_embeddings
    if emb.end_of_turn is not None:
        end_of_turn = tokenizer.convert_tokens_to_ids(emb.end_of_turn)
        tokenizer.eos_token = emb.end_of_turn
        model.config.eos_token_id = end_of_turn
    if emb.pad is not None:
        tokenizer.pad_token = emb.pad
        model.config.pad_token_id = tokenizer.pad_token_id
    if emb.end_of_turn is not None:
        model.generation_config.eos_token_id = [model.config.eos_token_id, tokenizer.pad_token_id]
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    make_portable(out_dir)  # a base folder that transformers 4.5x reads as 5.x does, for peft users of our adapters
