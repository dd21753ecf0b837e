"""Alpaca, ShareGPT, OpenAI-messages and Self-Instruct seed tasks, to and from :class:`Record`.

Conversion happens at the edges: readers turn any supported row into a Record, writers turn a
Record back into the format the user asked for. Every converter raises :class:`FieldError` naming
the exact field (``conversations[2].from``) so the reader can add the file and line.

Fields a format does not define are kept in ``meta["extra"]`` and written back on export, so a
round trip loses nothing. A field that looks like a misspelling of a known one is an error, since
silently keeping ``"instrution"`` would lose the instruction.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any, Callable

from datagen.core.errors import FieldError, field_path
from datagen.core.record import ROLES, Message, Record

FORMATS = ("record", "messages", "sharegpt", "alpaca", "seed")
EXPORT_FORMATS = ("record", "messages", "sharegpt", "alpaca")

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
                  # the assistant's name in dumps of other chat services (ShareGPT, Gemini): unambiguous
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "model": "assistant"}
SHAREGPT_OUT = {"user": "human", "assistant": "gpt", "system": "system"}
OPENAI_ROLES = {**{r: r for r in ROLES}, "developer": "system"}  # OpenAI's newer name for the system message

_KNOWN = {
    "alpaca": ("instruction", "input", "output", "system", "history"),
    "sharegpt": ("conversations", "system"),
    "messages": ("messages",),
    "seed": ("id", "name", "instruction", "instances", "is_classification"),
    "record": tuple(Record.model_fields),
}


# -- detection ---------------------------------------------------------------------------------
def detect_format(obj: Any) -> str | None:
    """Guess the format of one row from its keys; None if nothing fits."""
    if not isinstance(obj, dict):
        return None
    keys = set(obj)
    if "messages" in keys and keys & {"source", "scores", "flags", "parent_id"}:
        return "record"
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if "instances" in keys:
        return "seed"
    if "instruction" in keys:
        return "alpaca"
    return None


def misspelt_field(obj: Any) -> tuple[str, str] | None:
    """(field, known field it resembles) for a row whose format could not be detected."""
    if not isinstance(obj, dict):
        return None
    known = sorted({k for ks in _KNOWN.values() for k in ks})
    for k in obj:
        close = difflib.get_close_matches(k, known, n=1, cutoff=0.75)
        if close and close[0] != k:
            return k, close[0]
    return None


def describe_formats() -> str:
    return (
        "alpaca {instruction, input, output}, sharegpt {conversations: [{from, value}]}, "
        "messages {messages: [{role, content}]}, seed {instruction, instances, is_classification}, "
        "record (this tool's own output)"
    )


# -- helpers -----------------------------------------------------------------------------------
def _type_name(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(v), type(v).__name__
    )


@functools.lru_cache(maxsize=4096)
def _closest(key: str, known: tuple[str, ...], cutoff: float) -> str | None:
    """The known field ``key`` looks like a misspelling of (remembered: the same extra fields
    come back on every row of a file)."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=cutoff)
    return close[0] if close else None


def _check_keys(obj: dict[str, Any], fmt: str, required: tuple[str, ...], known: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Reject misspelt fields and missing required ones; return the unknown fields to keep.
    ``known``: the format's fields (default: those of :data:`_KNOWN`)."""
    known = known or _KNOWN[fmt]
    extra = {k: v for k, v in obj.items() if k not in known}
    for k in extra:
        close = _closest(k, known, 0.75)
        if close and close not in obj:
            raise FieldError(k, f"unknown field (did you mean '{close}'?)", "unknown_field")
    for k in required:
        if k not in obj:
            raise FieldError(k, f"missing required field for {fmt} format", "missing_field")
    return extra


def _str(obj: dict[str, Any], key: str, where: str, required: bool = True) -> str | None:
    if key not in obj or obj[key] is None:
        if required:
            raise FieldError(where, "missing required field", "missing_field")
        return None
    v = obj[key]
    if not isinstance(v, str):
        raise FieldError(where, f"expected a string, got {_type_name(v)}", "wrong_type")
    return v


def _text_content(v: Any, where: str) -> str:
    """OpenAI content: a string, or a list of {type: text, text} parts."""
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        parts = []
        for i, p in enumerate(v):
            if not (isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)):
                raise FieldError(f"{where}[{i}]", "only text content parts are supported")
            parts.append(p["text"])
        return "".join(parts)
    raise FieldError(where, f"expected a string, got {_type_name(v)}")


def check_conversation(messages: list[Message], where: str, require_answer: bool) -> None:
    """Turns alternate user/assistant after an optional leading system message."""
    start = 1 if messages and messages[0].role == "system" else 0
    if start == len(messages):
        raise FieldError(where, "conversation has no user or assistant turn")
    expected = "user"
    for i in range(start, len(messages)):
        role = messages[i].role
        if role == "system":
            raise FieldError(f"{where}[{i}]", "a system message may only come first")
        if role != expected:
            raise FieldError(f"{where}[{i}]", f"expected a '{expected}' turn here (turns must alternate user/assistant), got '{role}'")
        expected = "assistant" if role == "user" else "user"
    if require_answer and not any(m.role == "assistant" for m in messages):
        raise FieldError(where, "conversation has no assistant turn", "no_assistant_turn")


