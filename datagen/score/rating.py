"""Reading a rating ("4") out of an LLM judge's reply, as an expected value when possible.

AlpaGasus-style judges answer with a digit on a fixed scale. A single sampled digit throws away
what the model knows; the expected rating under the judge's probabilities for the scale's digits is
smoother and ranks better. :func:`rate` reads, from a completion made with
``logprobs=True, top_logprobs=20`` (:data:`RATING_PARAMS`):

1. ``expected``: at the first generated position whose token is one of the scale's digits (else
   the first position whose top alternatives hold one), the probabilities of the digits found there
   (``"4"`` and ``" 4"`` add up), renormalised over those digits, give ``sum(k * p_k)``; only when
   the judge put at least :data:`MIN_DIGIT_MASS` of its probability on the digits there: an
   average renormalised from a sliver (1% seen on a real server) is noise, not a rating;
2. ``json``: a ``{"rating": k}`` reply, which a server that constrains its output to
   :func:`rating_schema` always gives (without logprobs, or too little mass on the digits);
3. ``digit``: without logprobs, with no digit among them, or with too little mass on them (then
   ``mass`` is recorded beside it), the first standalone digit of the scale in the reply text;
4. otherwise no value (method ``unparsed``, or ``llm_error`` for a failed request). Callers record
   that as a failure; there is no default rating.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from datagen.llm.base import Completion, GenParams, TokenLogprob
from datagen.llm.structured import field_of, one_field_schema

MIN_DIGIT_MASS = 0.5  # least probability on the scale's digits for an expected rating

def rating_schema(scale: range) -> str:
    """The JSON schema of a constrained rating reply, ``{"rating": k}`` with k on ``scale``."""
    return one_field_schema("rating", enum=list(scale), kind="integer")


def rating_params(scale: range) -> GenParams:
    """Greedy, a few tokens (room for a leading space or "Rating:"), the top-20 alternatives of
    each; on a server that can constrain its output, a ``{"rating": k}`` reply (always readable)."""
    return GenParams(max_tokens=4, temperature=0.0, top_p=1.0, seed=0, logprobs=True, top_logprobs=20, json_schema=rating_schema(scale))


RATING_PARAMS = rating_params(range(1, 6))  # the 1-5 answer-quality scale of the judge


@dataclass(frozen=True)
class Rating:
    """A rating read from a judge's reply. ``value`` is None when none could be read."""

    value: float | None
    method: str  # "expected" | "json" | "digit" | "unparsed" | "llm_error"
    parsed: int | None = None  # the digit written in the reply, if any
    probs: dict[str, float] = field(default_factory=dict)  # renormalised digit probabilities ("expected")
    mass: float | None = None  # probability the judge put on the scale's digits, before renormalising
    reply: str = ""

    def evidence(self) -> dict[str, Any]:
        """A JSON-ready summary for ``record.flags``."""
        return {k: v for k, v in asdict(self).items() if v not in (None, {}, "")}


def digit_probs(position: TokenLogprob, scale: range) -> dict[int, float]:
    """Probability of each digit of ``scale`` at one position (chosen token and alternatives)."""
    return {int(k): p for k, p in position.probs_of({str(k) for k in scale}).items()}


def expected_rating(logprobs: Sequence[TokenLogprob], scale: range) -> tuple[float, dict[int, float], float] | None:
    """(expected rating, renormalised digit probabilities, raw digit mass) at the answer position,
    or None when no position holds a digit of ``scale``."""
    chosen = [p for p in logprobs if p.token.strip().isdigit() and int(p.token.strip()) in scale]
    for position in chosen[:1] + list(logprobs):
        probs = digit_probs(position, scale)
        mass = sum(probs.values())
        if mass > 0:
            norm = {k: p / mass for k, p in sorted(probs.items())}
            return sum(k * p for k, p in norm.items()), norm, mass
    return None


def digit_in_text(text: str, scale: range) -> int | None:
    """The first standalone digit of ``scale`` in ``text``: "4", "4/5", "**4**"; not "45", "4.5"."""
    digits = "".join(str(k) for k in scale if 0 <= k <= 9)
    match = re.search(rf"(?<![\w.])([{digits}])(?!\w|\.\d)", text) if digits else None
    return int(match.group(1)) if match else None


def rate(completion: Completion, scale: range, min_mass: float = MIN_DIGIT_MASS) -> Rating:
    """The rating in a judge's completion (see the module docstring); ``min_mass`` overrides
    :data:`MIN_DIGIT_MASS`."""
    if not completion.ok:
        return Rating(None, "llm_error", reply=(completion.error or "")[:200])
    reply = completion.text.strip()[:200]
    parsed = digit_in_text(completion.text, scale)
    constrained = rating_in_json(completion.text, scale)
    found = expected_rating(completion.logprobs, scale) if completion.logprobs else None
    mass = None
    if found is not None:
        value, probs, mass = found
        if mass >= min_mass:
            return Rating(round(value, 6), "expected", parsed, {str(k): round(p, 6) for k, p in probs.items()}, round(mass, 6), reply)
        mass = round(mass, 6)
    if constrained is not None:
        return Rating(float(constrained), "json", constrained, mass=mass, reply=reply)
    if parsed is not None:
        return Rating(float(parsed), "digit", parsed, mass=mass, reply=reply)
    return Rating(None, "unparsed", mass=mass, reply=reply)


def rating_in_json(text: str, scale: range) -> int | None:
    """k from a ``{"rating": k}`` reply (a constrained one), or None."""
    value = field_of(text, "rating")
    return value if isinstance(value, int) and not isinstance(value, bool) and value in scale else None
