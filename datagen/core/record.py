"""The one schema every stage reads and writes.

A :class:`Record` is a conversation (a list of :class:`Message`) plus what the pipeline learned
about it: where it came from (``source``, ``parent_id``), what the filters measured (``scores``,
``flags``) and how it was made (``meta``: model, prompt template and its hash, round, usage).

``Record.id`` is a content hash of the messages, so the same conversation gets the same id in
every run, on every machine. Change the messages through :meth:`Record.with_messages` and the id
follows.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Literal, NamedTuple, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str


def content_hash(messages: list[Message] | list[dict[str, str]]) -> str:
    """Stable id of a conversation: sha256 over canonical JSON of (role, content) pairs."""
    pairs = []
    for m in messages:
        if isinstance(m, Message):
            pairs.append([m.role, m.content])
        else:
            pairs.append([m["role"], m["content"]])
    blob = json.dumps(pairs, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def instruction_of(messages: Sequence[Any]) -> str:
    for m in reversed(messages):
        if m.role == "user":
            return m.content
    return ""


def response_of(messages: Sequence[Any]) -> str:
    last = messages[-1]
    return last.content if last.role == "assistant" else ""


class TextViews:
    """The text views of anything with ``messages`` (role, content): a :class:`Record` and a
    :class:`RecordView`."""

    __slots__ = ()  # the class using it has ``messages``

    @property
    def instruction(self) -> str:
        """The last user turn: the instruction the final answer responds to."""
        return instruction_of(self.messages)

    @property
    def response(self) -> str:
        """The final assistant turn, or '' when the record is a prompt awaiting an answer."""
        return response_of(self.messages)


class Record(TextViews, BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = ""
    messages: list[Message] = Field(min_length=1)
    source: str = "input"
    parent_id: str | None = None
    scores: dict[str, float] = Field(default_factory=dict)
    flags: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("messages")
    @classmethod
    def _order(cls, messages: list[Message]) -> list[Message]:
        for i, m in enumerate(messages):
            if m.role == "system" and i != 0:
                raise ValueError(f"a system message may only come first (found at position {i})")
        if all(m.role == "system" for m in messages):
            raise ValueError("a conversation needs at least one user or assistant message")
        return messages

    @field_validator("scores")
    @classmethod
    def _finite(cls, scores: dict[str, float]) -> dict[str, float]:
        for name, value in scores.items():
            if not math.isfinite(value):
                raise ValueError(f"score {name!r} is {value}: scores must be finite numbers (leave a score out when it cannot be computed)")
        return scores

    @model_validator(mode="after")
    def _stable_id(self) -> "Record":
        # The id is always the content hash: an edited conversation can never keep a stale id.
        self.id = content_hash(self.messages)
        return self

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_turns(
        cls,
        user: str,
        assistant: str | None = None,
        *,
        system: str | None = None,
        **fields: Any,
    ) -> "Record":
        msgs: list[Message] = []
        if system:
            msgs.append(Message(role="system", content=system))
        msgs.append(Message(role="user", content=user))
        if assistant is not None:
            msgs.append(Message(role="assistant", content=assistant))
        return cls(messages=msgs, **fields)

    def with_messages(self, messages: list[Message], **fields: Any) -> "Record":
        data = self.model_dump()
        data.update(fields)
        data["messages"] = [m.model_dump() if isinstance(m, Message) else m for m in messages]
        data["id"] = ""
        return Record.model_validate(data)

    def with_answer(self, answer: str, **fields: Any) -> "Record":
        """The same prompt with ``answer`` as the final assistant turn (replacing one if present)."""
        msgs = list(self.messages)
        if msgs and msgs[-1].role == "assistant":
            msgs = msgs[:-1]
        msgs.append(Message(role="assistant", content=answer))
        return self.with_messages(msgs, **fields)

    # -- views --------------------------------------------------------------------------------
    @property
    def system(self) -> str | None:
        return self.messages[0].content if self.messages[0].role == "system" else None


    @property
    def has_answer(self) -> bool:
        return any(m.role == "assistant" for m in self.messages)

    def prompt_messages(self) -> list[Message]:
        """Messages up to (not including) the final assistant turn."""
        if self.messages[-1].role == "assistant":
            return list(self.messages[:-1])
        return list(self.messages)

    def to_json(self) -> str:
        return dumps_strict(self.model_dump(mode="json"))


class Turn(NamedTuple):
    role: str
    content: str


class RecordView(TextViews):
    """A record read back from a file this tool wrote, without validating it again (its stored id
    is its content hash): the id, scores, flags and text views that a dedup stage's keys need, at
    a seventh of the cost of :meth:`Record.model_validate_json`. Read-only: a stage that changes a
    record parses it whole."""

    __slots__ = ("id", "scores", "flags", "messages")

    def __init__(self, line: str | bytes) -> None:
        d = json.loads(line)
        self.id: str = d["id"]
        self.scores: dict[str, float] = d.get("scores") or {}
        self.flags: dict[str, Any] = d.get("flags") or {}
        self.messages = [Turn(m["role"], m["content"]) for m in d["messages"]]


def dumps_strict(obj: Any, **kw: Any) -> str:
    """Standard JSON, always: a non-finite float in free-form fields (flags, meta, evidence) is
    written as null, never as the NaN/Infinity that other JSON readers refuse."""
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, **kw)
    except ValueError:
        return json.dumps(_finite_or_null(obj), ensure_ascii=False, allow_nan=False, **kw)


def _finite_or_null(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    return obj


class Rejection(BaseModel):
    """One line of ``rejected.jsonl``: what was rejected, by which stage, why, and the evidence."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    reason: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    record: Record | None = None
    raw: Any = None  # the offending input when it could not be parsed into a Record
    location: str | None = None  # "file:line" for input errors

    def to_json(self) -> str:
        return dumps_strict(self.model_dump(mode="json", exclude_none=True))
