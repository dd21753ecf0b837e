"""Cheap per-record checks on an (instruction, response) pair, each with its own reason code.

=====================  =============================================================================
code                   fires when
=====================  =============================================================================
empty_response         the record has no final assistant turn, or it is blank
response_too_short     fewer than ``min_response_words`` words (CJK characters count one each), or
                       tokens of ``tokenizer`` with ``length_unit: tokens``
response_too_long      more than ``max_response_words`` words (or tokens)
refusal                a refusal phrase at the start, or anywhere in a short response
echoes_instruction     the response equals / starts with / mostly repeats the instruction
truncated              finish_reason "length", an open code fence, or a long answer ending mid-sentence
language_mismatch      instruction and response in different languages (not for translation requests)
language_not_allowed   the instruction or the response is in a language outside ``languages``
blacklisted_task       the instruction asks for something a text model cannot do (images, audio...)
=====================  =============================================================================

``annotate`` writes ``flags["heuristics"]`` (the codes that fired, in the order above),
``flags["heuristics_evidence"]`` (code -> evidence: the matched phrase, the lengths, the
languages...) and the scores ``response_words``, ``instruction_words`` and ``echo_jaccard``
(and ``response_tokens`` with ``length_unit: tokens``). While a language check is on,
``flags["language"]`` holds the record's language (:func:`datagen.core.langid.identify`): the
response's when it is judged, else the instruction's, else ``""``; the report breaks the records
down by it.
``verdict`` drops a record on its first code. Every check can be switched off in the config
(:class:`~datagen.curate.config.HeuristicsConfig`); a switched-off check does not run.
"""

from __future__ import annotations

from typing import Any, Callable

from datagen.core.record import Record
from datagen.core import checks
from datagen.core.langid import NONE as NO_LANGUAGE
from datagen.curate.base import FilterContext, Verdict
from datagen.curate.config import HeuristicsConfig
from datagen.curate.stages.instructions import blacklisted
from datagen.core.progress import bar as progress_bar

CODES = (
    "empty_response", "response_too_short", "response_too_long", "refusal", "echoes_instruction",
    "truncated", "language_mismatch", "language_not_allowed", "blacklisted_task",
)
Check = Callable[[checks.Facts], checks.Evidence]
TOKENS_SCORE = "response_tokens"


def _length(cfg: HeuristicsConfig) -> tuple[str, Callable[[checks.Facts], int]]:
    """The response's length as the length checks count it: (unit, measure)."""
    if cfg.length_unit == "tokens":
        return "tokens", lambda f: int(f.rec.scores[TOKENS_SCORE])
    return "words", lambda f: f.response_words


def _too_short(cfg: HeuristicsConfig) -> Check:
    lo = cfg.min_response_words or 0
    unit, n = _length(cfg)
    return lambda f: {unit: n(f), "min": lo} if n(f) < lo else None


def _too_long(cfg: HeuristicsConfig) -> Check:
    hi = cfg.max_response_words or 0
    unit, n = _length(cfg)
    return lambda f: {unit: n(f), "max": hi} if n(f) > hi else None


def _blacklisted(f: checks.Facts) -> checks.Evidence:
    word = blacklisted(f.instruction)
    return {"word": word} if word else None


def build_checks(cfg: HeuristicsConfig) -> list[tuple[str, Check]]:
    """The enabled checks after ``empty_response``, in code order."""
    allowed = frozenset(cfg.languages or ())
    table: list[tuple[str, bool, Check]] = [
        ("response_too_short", cfg.min_response_words is not None, _too_short(cfg)),
        ("response_too_long", cfg.max_response_words is not None, _too_long(cfg)),
        ("refusal", cfg.refusal, lambda f: checks.refusal(f, cfg.refusal_max_words)),
        ("echoes_instruction", cfg.echo, lambda f: checks.echoes(f, cfg.echo_jaccard)),
        ("truncated", cfg.truncated, lambda f: checks.truncated(f, cfg.truncated_min_words)),
        ("language_mismatch", cfg.language_mismatch,
         lambda f: checks.language_mismatch(f, cfg.language_min_letters, cfg.language_min_confidence)),
        ("language_not_allowed", bool(cfg.languages),
         lambda f: checks.language_not_allowed(f, allowed, cfg.language_min_letters, cfg.language_min_confidence)),
        ("blacklisted_task", cfg.blacklisted_task, _blacklisted),
    ]
    return [(code, fn) for code, on, fn in table if on]


class Heuristics:
    name = "heuristics"
    streaming = "records"  # runs over shards of its input on disk (datagen.curate.shards)
    score_names: tuple[str, ...] = ("response_words", "instruction_words", "echo_jaccard")

    def __init__(self, config: HeuristicsConfig | None = None) -> None:
        self.config = config or HeuristicsConfig()
        self.checks = build_checks(self.config)
        self.languages = self.config.language_mismatch or bool(self.config.languages)
        self.tokenizer = None
        if self.config.length_unit == "tokens":
            from datagen.curate.stages.tokens import default_name, load

            self.tokenizer = load(self.config.tokenizer)  # once per process
            self.tokenizer_name = self.config.tokenizer or default_name()
            self.score_names = (*self.score_names, TOKENS_SCORE)

    def flag(self, rec: Record, tokens: int | None = None) -> dict[str, dict[str, Any]]:
        """Code -> evidence for every enabled check ``rec`` fails; also sets its scores.
        ``tokens``: the response's token count, when the caller counted a batch at once."""
        if self.tokenizer is not None:
            from datagen.curate.stages.tokens import count

            rec.scores[TOKENS_SCORE] = float(count(self.tokenizer, [rec.response])[0] if tokens is None else tokens)
        f = checks.Facts.of(rec)
        rec.scores["response_words"] = float(f.response_words)
        rec.scores["instruction_words"] = float(f.instruction_words)
        rec.scores["echo_jaccard"] = round(f.echo_jaccard, 4)
        if self.languages:
            langs = f.languages(self.config.language_min_letters, self.config.language_min_confidence)
            rec.flags["language"] = (langs.get("response") or langs.get("instruction") or NO_LANGUAGE).code
        if not f.response.strip():
            return {"empty_response": {"has_answer": rec.has_answer}} if self.config.empty_response else {}
        found: dict[str, dict[str, Any]] = {}
        for code, check in self.checks:
            ev = check(f)
            if ev is not None:
                found[code] = ev
        return found

    def annotate(self, records: list[Record], ctx: FilterContext) -> None:
        counts: list[int | None] = [None] * len(records)
        if self.tokenizer is not None:
            from datagen.curate.stages.tokens import count

            counts = list(count(self.tokenizer, [rec.response for rec in records]))
        with progress_bar(len(records), "heuristics", show=ctx is None or ctx.progress, leave=False) as bar:
            for rec, n in zip(records, counts):
                found = self.flag(rec, n)
                rec.flags[self.name] = list(found)
                if found:
                    rec.flags[f"{self.name}_evidence"] = found
                else:
                    rec.flags.pop(f"{self.name}_evidence", None)
                bar.update(1)

    def verdict(self, record: Record) -> Verdict:
        codes = record.flags.get(self.name) or []
        if not codes:
            return None
        code = codes[0]
        return code, dict(record.flags.get(f"{self.name}_evidence", {}).get(code, {}))

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "checks": ["empty_response"] * self.config.empty_response + [c for c, _ in self.checks],
               **self.config.model_dump()}
        if self.tokenizer is not None:
            out["tokenizer"] = self.tokenizer_name
        return out
