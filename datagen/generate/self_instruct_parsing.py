"""What Self-Instruct reads: its seed tasks, and the model's completions (numbered task lists,
instances in either field order, Alpaca's ``###``-separated blocks, yes/no answers), parsed
leniently (markdown bold, CJK labels and punctuation, fields run together on one line) and
cleaned (:func:`clean_instances`: the reasons an instance is dropped)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

from datagen.core.text import normalize_space
from datagen.llm.structured import field_of, one_field_schema

_NO_INPUT = {"", "none", "<none>", "(none)", "<noinput>", "<no input>", "no input", "n/a", "na", "null", "-", "empty", "无"}


# -- seeds -------------------------------------------------------------------------------------
def load_seed_tasks(path: str | os.PathLike[str], limit: int | None = None) -> list[dict[str, Any]]:
    """Read Self-Instruct seed tasks (JSONL, a JSON array or Parquet). Any problem raises an
    :class:`~datagen.core.errors.InputError` naming the file, the line and the field."""
    from datagen.core.errors import FieldError, InputError
    from datagen.core.formats import parse_seed_task
    from datagen.core.io import open_rows, row_error

    p = Path(path)
    kind, rows = open_rows(p)  # a missing, unreadable or directory path is refused there
    tasks: list[dict[str, Any]] = []
    first_line: dict[str, str] = {}
    for lineno, item, obj in rows:
        if limit is not None and len(tasks) >= limit:
            break
        if not isinstance(obj, dict):
            raise row_error(p, kind, lineno, item, None, "expected a seed task object {id, name, instruction, instances, is_classification}")
        try:
            task = parse_seed_task(obj)
        except FieldError as e:
            raise row_error(p, kind, lineno, item, e.field, e.message) from None
        task["id"] = task["id"] or f"seed-{lineno}"
        if task["id"] in first_line:
            raise row_error(p, kind, lineno, item, "id", f"duplicate id {task['id']!r} (first used at {first_line[task['id']]})")
        first_line[task["id"]] = row_error(p, kind, lineno, item, None, "").location
        tasks.append(task)
    if not tasks:
        raise InputError(str(p), None, None, "no seed tasks in the file")
    return tasks


# -- parsing model output ----------------------------------------------------------------------
_BOLD = r"(?:\*\*|__)?"
_TASK_LINE = re.compile(rf"^\s*(?:[-*>#]+\s*)?{_BOLD}\s*(?:task|任务)\s*(\d+)\s*{_BOLD}\s*[:：.)\-–]\s*{_BOLD}\s*(.*)$", re.IGNORECASE)
_NUMBERED_LINE = re.compile(r"^\s*(\d+)\s*[.)、]\s+(.*)$")
# A "Task N:" marker in the middle of a line: the model put several tasks on one line.
_INLINE_TASK = re.compile(rf"(?<=\S)[ \t]+(?={_BOLD}(?:task|任务)\s*\d+\s*{_BOLD}\s*[:：])", re.IGNORECASE)


def _clean_task(text: str) -> str:
    t = normalize_space(text).strip("*").strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'":
        t = t[1:-1].strip()
    return t


def parse_tasks(text: str) -> list[str]:
    """The tasks of a ``Task N: ...`` list (markdown bullets and bold tolerated); a plain numbered
    list (``9. ...``) when no ``Task N`` line exists. A task runs until the next marker or a blank
    line, so closing remarks after the list are not glued to the last task."""
    lines = _INLINE_TASK.sub("\n", text).splitlines()
    pattern = _TASK_LINE if any(_TASK_LINE.match(x) for x in lines) else _NUMBERED_LINE
    tasks: list[list[str]] = []
    cur: list[str] | None = None
    for line in lines:
        m = pattern.match(line)
        if m:
            cur = [m.group(2)]
            tasks.append(cur)
        elif cur is not None:
            if line.strip():
                cur.append(line)
            elif any(x.strip() for x in cur):
                cur = None
    return [_clean_task(" ".join(parts)) for parts in tasks]


_EXAMPLE_LINE = re.compile(rf"^\s*(?:[-#>]+\s*)?{_BOLD}\s*example\s*\d*\s*{_BOLD}\s*[:：.]?\s*{_BOLD}\s*$", re.IGNORECASE)
_FIELD_LINE = re.compile(rf"^\s*(?:[-*>]\s+)?{_BOLD}\s*(input|output|class\s*label|label)\s*{_BOLD}\s*[:：]\s*{_BOLD}\s*(.*)$", re.IGNORECASE)
_NEXT_TASK_LINE = re.compile(r"^\s*task\s*:", re.IGNORECASE)
_INLINE_FIELD = re.compile(r"(?<=\S)[ \t]+(?=(?:example\s*\d+\b|input\s*:|output\s*:|class\s*label\s*:|task\s*:))", re.IGNORECASE)


def _no_input(text: str) -> str:
    return "" if text.strip().strip("\"'").casefold() in _NO_INPUT else text


def parse_instances(text: str, output_first: bool) -> list[dict[str, str]]:
    """Instances ``{input, output}`` from an instance completion.

    Input-first: ``Input: ...`` / ``Output: ...`` pairs, optionally under ``Example N`` headings;
    a completion with no field at all is one instance whose output is the whole text (a task
    that needs no input). Output-first: ``Class label: ...`` / ``Input: ...`` pairs, in either
    order. Values may span lines. Text before the first field is ignored, and so is everything
    from a ``Task:`` line on (the model starting a new few-shot task). Markers in the middle of
    a line start a new line (models that write ``Input: x Output: y`` on one line).
    """
    text = _INLINE_FIELD.sub("\n", text)
    events: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if _NEXT_TASK_LINE.match(line):
            if events:
                break
            continue
        if _EXAMPLE_LINE.match(line):
            events.append(("sep", []))
            continue
        m = _FIELD_LINE.match(line)
        if m:
            name = m.group(1).lower()
            kind = "input" if name == "input" else "output" if name == "output" else "label"
            events.append((kind, [m.group(2)]))
        elif events and events[-1][0] != "sep":
            events[-1][1].append(line)
    if not any(k != "sep" for k, _ in events):
        body = text.strip()
        return [{"input": "", "output": body}] if body and not output_first else []
    out_key = "label" if output_first else "output"
    instances: list[dict[str, str]] = []
    cur: dict[str, str] = {}

    def flush() -> None:
        nonlocal cur
        if cur:
            instances.append({"input": _no_input(cur.get("input", "").strip()), "output": cur.get(out_key, "").strip()})
        cur = {}

    for kind, lines in events:
        value = "\n".join(lines).strip()
        if kind == "sep":
            flush()
            continue
        if output_first and kind == "output":
            kind = "label"  # "Output:" in a classification answer is the label
        if kind in cur:
            flush()
        cur[kind] = value
    flush()
    return instances


# A field marker: "N. Instruction:" anywhere, or "Instruction:" at the start of a line.
_ALPACA_FIELD = re.compile(r"(?:\b\d+\s*[.)]\s*|^[ \t]*)(instruction|input|output)\s*:", re.IGNORECASE | re.MULTILINE)


def parse_alpaca_tasks(text: str) -> list[dict[str, str] | str]:
    """Blocks of an Alpaca-style completion, separated by ``###``: each a dict
    ``{instruction, input, output}``, or the raw block text when it lacks an instruction or
    an output. ``<noinput>`` (and the like) is an empty input."""
    out: list[dict[str, str] | str] = []
    for block in re.split(r"#{3,}", text):
        if not block.strip():
            continue
        parts = _ALPACA_FIELD.split(block)  # [before, name, value, name, value, ...]
        fields: dict[str, str] = {}
        for name, value in zip(parts[1::2], parts[2::2]):
            fields.setdefault(name.lower(), value.strip())
        if "instruction" not in fields or "output" not in fields:
            out.append(block.strip())
            continue
        out.append({
            "instruction": _clean_task(fields["instruction"]),
            "input": _no_input(fields.get("input", "")),
            "output": fields["output"],
        })
    return out


_YES_NO = re.compile(r"\b(yes|no|true|false)\b|(不是|否|是)", re.IGNORECASE)


CLASSIFY_SCHEMA = one_field_schema("answer", enum=("yes", "no"))


def parse_yes_no(text: str) -> bool | None:
    """A structured reply's ``answer``, else the first yes/no in the text; None when there is none."""
    structured = field_of(text, "answer")
    if structured in ("yes", "no"):
        return structured == "yes"
    m = _YES_NO.search(text)
    if not m:
        return None
    word = (m.group(1) or m.group(2)).lower()
    return word in ("yes", "true", "是")


