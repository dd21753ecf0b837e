"""Make a model folder saved under transformers 5 load the same under transformers 4.5x.

A folder that ``save_pretrained`` writes under transformers 5 (tf5) loads under transformers 4.57
(tf4) either not at all or, worse, silently wrong. :func:`make_portable` rewrites its
``config.json`` and ``tokenizer_config.json`` in place so that both lines load it with the same
behaviour: the same logits, token ids, chat-template text, eos/pad ids and RoPE settings. It only
*adds* the keys tf4 reads (and replaces two values tf4 cannot parse with ones both lines read the
same way); the tf5 keys stay, so tf5 still loads the folder exactly as before. Running it twice
changes nothing the second time.

What differs, and the fix for each:

``config.json``

* RoPE. tf5 writes one ``rope_parameters`` dict (``{"rope_type": ..., "rope_theta": ..., <scaling
  keys>}``); for models whose layers use different RoPE (``gemma3_text``) it is keyed by layer type:
  ``{"full_attention": {...}, "sliding_attention": {...}}``. tf4 knows no ``rope_parameters``: it
  reads ``rope_theta``, ``rope_scaling`` (the scaling keys, ``None`` for plain RoPE),
  ``partial_rotary_factor`` and, for Gemma 3, ``rope_local_base_freq`` (the theta of the sliding
  layers, whose RoPE is always plain), and falls back to its defaults when they are missing
  (``rope_theta`` 10000 for Llama, 1e6 / 1e4 for Gemma 3; no scaling), so a tuned or a long-context
  theta is lost without a word. Fix: derive the legacy keys from ``rope_parameters`` and write them
  beside it, overwriting stale ones. tf5 reads them too (``rope_scaling`` even takes precedence over
  ``rope_parameters`` there), which is why they must agree with ``rope_parameters`` exactly.
  ``rope_scaling`` leaves out ``rope_theta`` and ``partial_rotary_factor``, which tf4 reads only
  at the top level and tf5 fills back in from there. A per-layer-type RoPE that tf4 cannot express
  (a scaled RoPE on the sliding layers) is reported in the returned list, prefixed ``WARNING``.
* dtype. tf5 writes ``dtype``; tf4 before 4.56 reads only ``torch_dtype``. Fix: add
  ``torch_dtype`` with the same value (tf5 reads it as a fallback for ``dtype``, without a
  warning; 4.57 reads either).
* Nested configs (``text_config``, ``vision_config`` of a multimodal model) get the same treatment.

``tokenizer_config.json``

* ``tokenizer_class``. A tokenizer built from a ``tokenizer.json`` alone is saved as
  ``"TokenizersBackend"``, a class tf4 does not have, so ``AutoTokenizer`` fails outright. Fix:
  ``"PreTrainedTokenizerFast"``: in tf4 the generic wrapper of ``tokenizer.json``; in tf5 a name
  AutoTokenizer resolves to ``TokenizersBackend`` again. Both then take the vocabulary, the
  normalizer, pre-tokenizer, post-processor (bos/eos insertion) and the added tokens with their
  special flags from ``tokenizer.json`` unchanged. Model-specific names that tf5 writes without the
  ``Fast`` suffix (``GemmaTokenizer``, ``GPT2Tokenizer``, ...) are left alone: tf4 knows them and
  loads their ``...Fast`` variant from the same ``tokenizer.json``.
* Extra special tokens. tf5 saves them as a *list* under ``extra_special_tokens``; tf4 reads that
  key as a dict of named tokens (``{"image_token": "<image>"}``), and its fast tokenizer's
  ``__init__`` fails on a list (``'list' object has no attribute 'keys'``, which 4.57 then reports
  as a missing protobuf library). Fix: move the list to ``additional_special_tokens``
  (the tf4 name, which tf5 converts back to ``extra_special_tokens`` on load). A dict stays.
* Chat template. tf5 saves it as ``chat_template.jinja`` (and ``additional_chat_templates/``).
  4.57 reads those files too and prefers them over a ``chat_template`` in
  ``tokenizer_config.json``, so nothing is needed and nothing is changed (copying the template into
  ``tokenizer_config.json`` would only leave a second copy to go stale).
* ``added_tokens_decoder``, which tf5 no longer writes, is not needed: tf4's fast tokenizer reads
  the added tokens and their special flags from ``tokenizer.json``.

Each file is rewritten atomically (a temporary file in the folder, then ``os.replace``), so a
crash leaves either the old file or the new one.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: tokenizer classes that exist only in tf5, and the tf4 class that behaves the same.
TF5_ONLY_TOKENIZER_CLASSES = {"TokenizersBackend": "PreTrainedTokenizerFast"}

#: model types whose tf5 ``rope_parameters`` are keyed by layer type, and the tf4 key that holds
#: the theta of each layer type (``rope_theta`` layers also take ``rope_scaling``; the others are
#: plain RoPE in tf4).
LAYERED_ROPE = {
    "gemma3_text": {"full_attention": "rope_theta", "sliding_attention": "rope_local_base_freq"},
    "gemma3n_text": {"full_attention": "rope_theta", "sliding_attention": "rope_local_base_freq"},
}

#: rope_parameters keys that tf4 reads at the top level of the config, not in ``rope_scaling``.
TOP_LEVEL_ROPE_KEYS = ("rope_theta", "partial_rotary_factor")

NESTED_CONFIGS = ("text_config", "vision_config", "audio_config")


def make_portable(folder: str | os.PathLike[str]) -> list[str]:
    """Rewrite a saved model folder so that transformers 4.57 and 5.x load it the same.

    Edits ``config.json`` and ``tokenizer_config.json`` (whichever exist) in place. Returns the
    changes made, one human-readable line each (empty when the folder was already portable).
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    changes: list[str] = []
    config_path = root / "config.json"
    if config_path.is_file():
        config = _read_json(config_path)
        new = copy.deepcopy(config)
        notes = _portable_config(new, "config.json")
        if new != config:
            _write_json(config_path, new, sort_keys=True)
        changes += notes
    tok_path = root / "tokenizer_config.json"
    if tok_path.is_file():
        tok = _read_json(tok_path)
        new = copy.deepcopy(tok)
        notes = _portable_tokenizer_config(new, root)
        if new != tok:
            _write_json(tok_path, new, sort_keys=False)
        changes += notes
    for line in changes:
        (log.warning if line.startswith("WARNING") else log.info)("make_portable %s: %s", root, line)
    return changes


