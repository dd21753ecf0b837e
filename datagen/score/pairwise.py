"""Pairwise judging: which of two answers to the same prompt is better, asked in both orders.

A judge LLM compares each pair with ``prompts/train/pairwise.j2`` twice, once in each order, to
cancel position bias.

- From the verdicts written: a prompt scores 1 when the fine-tune wins both orders, 0.5 for a
  split or a tie, 0 when it loses; ``win_rate`` is the mean, and ``consistent`` the share of
  prompts whose two verdicts agree.
- From the judge's probabilities (:func:`debiased_preference`): in each order the log-odds
  ``l = log P("A") - log P("B")`` at the verdict position; with a position bias ``b`` and a
  quality gap ``d``, ``l1 = b + d`` (fine-tune first) and ``l2 = b - d`` (fine-tune second), so
  ``d = (l1 - l2) / 2`` is the gap with the bias cancelled (balanced position calibration, as in
  Wang et al. 2023, "Large Language Models are not Fair Evaluators"). ``debiased_win_rate`` is the
  mean of ``sigmoid(d)`` over prompts; ``position_bias`` is the mean ``P("A")`` over all requests
  (0.5: none). A judge that always writes "A" yields only ties from its verdicts, yet its
  probabilities can still rank the answers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from datagen.llm.structured import field_of, one_field_schema

if TYPE_CHECKING:
    from datagen.core.record import Message, Record
    from datagen.llm.base import LLM, TokenLogprob

PAIRWISE_TEMPLATE = "train/pairwise"
# Greedy, a few tokens, and the top-20 alternatives of each: the verdict is read from the text, the
# debiased preference from the probabilities of "A" and "B" at the verdict position.
JUDGE_PARAMS = {"max_tokens": 4, "temperature": 0.0, "top_p": 1.0, "seed": 0, "logprobs": True, "top_logprobs": 20,
                # on a server that can constrain its output: {"verdict": "A" | "B" | "tie"}
                "json_schema": one_field_schema("verdict", enum=("A", "B", "tie"))}
_CHOICES = ("A", "B")
_VERDICT = re.compile(r"\b(A|B|tie)\b", re.IGNORECASE)


def parse_verdict(reply: str) -> str | None:
    """'A', 'B' or 'tie' from a judge's reply (a structured one's ``verdict``), or None."""
    structured = field_of(reply, "verdict")
    if structured in ("A", "B", "tie"):
        return structured
    m = _VERDICT.search(reply)
    if not m:
        return None
    v = m.group(1)
    return "tie" if v.lower() == "tie" else v.upper()


@dataclass(frozen=True)
class ChoiceLogOdds:
    """``log P("A") - log P("B")`` at a judge's verdict position, and the probability on A and B."""

    log_odds: float
    mass: float  # P("A") + P("B") before renormalising
    bounded: bool  # one of the two was not among the top alternatives: its log-probability is
    # bounded by the lowest one listed, so |log_odds| is a lower bound


def choice_log_odds(logprobs: Sequence[TokenLogprob] | None) -> ChoiceLogOdds | None:
    """The A-vs-B log-odds at the first generated position whose token or top alternatives hold
    "A" or "B" (stripped; " A" and "A" add up), or None without logprobs or without either."""
    for position in logprobs or ():
        probs = position.probs_of(_CHOICES)
        if not probs:
            continue
        floor = math.exp(min(position.logprob, *position.top.values()))  # the least likely token listed
        a, b = (probs.get(c, floor) for c in _CHOICES)
        return ChoiceLogOdds(math.log(a) - math.log(b), sum(probs.values()), len(probs) < len(_CHOICES))
    return None


def debiased_preference(first: ChoiceLogOdds | None, second: ChoiceLogOdds | None) -> float | None:
    """P(the answer shown first in the first order is better), with position bias cancelled:
    ``sigmoid((l1 - l2) / 2)`` (see the module docstring); None unless both orders were read."""
    if first is None or second is None:
        return None
    return 1.0 / (1.0 + math.exp(-(first.log_odds - second.log_odds) / 2))


def judge_pairs(judge: LLM, records: Sequence[Record], model_answers: Sequence[str], base_answers: Sequence[str]) -> dict[str, Any]:
    """Win rate of ``model_answers`` over ``base_answers``, both orders asked (see the module docstring)."""
    from datagen.core import prompts
    from datagen.llm.base import ChatRequest, GenParams

    template = prompts.load(PAIRWISE_TEMPLATE)
    requests = []
    for rec, mine, theirs in zip(records, model_answers, base_answers):
        history = [{"role": m.role, "content": m.content} for m in _history(rec.prompt_messages())]
        for a, b in ((mine, theirs), (theirs, mine)):
            text = template.render(history=history, instruction=rec.instruction, answer_a=a, answer_b=b)
            requests.append(ChatRequest.of([("user", text)]))
    replies = judge.generate(requests, GenParams(**JUDGE_PARAMS))
    items, scores, consistent, unreadable = [], [], 0, 0
    debiased: list[float] = []
    odds = [choice_log_odds(r.logprobs) if r.ok else None for r in replies]
    for i, rec in enumerate(records):
        first = parse_verdict(replies[2 * i].text) if replies[2 * i].ok else None
        second = parse_verdict(replies[2 * i + 1].text) if replies[2 * i + 1].ok else None
        # the fine-tune is A in the first order and B in the second
        points = [{"A": 1.0, "B": 0.0, "tie": 0.5}.get(first or ""), {"B": 1.0, "A": 0.0, "tie": 0.5}.get(second or "")]
        read = [p for p in points if p is not None]
        unreadable += 2 - len(read)
        score = sum(read) / len(read) if read else None
        if score is not None:
            scores.append(score)
        if len(read) == 2 and read[0] == read[1]:
            consistent += 1
        pref = debiased_preference(odds[2 * i], odds[2 * i + 1])
        if pref is not None:
            debiased.append(pref)
        items.append({
            "id": rec.id, "verdicts": [first, second], "score": score,
            "log_odds": [None if o is None else round(o.log_odds, 4) for o in odds[2 * i : 2 * i + 2]],
            "debiased": pref,
        })
    read_odds = [o for o in odds if o is not None]
    return {
        "template": {"name": template.name, "sha": template.sha},
        "judge": judge.model_id,
        "win_rate": sum(scores) / len(scores) if scores else None,
        "wins": sum(1 for s in scores if s == 1.0),
        "losses": sum(1 for s in scores if s == 0.0),
        "ties_or_splits": sum(1 for s in scores if 0.0 < s < 1.0),
        "consistent": consistent / len(records) if records else None,
        "unreadable_verdicts": unreadable,
        "debiased_win_rate": sum(debiased) / len(debiased) if debiased else None,
        "debiased_wins": sum(1 for p in debiased if p > 0.5),
        "debiased_losses": sum(1 for p in debiased if p < 0.5),
        "position_bias": sum(1 / (1 + math.exp(-o.log_odds)) for o in read_odds) / len(read_odds) if read_odds else None,
        "choice_mass": sum(o.mass for o in read_odds) / len(read_odds) if read_odds else None,
        "items": items,
    }


def _history(messages: Sequence[Message]) -> list[Message]:
    """The turns before the final instruction, without the system message."""
    return [m for m in messages if m.role != "system"][:-1]
