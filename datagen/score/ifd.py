"""Instruction-Following Difficulty (IFD) of Li et al. (2023), "From Quantity to Quality" (Cherry LLM).

``IFD = s(A | Q) / s(A)``: the mean token loss of the answer given the instruction, divided by the
mean token loss of the answer alone, both teacher-forced with the same local model
(:meth:`datagen.llm.local.LocalLLM.answer_nll`). A low IFD means the instruction makes the answer
much easier to predict (little left to learn); IFD > 1 means the instruction makes the answer
*harder* to predict than no instruction at all, which the paper reads as a misaligned pair.

The prompt side is the record's whole prompt (system message and history included, rendered by the
model's chat template); the answer is its final assistant turn, cut to ``max_answer_chars``
characters (the cut answer is scored in both terms, so the ratio stays well defined; Cherry LLM
cuts at 512 tokens). Both losses are cached on disk, keyed by the model id and the sha256 of what
was scored, so a rerun scores nothing twice, and a shared answer's unconditional loss is scored once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

from datagen.core.record import Record
from datagen.core.kvcache import KVCache, sha_key

_CHUNK = 64  # scored rows per committed cache write


class AnswerScorer(Protocol):
    """What IFD needs from a backend: the local LLM's teacher-forced answer losses."""

    model_id: str

    def answer_nll(self, prompts: Sequence[Any] | None, answers: Sequence[str]) -> list[Any]: ...


@dataclass(frozen=True)
class IFDResult:
    ifd: float
    nll_given_instruction: float
    nll_alone: float
    tokens: int


class IFDScorer:
    """Computes IFD for records with ``scorer`` (e.g. a LocalLLM), caching losses in
    ``cache_dir/scores/answer_nll.sqlite``."""

    def __init__(self, scorer: AnswerScorer, cache_dir: Path, max_answer_chars: int = 2000) -> None:
        self.scorer = scorer
        self.max_answer_chars = max_answer_chars
        self.cache = KVCache(Path(cache_dir) / "scores" / "answer_nll.sqlite")
        self.computed = 0  # losses actually computed by the model (cache misses)

    def score(self, records: Sequence[Record]) -> list[IFDResult | str]:
        """One result per record, or an error message when its IFD cannot be computed."""
        answers = [r.response[: self.max_answer_chars] for r in records]
        prompts = [[(m.role, m.content) for m in r.prompt_messages()] for r in records]
        mid = self.scorer.model_id
        cond_keys = [sha_key("given", mid, json.dumps(p, ensure_ascii=False), a) for p, a in zip(prompts, answers)]
        alone_keys = [sha_key("alone", mid, a) for a in answers]
        todo = {k: (p, a) for k, p, a in zip(cond_keys, prompts, answers) if a}
        todo.update({k: (None, a) for k, a in zip(alone_keys, answers) if a})
        losses = self._losses(todo)
        return [
            _ifd(losses.get(c), losses.get(u)) if a else "no answer to score"
            for c, u, a in zip(cond_keys, alone_keys, answers)
        ]

    def _losses(self, wanted: dict[str, tuple[list[tuple[str, str]] | None, str]]) -> dict[str, tuple[float, int]]:
        """(mean nll, tokens) per key: cached ones read, the others computed and stored."""
        found = {k: tuple(json.loads(v)) for k, v in self.cache.get_many(list(wanted)).items()}
        misses = [k for k in wanted if k not in found]
        for i in range(0, len(misses), _CHUNK):
            chunk = misses[i : i + _CHUNK]
            results = self.scorer.answer_nll([wanted[k][0] for k in chunk], [wanted[k][1] for k in chunk])
            rows = [(k, json.dumps([r.nll, r.tokens]).encode()) for k, r in zip(chunk, results)]
            self.cache.put_many(rows)
            found.update((k, (r.nll, r.tokens)) for k, r in zip(chunk, results))
            self.computed += len(chunk)
        return found  # type: ignore[return-value]


def _ifd(given: tuple[float, int] | None, alone: tuple[float, int] | None) -> IFDResult | str:
    if given is None or alone is None:
        return "loss missing"
    (nll_q, tokens), (nll_a, _) = given, alone
    if tokens == 0 or not math.isfinite(nll_q) or not math.isfinite(nll_a):
        return f"non-finite answer loss (given instruction {nll_q}, alone {nll_a}, {tokens} tokens)"
    if nll_a <= 0:
        return f"answer loss alone is {nll_a}: IFD undefined"
    return IFDResult(nll_q / nll_a, nll_q, nll_a, tokens)
