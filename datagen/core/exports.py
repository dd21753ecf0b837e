"""Exports for trainers: TRL's prompt/completion rows, and LLaMA-Factory's ``dataset_info.json``.

The record formats themselves (alpaca, sharegpt, messages) are :mod:`datagen.core.formats`; this
module adds what other training tools need around them.

* **TRL prompt-completion** (``--to prompt-completion``): the conversational shape,
  ``{"prompt": [every message before the final answer], "completion": [the final answer]}``, which
  TRL's ``SFTTrainer`` renders with the model's chat template and trains on the completion only.
  ``--to prompt-completion-text`` is the plain-string shape ``{"prompt": str, "completion": str}``
  (no template applied): it holds one question and its answer, so a record with a system message
  or several turns is refused rather than flattened.
* **LLaMA-Factory** reads a file through an entry of ``dataset_info.json`` in the same folder: the
  format, and the columns it should read. It reads ``system`` and ``history`` only when the entry
  declares them, so :func:`llamafactory_entry` declares every column the export holds. It joins an
  Alpaca ``instruction`` and ``input`` with one newline where the record (and ``train``) has a
  blank line; :func:`alpaca_merged` writes the record's own prompt into ``instruction`` instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from datagen.core.errors import FieldError, UserError
from datagen.core.formats import SHAREGPT_OUT, to_alpaca
from datagen.core.record import Record

PROMPT_COMPLETION = "prompt-completion"
PROMPT_COMPLETION_TEXT = "prompt-completion-text"
TRAINER_FORMATS = (PROMPT_COMPLETION, PROMPT_COMPLETION_TEXT)
DATASET_INFO = "dataset_info.json"


def _answer_last(rec: Record) -> None:
    if rec.messages[-1].role != "assistant":
        raise FieldError("messages", "the conversation does not end with an assistant turn: a prompt-completion row needs the "
                         "answer last (pass --allow-no-answer only for other formats)", "no_final_answer")


def _extra_first(rec: Record, row: dict[str, Any]) -> dict[str, Any]:
    """Fields the input format did not define, then ``row`` (its keys win)."""
    return {**(rec.meta.get("extra") or {}), **row}


def to_prompt_completion(rec: Record) -> dict[str, Any]:
    """TRL's conversational prompt-completion row: every message before the final answer, and the
    final answer, each a list of ``{role, content}``."""
    _answer_last(rec)
    msgs = [m.model_dump() for m in rec.messages]
    return _extra_first(rec, {"prompt": msgs[:-1], "completion": msgs[-1:]})


def to_prompt_completion_text(rec: Record) -> dict[str, Any]:
    """TRL's plain prompt-completion row, for a single-turn record without a system message."""
    _answer_last(rec)
    if rec.messages[0].role == "system":
        raise FieldError("messages[0]", "has a system message, which the plain-string prompt-completion shape cannot hold; "
                         "use --to prompt-completion (conversational: the chat template renders it)", "not_single_turn")
    if len(rec.messages) != 2:
        raise FieldError("messages", f"has {len(rec.messages) // 2} user turns; the plain-string prompt-completion shape holds one "
                         "question and its answer: use --to prompt-completion (conversational)", "not_single_turn")
    return _extra_first(rec, {"prompt": rec.messages[0].content, "completion": rec.messages[1].content})


def alpaca_merged(rec: Record) -> dict[str, Any]:
    """An Alpaca row whose ``instruction`` is the record's last user turn as it is (instruction and
    input joined by a blank line) and whose ``input`` is empty: LLaMA-Factory then renders exactly
    the prompt ``train`` renders. Reading it back gives the same record."""
    row = to_alpaca(rec)
    if row.get("input"):
        row["instruction"], row["input"] = f"{row['instruction']}\n\n{row['input']}", ""
    return row


def export_row(rec: Record, fmt: str) -> dict[str, Any]:
    return {PROMPT_COMPLETION: to_prompt_completion, PROMPT_COMPLETION_TEXT: to_prompt_completion_text}[fmt](rec)


def check_export(fmt: str):
    """A check of each record read for ``fmt`` (None when every record can be written): a record the
    format cannot hold is refused while reading, with its file, line and field."""
    if fmt not in TRAINER_FORMATS:
        return None

    def check(rec: Record) -> None:
        export_row(rec, fmt)

    return check


# -- LLaMA-Factory -------------------------------------------------------------------------------
SHAREGPT_TAGS = {
    "role_tag": "from", "content_tag": "value",
    "user_tag": SHAREGPT_OUT["user"], "assistant_tag": SHAREGPT_OUT["assistant"], "system_tag": SHAREGPT_OUT["system"],
}


def llamafactory_entry(fmt: str, file_name: str, records: Iterable[Record]) -> dict[str, Any]:
    """The ``dataset_info.json`` entry for an ``alpaca`` or ``sharegpt`` export: every column the
    file holds is declared (LLaMA-Factory ignores an undeclared ``system`` or ``history``, and fails
    on a declared column that no row has)."""
    entry: dict[str, Any] = {"file_name": file_name, "formatting": fmt}
    if fmt == "sharegpt":  # a system prompt is the first turn, tagged "system"
        entry["columns"] = {"messages": "conversations"}
        entry["tags"] = dict(SHAREGPT_TAGS)
        return entry
    if fmt != "alpaca":
        raise ValueError(f"LLaMA-Factory reads alpaca or sharegpt, not {fmt}")
    has = {"response": False, "system": False, "history": False}
    for rec in records:
        has["response"] |= rec.has_answer
        has["system"] |= rec.system is not None
        has["history"] |= sum(m.role == "user" for m in rec.messages) > 1
    columns = {"prompt": "instruction", "query": "input"}
    columns.update({key: name for key, name in (("response", "output"), ("system", "system"), ("history", "history")) if has[key]})
    entry["columns"] = columns
    return entry


def dataset_name(out: Path, existing: dict[str, Any]) -> str:
    """The entry's name: the file's stem, or its whole name when another file holds the stem."""
    stem = out.name.split(".")[0] or out.name
    other = existing.get(stem)
    return stem if not isinstance(other, dict) or other.get("file_name") in (None, out.name) else out.name


def read_dataset_info(path: Path) -> dict[str, Any]:
    """An existing ``dataset_info.json`` (empty when there is none); a damaged one is refused
    before anything is written."""
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e}); fix or remove it, and export again") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a JSON object of dataset entries; fix or remove it, and export again")
    return doc


def write_dataset_info(out: Path, fmt: str, records: Iterable[Record]) -> tuple[Path, str]:
    """Add (or replace) the entry of ``out`` in the ``dataset_info.json`` beside it, keeping every
    other entry; atomic. Returns the file and the entry's name."""
    from datagen.core.writing import write_json

    path = out.parent / DATASET_INFO
    doc = read_dataset_info(path)
    name = dataset_name(out, doc)
    doc[name] = llamafactory_entry(fmt, out.name, records)
    write_json(path, doc)
    return path, name