def _with_extra(rec_fields: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    if extra:
        rec_fields.setdefault("meta", {})["extra"] = extra
    return rec_fields


# -- readers: row -> Record --------------------------------------------------------------------
def from_alpaca(obj: dict[str, Any], require_answer: bool = True) -> Record:
    extra = _check_keys(obj, "alpaca", ("instruction", "output") if require_answer else ("instruction",))
    instruction = _str(obj, "instruction", "instruction")
    inp = _str(obj, "input", "input", required=False) or ""
    output = _str(obj, "output", "output", required=require_answer)
    system = _str(obj, "system", "system", required=False)
    msgs: list[Message] = []
    if system:
        msgs.append(Message(role="system", content=system))
    history = obj.get("history") or []
    if not isinstance(history, list):
        raise FieldError("history", f"expected an array of [instruction, response] pairs, got {_type_name(history)}")
    for i, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise FieldError(f"history[{i}]", "expected a pair [instruction, response] of strings")
        msgs += [Message(role="user", content=pair[0]), Message(role="assistant", content=pair[1])]
    user = f"{instruction}\n\n{inp}" if inp else instruction
    msgs.append(Message(role="user", content=user))
    if output is not None:
        msgs.append(Message(role="assistant", content=output))
    meta = {"fields": {"instruction": instruction, "input": inp}}
    return Record(**_with_extra({"messages": msgs, "meta": meta}, extra))


# Tool calls and their results have no place in the record schema (text turns only): such a
# conversation is refused whole, never read with its calls dropped.
TOOL_KEYS = ("tool_calls", "function_call", "tool_call_id")
TOOL_ROLES = ("tool", "function", "ipython", "observation", "function_call")
TOOL_REFUSAL = ("the conversation calls tools: records hold text turns only (system, user, assistant), so a tool call or "
                "a tool's result cannot be kept; --on-error skip sends such rows to the rejects as tool_calls")


def _parse_turns(turns: Any, where: str, role_key: str, text_key: str, role_map: dict[str, str]) -> list[Message]:
    if not isinstance(turns, list):
        raise FieldError(where, f"expected an array of turns, got {_type_name(turns)}")
    if not turns:
        raise FieldError(where, "conversation is empty")
    msgs = []
    for i, t in enumerate(turns):
        w = f"{where}[{i}]"
        if not isinstance(t, dict):
            raise FieldError(w, f"expected an object, got {_type_name(t)}")
        for k in t:
            if k in TOOL_KEYS:
                raise FieldError(f"{w}.{k}", TOOL_REFUSAL, "tool_calls")
            if k not in (role_key, text_key, "name", "weight", "loss"):
                close = _closest(k, (role_key, text_key), 0.6)
                if close and close not in t:
                    raise FieldError(f"{w}.{k}", f"unknown field (did you mean '{close}'?)")
        role = _str(t, role_key, f"{w}.{role_key}")
        if role not in role_map:
            if role in TOOL_ROLES:
                raise FieldError(f"{w}.{role_key}", f"role '{role}' is a tool's result; {TOOL_REFUSAL}", "tool_calls")
            raise FieldError(f"{w}.{role_key}", f"unknown role '{role}' (expected one of {', '.join(role_map)}); "
                             f"--roles {role}=assistant maps it", "unknown_role")
        if text_key not in t:
            raise FieldError(f"{w}.{text_key}", "missing required field")
        msgs.append(Message(role=role_map[role], content=_text_content(t[text_key], f"{w}.{text_key}")))
    return msgs


def from_sharegpt(obj: dict[str, Any], require_answer: bool = True) -> Record:
    extra = _check_keys(obj, "sharegpt", ("conversations",))
    msgs = _parse_turns(obj["conversations"], "conversations", "from", "value", SHAREGPT_ROLES)
    system = _str(obj, "system", "system", required=False)
    if system and msgs[0].role != "system":
        msgs.insert(0, Message(role="system", content=system))
    check_conversation(msgs, "conversations", require_answer)
    return Record(**_with_extra({"messages": msgs}, extra))


def from_messages(obj: dict[str, Any], require_answer: bool = True) -> Record:
    extra = _check_keys(obj, "messages", ("messages",))
    msgs = _parse_turns(obj["messages"], "messages", "role", "content", OPENAI_ROLES)
    check_conversation(msgs, "messages", require_answer)
    return Record(**_with_extra({"messages": msgs}, extra))


def from_seed(obj: dict[str, Any], require_answer: bool = True) -> Record:
    task = parse_seed_task(obj)
    inst = task["instances"][0]
    user = f"{task['instruction']}\n\n{inst['input']}" if inst["input"] else task["instruction"]
    return Record.from_turns(
        user,
        inst["output"],
        source="seed",
        meta={"seed": task, "fields": {"instruction": task["instruction"], "input": inst["input"]}},
    )


def parse_seed_task(obj: dict[str, Any]) -> dict[str, Any]:
    """Validate a Self-Instruct seed task; returns a normalized dict."""
    _check_keys(obj, "seed", ("instruction", "instances"))
    instruction = _str(obj, "instruction", "instruction")
    if not instruction.strip():
        raise FieldError("instruction", "is empty")
    instances = obj["instances"]
    if not isinstance(instances, list) or not instances:
        raise FieldError("instances", "expected a non-empty array of {input, output}")
    norm = []
    for i, inst in enumerate(instances):
        w = f"instances[{i}]"
        if not isinstance(inst, dict):
            raise FieldError(w, f"expected an object, got {_type_name(inst)}")
        for k in inst:
            if k not in ("input", "output"):
                raise FieldError(f"{w}.{k}", "unknown field (expected 'input' and 'output')")
        norm.append({"input": _str(inst, "input", f"{w}.input", required=False) or "", "output": _str(inst, "output", f"{w}.output")})
    is_cls = obj.get("is_classification", False)
    if not isinstance(is_cls, bool):
        raise FieldError("is_classification", f"expected true or false, got {_type_name(is_cls)}")
    tid = obj.get("id")
    if tid is not None and not isinstance(tid, (str, int)):
        raise FieldError("id", f"expected a string, got {_type_name(tid)}")
    name = _str(obj, "name", "name", required=False)
    return {"id": str(tid) if tid is not None else None, "name": name, "instruction": instruction, "instances": norm, "is_classification": is_cls}


def from_record(obj: dict[str, Any], require_answer: bool = True) -> Record:
    from pydantic import ValidationError

    _check_keys(obj, "record", ("messages",))
    try:
        rec = Record.model_validate(obj)
    except ValidationError as e:
        raise validation_field_error(e, "record") from None
    check_conversation(rec.messages, "messages", require_answer)
    return rec


READERS: dict[str, Callable[..., Record]] = {
    "record": from_record,
    "messages": from_messages,
    "sharegpt": from_sharegpt,
    "alpaca": from_alpaca,
    "seed": from_seed,
}


def to_record(obj: Any, fmt: str, require_answer: bool = True) -> Record:
    from pydantic import ValidationError

    if not isinstance(obj, dict):
        raise FieldError("-", f"expected a JSON object, got {_type_name(obj)}")
    try:
        return READERS[fmt](obj, require_answer=require_answer)
    except ValidationError as e:  # what the converters' own checks let through
        raise validation_field_error(e, fmt) from None


def validation_field_error(e: Any, where: str) -> FieldError:
    """A pydantic ValidationError as a FieldError naming the first bad field."""
    err = e.errors()[0]
    field = field_path(err["loc"])
    if err["type"] == "literal_error":
        return FieldError(field, f"unknown role {err.get('input')!r} (expected one of {', '.join(ROLES)})", "unknown_role")
    return FieldError(field or where, err["msg"])


# -- writers: Record -> row --------------------------------------------------------------------
def _extra(rec: Record) -> dict[str, Any]:
    return dict(rec.meta.get("extra") or {})


def to_alpaca(rec: Record) -> dict[str, Any]:
    msgs = list(rec.messages)
    out: dict[str, Any] = {}
    if msgs[0].role == "system":
        out["system"] = msgs.pop(0).content
    output = msgs.pop().content if msgs[-1].role == "assistant" else None  # prompt-only record
    user = msgs.pop().content
    fields = rec.meta.get("fields") or {}
    instr, inp = fields.get("instruction"), fields.get("input", "")
    if instr is None or (f"{instr}\n\n{inp}" if inp else instr) != user:
        instr, inp = user, ""
    history = [[msgs[i].content, msgs[i + 1].content] for i in range(0, len(msgs), 2)]
    row: dict[str, Any] = {"instruction": instr, "input": inp}
    if output is not None:
        row["output"] = output
    if history:
        row["history"] = history
    row.update(out)
    row.update(_extra(rec))
    return row


def to_sharegpt(rec: Record) -> dict[str, Any]:
    row: dict[str, Any] = {"conversations": [{"from": SHAREGPT_OUT[m.role], "value": m.content} for m in rec.messages]}
    row.update(_extra(rec))
    return row


def to_messages(rec: Record) -> dict[str, Any]:
    row: dict[str, Any] = {"messages": [m.model_dump() for m in rec.messages]}
    row.update(_extra(rec))
    return row


def to_seed(rec: Record) -> dict[str, Any]:
    seed = rec.meta.get("seed")
    if seed:
        return {k: v for k, v in seed.items() if v is not None}
    fields = rec.meta.get("fields") or {}
    instruction = fields.get("instruction") or rec.instruction
    return {
        "id": rec.id,
        "name": rec.id,
        "instruction": instruction,
        "instances": [{"input": fields.get("input", ""), "output": rec.response}],
        "is_classification": bool(rec.meta.get("is_classification", False)),
    }


def to_row(rec: Record, fmt: str) -> dict[str, Any]:
    if fmt == "record":
        return rec.model_dump(mode="json")
    return {"alpaca": to_alpaca, "sharegpt": to_sharegpt, "messages": to_messages, "seed": to_seed}[fmt](rec)