# -- config.json ---------------------------------------------------------------------------------
def _portable_config(cfg: dict[str, Any], where: str) -> list[str]:
    changes: list[str] = []
    for key in NESTED_CONFIGS:
        if isinstance(cfg.get(key), dict):
            changes += _portable_config(cfg[key], f"{where}:{key}")
    rope = cfg.get("rope_parameters")
    if isinstance(rope, dict) and rope:
        for key, value in _legacy_rope(cfg.get("model_type"), rope, changes, where).items():
            _set(cfg, key, value, changes, where)
    if cfg.get("dtype") is not None and cfg.get("torch_dtype") != cfg["dtype"]:
        _set(cfg, "torch_dtype", cfg["dtype"], changes, where)
    return changes


def _legacy_rope(model_type: str | None, rope: dict[str, Any], changes: list[str], where: str) -> dict[str, Any]:
    """The tf4 keys (``rope_theta``, ``rope_scaling``, ...) that say what ``rope_parameters`` says."""
    nested = {k: v for k, v in rope.items() if isinstance(v, dict)}
    if not nested:
        return _flat_rope(rope)
    layout = LAYERED_ROPE.get(model_type or "")
    if layout is None:
        # An unknown model with per-layer-type RoPE: portable only when all layer types agree.
        distinct = {json.dumps(v, sort_keys=True) for v in nested.values()}
        if len(distinct) == 1:
            return _flat_rope(next(iter(nested.values())))
        changes.append(f"WARNING {where}: rope_parameters differ by layer type ({', '.join(nested)}) and "
                       f"transformers 4.x has no per-layer RoPE for model_type {model_type!r}; left as is")
        return {}
    out: dict[str, Any] = {}
    for layer_type, params in nested.items():
        key = layout.get(layer_type)
        if key is None:
            changes.append(f"WARNING {where}: rope_parameters[{layer_type!r}] has no transformers 4.x equivalent")
        elif key == "rope_theta":
            out.update(_flat_rope(params))
        else:
            if "rope_theta" in params:
                out[key] = params["rope_theta"]
            if _scaling(params) is not None:
                changes.append(f"WARNING {where}: rope_parameters[{layer_type!r}] is {params['rope_type']!r} RoPE; "
                               f"transformers 4.x uses plain RoPE with {key} there")
    return out


def _flat_rope(params: dict[str, Any]) -> dict[str, Any]:
    out = {k: params[k] for k in TOP_LEVEL_ROPE_KEYS if k in params}
    out["rope_scaling"] = _scaling(params)
    return out


def _scaling(params: dict[str, Any]) -> dict[str, Any] | None:
    """``rope_scaling`` as tf4 wants it: None for plain RoPE, else the scaling keys."""
    rest = {k: v for k, v in params.items() if k not in TOP_LEVEL_ROPE_KEYS}
    kind = rest.get("rope_type", rest.get("type", "default"))
    if kind == "default" and set(rest) <= {"rope_type", "type"}:
        return None
    return rest


# -- tokenizer_config.json -----------------------------------------------------------------------
def _portable_tokenizer_config(tok: dict[str, Any], root: Path) -> list[str]:
    changes: list[str] = []
    where = "tokenizer_config.json"
    cls = tok.get("tokenizer_class")
    if cls in TF5_ONLY_TOKENIZER_CLASSES:
        if not (root / "tokenizer.json").is_file():
            changes.append(f"WARNING {where}: tokenizer_class {cls!r} but no tokenizer.json; left as is")
        else:
            _set(tok, "tokenizer_class", TF5_ONLY_TOKENIZER_CLASSES[cls], changes, where)
    extra = tok.get("extra_special_tokens")
    if isinstance(extra, list):
        merged = list(tok.get("additional_special_tokens") or [])
        merged += [t for t in extra if t not in merged]
        tok["additional_special_tokens"] = merged
        del tok["extra_special_tokens"]
        changes.append(f"{where}: extra_special_tokens (a list, which transformers 4.x reads as a dict) "
                       f"moved to additional_special_tokens: {merged}")
    return changes


# -- helpers -------------------------------------------------------------------------------------
def _set(d: dict[str, Any], key: str, value: Any, changes: list[str], where: str) -> None:
    if key in d and d[key] == value:
        return
    old = f"{d[key]!r} -> " if key in d else ""
    d[key] = value
    changes.append(f"{where}: {key} = {old}{value!r}")


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def _write_json(path: Path, data: dict[str, Any], sort_keys: bool) -> None:
    text = json.dumps(data, indent=2, sort_keys=sort_keys, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, os.stat(path).st_mode & 0o777)
        except OSError:
            pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
