"""The shapes of public SFT datasets, read as records, beside the formats of :mod:`datagen.core.formats`.

* ``dolly``: ``{instruction, context, response, category}`` (databricks-dolly-15k); ``context``
  joins the instruction as alpaca's ``input`` does, ``category`` is kept in ``meta.extra``.
* ``ultrachat``: ``{id, data: [user, assistant, user, ...]}``, alternating strings (UltraChat; LIMA's
  ``{conversations: [...], source}`` too).
* ``prompt-completion``: TRL's ``{prompt, completion}``, both strings or both lists of messages.
* ``prompt``: a prompt with no answer (Koala ``{prompt}``, Vicuna ``{question_id, text}``, MT-Bench
  ``{turns: [...]}``, the WizardLM test set ``{idx, Instruction}``, TRL's prompt-only
  ``{prompt: [messages]}``): a record without an assistant turn, which only ``distill`` (and
  ``evolve``, ``convert --allow-no-answer``) take; every other command refuses it by name.

:class:`RowMap` is ``--map src=dst,...`` (columns renamed before detection) and ``--roles
src=dst,...`` (turn roles renamed). :func:`explain` adds to a refusal the format the row was read
as and the fix (``--format X``, ``--map a=b``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from datagen.core import formats
from datagen.core.errors import FieldError, UserError
from datagen.core.formats import OPENAI_ROLES, _check_keys, _parse_turns, _str, _type_name, _with_extra, check_conversation
from datagen.core.record import Message, Record

SHAPES = ("dolly", "ultrachat", "prompt-completion", "prompt")
INPUT_FORMATS = formats.FORMATS + SHAPES

PROMPT_KEYS = ("prompt", "question", "instruction", "Instruction", "turns", "text")  # the first present is the prompt
ANSWER_KEYS = ("output", "response", "completion", "answer", "chosen", "target")
_KNOWN = {"dolly": ("instruction", "context", "response", "system"), "prompt-completion": ("prompt", "completion")}


# -- detection ---------------------------------------------------------------------------------
def detect(obj: Any) -> str | None:
    """The format of one row from its keys (None if nothing fits); the formats of
    :mod:`~datagen.core.formats` first, the public shapes between them where their keys overlap."""
    if not isinstance(obj, dict):
        return None
    if "instruction" in obj and "response" in obj and "output" not in obj and "instances" not in obj:
        return "dolly"
    turns = obj.get("conversations")
    if isinstance(turns, list) and turns and isinstance(turns[0], str):  # LIMA: ShareGPT's key, UltraChat's strings
        return "ultrachat"
    fmt = formats.detect_format(obj)
    if fmt is not None:
        return fmt
    if "prompt" in obj and "completion" in obj:
        return "prompt-completion"
    if isinstance(obj.get("data"), list):
        return "ultrachat"
    if any(k in obj for k in PROMPT_KEYS[:5]) or ("text" in obj and "question_id" in obj):
        return "prompt"
    return None


def describe() -> str:
    return (formats.describe_formats() + ", dolly {instruction, context, response}, ultrachat {data or conversations: [user, assistant, ...]}, "
            "prompt-completion {prompt, completion}, prompt (no answer: {prompt}, {question}, {turns}, {Instruction})")


# -- readers -----------------------------------------------------------------------------------
def from_dolly(obj: dict[str, Any], require_answer: bool = True) -> Record:
    extra = _check_keys(obj, "dolly", ("instruction", "response") if require_answer else ("instruction",), _KNOWN["dolly"])
    instruction = _str(obj, "instruction", "instruction")
    context = _str(obj, "context", "context", required=False) or ""
    response = _str(obj, "response", "response", required=require_answer)
    system = _str(obj, "system", "system", required=False)
    user = f"{instruction}\n\n{context}" if context else instruction
    msgs = ([Message(role="system", content=system)] if system else []) + [Message(role="user", content=user)]
    if response is not None:
        msgs.append(Message(role="assistant", content=response))
    return Record(**_with_extra({"messages": msgs, "meta": {"fields": {"instruction": instruction, "input": context}}}, extra))


def from_ultrachat(obj: dict[str, Any], require_answer: bool = True) -> Record:
    """UltraChat's ``data``, or LIMA's ``conversations``: alternating strings."""
    key = "conversations" if "data" not in obj and "conversations" in obj else "data"
    extra = _check_keys(obj, "ultrachat", (key,), (key,))
    data = obj[key]
    if not isinstance(data, list) or not data:
        raise FieldError(key, f"expected a non-empty array of turns (user, assistant, user, ...), got {_type_name(data) if data else 'an empty array'}")
    msgs = []
    for i, text in enumerate(data):
        if not isinstance(text, str):
            raise FieldError(f"{key}[{i}]", f"expected a string (turns alternate user, assistant), got {_type_name(text)}")
        msgs.append(Message(role="user" if i % 2 == 0 else "assistant", content=text))
    check_conversation(msgs, key, require_answer)
    return Record(**_with_extra({"messages": msgs}, extra))


def _side(obj: dict[str, Any], key: str, role: str) -> list[Message]:
    v = obj[key]
    if isinstance(v, str):
        return [Message(role=role, content=v)]
    if isinstance(v, list):
        return _parse_turns(v, key, "role", "content", OPENAI_ROLES)
    raise FieldError(key, f"expected a string or an array of messages, got {_type_name(v)}", "wrong_type")


def from_prompt_completion(obj: dict[str, Any], require_answer: bool = True) -> Record:
    extra = _check_keys(obj, "prompt-completion", ("prompt", "completion"), _KNOWN["prompt-completion"])
    prompt, completion = _side(obj, "prompt", "user"), _side(obj, "completion", "assistant")
    if isinstance(obj["prompt"], str) != isinstance(obj["completion"], str):
        raise FieldError("completion", "prompt and completion must both be strings or both arrays of messages")
    if any(m.role != "assistant" for m in completion):
        bad = next(i for i, m in enumerate(completion) if m.role != "assistant")
        raise FieldError(f"completion[{bad}].role", "a completion holds assistant turns only")
    msgs = prompt + completion
    check_conversation(msgs, "prompt", require_answer)
    return Record(**_with_extra({"messages": msgs}, extra))


def _prompt_text(obj: dict[str, Any], key: str) -> list[Message]:
    v = obj[key]
    if key == "turns":  # MT-Bench: strings; Arena-Hard: {content}; the first turn is the prompt
        if not isinstance(v, list) or not v:
            raise FieldError("turns", f"expected a non-empty array of turns, got {_type_name(v)}")
        first = v[0].get("content") if isinstance(v[0], dict) else v[0]
        if not isinstance(first, str):
            raise FieldError("turns[0]", f"expected a string or {{content}}, got {_type_name(v[0])}")
        return [Message(role="user", content=first)]
    if key == "prompt" and isinstance(v, list):  # TRL conversational prompt-only
        msgs = _parse_turns(v, "prompt", "role", "content", OPENAI_ROLES)
        check_conversation(msgs, "prompt", require_answer=False)
        return msgs
    return [Message(role="user", content=_str(obj, key, key))]


def from_prompt(obj: dict[str, Any], require_answer: bool = True) -> Record:
    key = next((k for k in PROMPT_KEYS if k in obj), None)
    if key is None:
        raise FieldError("prompt", f"missing: a prompt-only row holds one of {', '.join(PROMPT_KEYS)}", "missing_field")
    answer = next((k for k in ANSWER_KEYS if k in obj), None)
    if answer is not None:  # never read a pair as a bare prompt, losing its answer
        fix = f"--map {answer}=completion" if key == "prompt" else f"--map {key}=prompt,{answer}=completion"
        raise FieldError(answer, f"a prompt-only row has no answer, but this one has '{answer}'; read it as a pair with {fix}",
                         "prompt_with_answer")
    msgs = _prompt_text(obj, key)
    system = _str(obj, "system", "system", required=False)
    if system and msgs[0].role != "system":
        msgs.insert(0, Message(role="system", content=system))
    if require_answer:
        raise FieldError(key, "a prompt with no answer: only `datagen distill` answers prompts (evolve and convert "
                         "--allow-no-answer read them too); distill them first", "no_assistant_turn")
    extra = {k: v for k, v in obj.items() if k not in (key, "system") or key == "turns"}  # MT-Bench's later turns stay
    return Record(**_with_extra({"messages": msgs}, extra))


READERS: dict[str, Callable[..., Record]] = {"dolly": from_dolly, "ultrachat": from_ultrachat,
                                              "prompt-completion": from_prompt_completion, "prompt": from_prompt}


def read_row(obj: Any, fmt: str, require_answer: bool = True) -> Record:
    """One row of ``fmt`` (any of :data:`INPUT_FORMATS`) as a Record; raises :class:`FieldError`."""
    from pydantic import ValidationError

    if fmt not in READERS:
        return formats.to_record(obj, fmt, require_answer=require_answer)
    if not isinstance(obj, dict):
        raise FieldError("-", f"expected a JSON object, got {_type_name(obj)}")
    try:
        return READERS[fmt](obj, require_answer=require_answer)
    except ValidationError as e:
        raise formats.validation_field_error(e, fmt) from None


# -- the fix a refusal names -------------------------------------------------------------------
# a missing field, and the fields of other shapes that hold what it holds
SYNONYMS = {"output": ("response", "completion", "answer", "target"), "response": ("output", "completion", "answer"),
            "completion": ("output", "response", "answer", "chosen"), "instruction": ("prompt", "question", "query", "Instruction"),
            "prompt": ("instruction", "question", "query", "Instruction"), "conversations": ("messages", "conversation", "turns"),
            "messages": ("conversations", "conversation", "chat"), "data": ("conversations", "messages")}


SELF_EXPLAINED = ("tool_calls", "prompt_with_answer", "unknown_role")  # their message names the fix


def explain(err: FieldError, obj: Any, fmt: str, detected: bool, require_answer: bool = True) -> FieldError:
    """``err`` with the format the row was read as and the fix: ``--format X`` where the row
    reads as another format, ``--map a=b`` where it holds the missing field under another name,
    ``datagen distill`` for a prompt with no answer."""
    fixes = []
    alt = detect(obj)
    if alt is not None and alt != fmt and _reads(obj, alt, require_answer):
        fixes.append(f"this row looks like {alt}: --format {alt}")
    missing = err.field.split("[")[0].split(".")[0]
    if err.code == "missing_field" and isinstance(obj, dict) and missing not in obj:
        have = [k for k in SYNONYMS.get(missing, ()) if k in obj]
        if have:
            fixes.append(f"--map {have[0]}={missing}")
        elif missing in ANSWER_KEYS:
            fixes.append("a prompt with no answer? only `datagen distill` answers prompts")
    if not fixes and err.code not in SELF_EXPLAINED and not (fmt == "prompt" and err.code == "no_assistant_turn"):
        fixes.append("another shape? --format X, or rename fields with --map src=dst")
    how = "detected from the first row" if detected else "as --format says"
    return FieldError(err.field, f"{err.message} (read as {fmt}, {how}{'; ' if fixes else ''}{'; or '.join(fixes)})", err.code)


def _reads(obj: Any, fmt: str, require_answer: bool) -> bool:
    try:
        read_row(obj, fmt, require_answer)
    except (FieldError, ValueError):
        return False
    return True


# -- --map and --roles -------------------------------------------------------------------------
TURN_LISTS = ("conversations", "messages", "prompt", "completion")
_PAIR = re.compile(r"^\s*([^=,]+?)\s*=\s*([^=,]+?)\s*$")


def parse_pairs(text: str | None, flag: str) -> tuple[tuple[str, str], ...]:
    """``"a=b,c=d"`` -> ``(("a", "b"), ("c", "d"))``; a malformed pair is a :class:`UserError`."""
    if not text:
        return ()
    pairs = []
    for part in text.split(","):
        m = _PAIR.match(part)
        if not m:
            raise UserError(f"{flag} {text!r}: expected SRC=DST pairs separated by commas, e.g. {flag} response=output,context=input")
        pairs.append((m.group(1), m.group(2)))
    srcs = [a for a, _ in pairs]
    if len(set(srcs)) != len(srcs):
        raise UserError(f"{flag} {text!r}: a source name appears twice")
    return tuple(pairs)


@dataclass(frozen=True)
class RowMap:
    """Columns renamed (``--map``) and turn roles renamed (``--roles``), before a row is read."""

    columns: tuple[tuple[str, str], ...] = ()
    roles: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, columns: str | None, roles: str | None) -> RowMap | None:
        m = cls(parse_pairs(columns, "--map"), parse_pairs(roles, "--roles"))
        return m if m.columns or m.roles else None

    def apply(self, obj: Any) -> Any:
        if not isinstance(obj, dict):
            return obj
        if self.columns:
            rename = dict(self.columns)
            clash = next((dst for src, dst in self.columns if src in obj and dst in obj and dst not in rename), None)
            if clash is not None:
                raise FieldError(clash, f"--map renames a field to '{clash}', which the row already has")
            obj = {rename.get(k, k): v for k, v in obj.items()}
        if self.roles:
            roles = dict(self.roles)
            obj = dict(obj)
            for key in TURN_LISTS:
                if isinstance(obj.get(key), list):
                    obj[key] = [_rename_role(t, roles) for t in obj[key]]
        return obj


def _rename_role(turn: Any, roles: dict[str, str]) -> Any:
    if not isinstance(turn, dict):
        return turn
    rk = "from" if "from" in turn else "role"
    role = turn.get(rk)
    return {**turn, rk: roles[role]} if isinstance(role, str) and role in roles else turn
