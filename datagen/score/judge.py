"""Best-of-n by a judge: each candidate answer rated 1-5 by a judge model (the rating read as
:func:`~datagen.score.rating.rate` reads it), the best kept. Distillation's best-of-n and the
quality stage's judge score both go through :class:`JudgeSelector`."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from datagen.llm.base import ChatRequest, Completion, GenParams, LLM
from datagen.score.rating import RATING_PARAMS, rate

if TYPE_CHECKING:
    from datagen.core.prompts import Template
    from datagen.core.record import Record

SCALE = range(1, 6)


def usage_of(comp: Completion) -> dict[str, int]:
    return {"prompt_tokens": comp.prompt_tokens, "completion_tokens": comp.completion_tokens}


@dataclass(frozen=True)
class Score:
    """How a selector rated one candidate. ``value`` is None when no rating could be read."""

    value: float | None
    method: str  # the judge's: "expected" (logprobs), "digit" (reply text), "unparsed", "llm_error"
    evidence: dict[str, Any] = field(default_factory=dict)  # e.g. the reply, digit probabilities
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **self.evidence, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


Selection = tuple[int | None, list[Score]]


class Selector(abc.ABC):
    """A best-of-n strategy: rates the candidate answers to one prompt and picks one.

    ``pick_best`` returns the winner's index (None when nothing could be rated) and one
    :class:`Score` per candidate. ``pick_best_many`` does it for many prompts at once; override
    it to batch model calls."""

    @abc.abstractmethod
    def pick_best(self, record: Record, candidates: Sequence[str]) -> Selection: ...

    def pick_best_many(self, items: Sequence[tuple[Record, Sequence[str]]]) -> list[Selection]:
        return [self.pick_best(rec, cands) for rec, cands in items]

    def describe(self) -> dict[str, Any]:
        """What goes in each kept record's meta and the manifest."""
        return {"selector": type(self).__name__}


def best_index(scores: Sequence[Score]) -> int | None:
    """The highest-scored candidate; ties go to the lowest index; None when none has a score."""
    scored = [(s.value, -i) for i, s in enumerate(scores) if s.value is not None]
    return -max(scored)[1] if scored else None


def score_reply(comp: Completion) -> Score:
    """A judge's completion as a :class:`Score` (the rating as :func:`~datagen.score.rating.rate` reads it)."""
    r = rate(comp, SCALE)
    evidence = {k: v for k, v in r.evidence().items() if k not in ("value", "method")}
    return Score(r.value, r.method, evidence, **usage_of(comp))


@dataclass
class JudgeSelector(Selector):
    """Best-of-n by a judge model's 1-5 rating of each answer (one request per candidate, all the
    candidates of a chunk in one batch)."""

    llm: LLM
    template: Template
    params: GenParams = RATING_PARAMS

    def request(self, record: Record, answer: str) -> ChatRequest:
        history = [m for m in record.prompt_messages() if m.role != "system"][:-1]
        prompt = self.template.render(
            history=[{"role": m.role, "content": m.content} for m in history],
            instruction=record.instruction,
            answer=answer,
        )
        return ChatRequest.of([("user", prompt)])

    def pick_best(self, record: Record, candidates: Sequence[str]) -> Selection:
        return self.pick_best_many([(record, candidates)])[0]

    def pick_best_many(self, items: Sequence[tuple[Record, Sequence[str]]]) -> list[Selection]:
        reqs = [self.request(rec, answer) for rec, cands in items for answer in cands]
        replies = iter(self.llm.generate(reqs, self.params) if reqs else [])
        out: list[Selection] = []
        for _, cands in items:
            scores = [score_reply(next(replies)) for _ in cands]
            out.append((best_index(scores), scores))
        return out

    def describe(self) -> dict[str, Any]:
        return {"selector": "judge", "template": {"name": self.template.name, "sha": self.template.sha}, "model": self.llm.model_id}