def clean_instances(instances: Sequence[dict[str, str]]) -> tuple[list[dict[str, str]], list[tuple[dict[str, str], str, dict[str, Any]]]]:
    """(kept, dropped as (instance, reason, evidence)). Drops empty outputs, outputs equal to
    their input, repeated instances, and every instance of an input that got different outputs."""

    def norm(s: str) -> str:
        return normalize_space(s).casefold()

    kept: list[dict[str, str]] = []
    dropped: list[tuple[dict[str, str], str, dict[str, Any]]] = []
    seen: set[tuple[str, str]] = set()
    for inst in instances:
        key = (norm(inst["input"]), norm(inst["output"]))
        if not key[1]:
            dropped.append((inst, "empty_output", {}))
        elif key[0] and key[0] == key[1]:
            dropped.append((inst, "input_equals_output", {}))
        elif key in seen:
            dropped.append((inst, "duplicate_instance", {}))
        else:
            seen.add(key)
            kept.append(inst)
    outputs: dict[str, list[str]] = {}
    for inst in kept:
        outputs.setdefault(norm(inst["input"]), []).append(inst["output"])
    final = []
    for inst in kept:
        outs = outputs[norm(inst["input"])]
        if len(outs) > 1:
            dropped.append((inst, "conflicting_outputs", {"outputs": outs}))
        else:
            final.append(inst)
    return final, dropped
