"""A scripted LLM for unit tests: answers are a deterministic function of the request, and every
call is recorded. It implements the same protocol as the real backends.

``logprobs`` (optional) is called as ``logprobs(request, params, text)`` when the params ask for
logprobs, and its result becomes ``Completion.logprobs``."""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

from datagen.llm.base import ChatRequest, Completion, GenParams, TokenLogprob, Usage


def default_answer(req: ChatRequest, params: GenParams) -> str:
    last = req.messages[-1][1]
    h = hashlib.sha1(f"{last}|{req.seed}|{params.seed}".encode()).hexdigest()[:6]
    return f"answer to: {last[:40]} [{h}]"


LogprobsFn = Callable[[ChatRequest, GenParams, str], "list[TokenLogprob] | None"]


class ScriptedLLM:
    def __init__(self, answer: Callable[[ChatRequest, GenParams], str | Exception] = default_answer, model_id: str = "scripted",
                 logprobs: LogprobsFn | None = None) -> None:
        self.answer = answer
        self.logprobs = logprobs
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
            if params.logprobs and self.logprobs is not None:
                c.logprobs = self.logprobs(r, params, text)
            self.usage.add(requests=1, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens)
            out.append(c)
        return out

    def describe(self) -> dict[str, Any]:
        return {"backend": "scripted", "model": self.model_id}


class Interrupting:
    """Wraps an LLM and raises KeyboardInterrupt on its Nth generate call, as Ctrl-C would."""

    def __init__(self, inner: Any, n: int) -> None:
        self.inner, self.n, self.calls = inner, n, 0
        self.model_id, self.usage = inner.model_id, inner.usage

    def generate(self, requests: Sequence[ChatRequest], params: GenParams) -> list[Completion]:
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.inner.generate(requests, params)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()
