"""A scripted LLM for unit tests: answers are a deterministic function of the request, and every
call is recorded. It implements the same protocol as the real backends."""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

from datagen.llm.base import ChatRequest, Completion, GenParams, Usage


def default_answer(req: ChatRequest, params: GenParams) -> str:
    last = req.messages[-1][1]
    h = hashlib.sha1(f"{last}|{req.seed}|{params.seed}".encode()).hexdigest()[:6]
    return f"answer to: {last[:40]} [{h}]"


class ScriptedLLM:
    def __init__(self, answer: Callable[[ChatRequest, GenParams], str | Exception] = default_answer, model_id: str = "scripted") -> None:
        self.answer = answer
        self.model_id = model_id
        self.usage = Usage()
        self.calls: list[ChatRequest] = []

    def generate(self, requests: Sequence[ChatRequest], params: GenParams) -> list[Completion]:
        out = []
        for r in requests:
            self.calls.append(r)
            a = self.answer(r, params)
            if isinstance(a, Exception):
                out.append(Completion(text="", finish_reason="error", model=self.model_id, error=str(a)))
                self.usage.add(requests=1, failures=1)
                continue
            words = a.split()
            truncated = len(words) > params.max_tokens
            text = " ".join(words[: params.max_tokens])
            c = Completion(text=text, finish_reason="length" if truncated else "stop", prompt_tokens=sum(len(m[1].split()) for m in r.messages), completion_tokens=min(len(words), params.max_tokens), model=self.model_id)
            self.usage.add(requests=1, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens)
            out.append(c)
        return out

    def describe(self) -> dict[str, Any]:
        return {"backend": "scripted", "model": self.model_id}
