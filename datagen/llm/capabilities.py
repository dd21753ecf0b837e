"""What an OpenAI-compatible server turned out to support, and how its refusals read.

Servers differ: llama.cpp's server without ``logits_all`` answers every request for logprobs
with HTTP 500, OpenAI refuses request fields it does not know, llama-cpp-python takes a JSON
schema only in its own form of ``response_format``. :mod:`datagen.llm.openai_compat` learns each
of these once, from ``GET /models`` and from the error that refuses a field, and records them
here (:class:`Capabilities`, written to the manifest).
"""

from __future__ import annotations

import logging

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

log = logging.getLogger("datagen.llm.openai_compat")

# Optional request fields a server may refuse, most specific name first, each with the fields
# that go with it. A refusal that names one (llama.cpp without logits_all: "logprobs is not
# supported ..."; OpenAI: "Unrecognized request argument supplied: repeat_penalty") is the
# server's missing capability, not an outage: the field is dropped for the backend's life and the
# request is sent again at once, counted neither as a retry nor toward the breaker.
OPTIONAL_FIELDS: dict[str, tuple[str, ...]] = {
    "top_logprobs": ("top_logprobs",),
    "logprobs": ("logprobs", "top_logprobs"),
    "response_format": ("response_format",),
    "repeat_penalty": ("repeat_penalty",),
    "seed": ("seed",),
}
_NAMES = {"json_schema": "response_format", "json_object": "response_format"}  # other words a refusal may use
_REFUSAL_WORDS = re.compile(
    r"not (?:be )?supported|unsupported|(?:does|do) not support|not implemented|unrecogni[sz]ed|unknown|"
    r"not allowed|not permitted|extra (?:fields|inputs)|unexpected (?:keyword|field|argument)|invalid|"
    r"input should be|validation error", re.I)
CAPABILITY_STATUSES = frozenset({400, 404, 422, 500, 501})


# The ways of asking for a reply that follows a JSON schema, tried in this order until the server
# takes one: OpenAI's (vLLM, Ollama, llama.cpp's own server), then llama-cpp-python's.
JSON_DIALECTS: tuple[tuple[str, str, Any], ...] = (  # (name in the manifest, response_format type, body)
    ("json_schema", "json_schema", lambda schema: {"type": "json_schema", "json_schema": {"name": "reply", "strict": True, "schema": schema}}),
    ("json_object+schema", "json_object", lambda schema: {"type": "json_object", "schema": schema}),
)
LLAMA_CPP_PYTHON = "me"  # what llama-cpp-python's server says in GET /models "owned_by"


@dataclass
class Capabilities:
    """What the server turned out to support; goes to the manifest (``describe()``)."""

    refused: dict[str, str] = field(default_factory=dict)  # optional field -> the server's words
    models: list[str] | None = None  # the ids GET /models listed; None: it did not answer
    server: str | None = None  # "llama.cpp", "vllm", "ollama"... when the listing says
    json_dialect: int = 0  # index into JSON_DIALECTS of the form of response_format in use
    slots: int | None = None  # requests the server serves at once, when it says and it is fewer than asked
    structured_ok: bool = False  # a request with response_format was answered

    def learn_refusal(self, status: int, message: str, body: Mapping[str, Any]) -> bool:
        """Whether an error response (``status``, the server's ``message``) to a request with
        ``body`` refuses one of its optional fields; if so, later requests go without it, or ask
        for a schema in the next form (:data:`JSON_DIALECTS`)."""
        name = refused_field(status, message, body)
        if name is None:
            return False
        if name in self.refused:  # learnt meanwhile from another request in flight
            return True
        if name == "response_format":
            sent = body["response_format"].get("type")
            if sent != JSON_DIALECTS[self.json_dialect][1]:
                return True  # another request in flight already moved on to the next form
            if self.json_dialect + 1 < len(JSON_DIALECTS):  # try the next way of asking for a schema
                self.json_dialect += 1
                log.info("the server refused response_format type %r (%s); trying the next form", sent, message)
                return True
        self.refused[name] = f"HTTP {status}: {message}"
        log.warning("the server does not support '%s' (HTTP %d: %s); sending requests without it", name, status, message)
        return True

    def to_dict(self) -> dict[str, Any]:
        if "response_format" in self.refused:
            structured = None
        else:
            structured = JSON_DIALECTS[self.json_dialect][0] if self.structured_ok else "not asked"
        return {"refused": dict(self.refused), "models": self.models, "server": self.server,
                "structured_output": structured, "slots": self.slots}


def refused_field(status: int, message: str, sent: Mapping[str, Any]) -> str | None:
    """The optional field (a key of OPTIONAL_FIELDS) that an error response refuses, if any: the
    status is one servers use for it, the message names a field we sent, and says it is refused."""
    if status not in CAPABILITY_STATUSES or not _REFUSAL_WORDS.search(message):
        return None
    low = message.lower()
    for word in (*OPTIONAL_FIELDS, *_NAMES):
        name = _NAMES.get(word, word)
        if name in sent and re.search(rf"(?<![a-z_]){word}(?![a-z_])", low):
            return name
    return None


# what GET /models says in "owned_by", by server
SERVER_MARKS: tuple[tuple[str, frozenset[str]], ...] = (
    ("llama.cpp", frozenset({"llamacpp", "llama.cpp", "llama-cpp-python", LLAMA_CPP_PYTHON})),
    ("vllm", frozenset({"vllm"})),
    ("ollama", frozenset({"ollama", "library"})),
    ("openai", frozenset({"openai", "system", "openai-internal"})),
)
