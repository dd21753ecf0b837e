"""The quality stage: model-based scores of each record, and thresholds on them.

Scorers (``QualityConfig.scorers``), each writing raw scores into ``record.scores``:

* ``judge``: an AlpaGasus-style LLM judge rates the answer 1-5 with ``prompts/distill/judge.j2``
  (the template best-of-n distillation uses, so both share cached ratings). ``scores["judge"]`` is
  the expected rating over the judge's probabilities for "1".."5" (:mod:`datagen.score.rating`);
  ``scores["judge_parsed"]`` the digit written in its reply when there is one;
  ``flags["judge"]`` the evidence (method, probabilities, digit mass, reply).
* ``ifd``: instruction-following difficulty (:mod:`datagen.score.ifd`) with a local model:
  ``scores["ifd"]``, ``scores["nll_given_instruction"]``, ``scores["nll_alone"]``, and
  ``flags["ifd_gt_1"] = True`` when IFD > 1 (misaligned in Cherry LLM's reading).
* ``complexity``: the judge LLM's expected 1-6 complexity rating of the instruction
  (``prompts/quality/complexity.j2``; a proxy for DEITA's scorer, see
  :mod:`datagen.score.complexity`), evidence in ``flags["complexity"]``.
* ``complexity_features``: a model-free surface score in [0, 1], breakdown in
  ``flags["complexity_features"]``.

A record a scorer cannot score gets ``flags["quality_error"][scorer]`` (the reason) and no score:
never a default. ``verdict`` drops it as ``score_failed``; otherwise it applies the thresholds
(``min_judge`` -> ``low_judge``, ``max_ifd`` -> ``ifd_above_max``, ``min_complexity`` ->
``low_complexity``, ``min_complexity_features`` -> ``low_complexity_features``) to the stored
scores, so changing a threshold re-runs nothing. Reruns are cheap anyway: judge and complexity
requests go through the LLM request cache, IFD losses through an on-disk cache.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from datagen.core.actors import ActorResources
from datagen.core.errors import UserError
from datagen.core.record import Record
from datagen.curate.base import FilterContext, Verdict
from datagen.score.complexity import COMPLEXITY_SCALE, COMPLEXITY_TEMPLATE, complexity_features
from datagen.score.ifd import AnswerScorer, IFDScorer
from datagen.score.rating import MIN_DIGIT_MASS, Rating, rate, rating_params

Scorer = Literal["judge", "ifd", "complexity", "complexity_features"]
JUDGE_TEMPLATE = "distill/judge"
JUDGE_SCALE = range(1, 6)
ERROR_FLAG = "quality_error"
# threshold field -> (score key, "min" | "max", reason code)
THRESHOLDS: dict[str, tuple[str, str, str]] = {
    "min_judge": ("judge", "min", "low_judge"),
    "max_ifd": ("ifd", "max", "ifd_above_max"),
    "min_complexity": ("complexity", "min", "low_complexity"),
    "min_complexity_features": ("complexity_features", "min", "low_complexity_features"),
}
# scorer -> the scores it writes
SCORES: dict[str, tuple[str, ...]] = {
    "judge": ("judge", "judge_parsed"),
    "ifd": ("ifd", "nll_given_instruction", "nll_alone"),
    "complexity": ("complexity",),
    "complexity_features": ("complexity_features",),
}
_SCORE_KEYS = tuple(k for keys in SCORES.values() for k in keys)
_FLAG_KEYS = ("judge", "ifd", "ifd_gt_1", "complexity", "complexity_features", ERROR_FLAG)


class QualityConfig(ActorResources):
    """Settings of :class:`QualityStage`. A threshold of None is not applied. ``num_cpus``,
    ``num_gpus``, ``actors``: its scoring actors under ``--executor ray``."""

    model_config = ConfigDict(extra="forbid")

    scorers: list[Scorer] = Field(default_factory=lambda: ["judge", "ifd", "complexity"], min_length=1)
    judge_template: str = JUDGE_TEMPLATE
    complexity_template: str = COMPLEXITY_TEMPLATE
    ifd_model: str | None = Field(None, description="local model for IFD; default: the judge's model if it is local, else the embedded SmolLM2")
    ifd_batch_size: int = Field(8, ge=1, description="batch size when the stage builds its own IFD model")
    ifd_max_answer_chars: int = Field(2000, ge=1, description="answers are cut to this many characters before IFD scoring")
    min_rating_mass: float = Field(MIN_DIGIT_MASS, ge=0, le=1, description=(
        "least probability the judge must put on the scale's digits for an expected rating; below it the digit it "
        "wrote counts, or none (a weak judge such as the embedded SmolLM2 puts about 5% there: 0 accepts that)"))
    min_judge: float | None = None
    max_ifd: float | None = 1.0
    min_complexity: float | None = None
    min_complexity_features: float | None = None

    @model_validator(mode="after")
    def _thresholds_need_scorers(self) -> "QualityConfig":
        for name, (score, _, _) in THRESHOLDS.items():  # defaults (max_ifd) apply only with their scorer
            if name in self.model_fields_set and getattr(self, name) is not None and score not in self.scorers:
                raise ValueError(f"{name} is set but scorer {score!r} is not in scorers {self.scorers}")
        return self


class QualityStage:
    """Scores records with the configured scorers; ``verdict`` applies the thresholds. A
    per-record stage: the filter streams it a batch at a time (:mod:`datagen.curate.shards`), in
    this process or, on Ray, on actors that each load its models once."""

    name = "quality"
    streaming = "batches"

    def __init__(self, config: QualityConfig | None = None, **overrides: Any) -> None:
        self.config = QualityConfig.model_validate({**(config.model_dump(exclude_unset=True) if config else {}), **overrides})
        self._llm: Any = None
        self._ifd: IFDScorer | None = None

    @property
    def score_names(self) -> list[str]:
        """The scores this configuration writes (for the pipeline's score distributions)."""
        return [k for s in self.config.scorers for k in SCORES[s]]

    def describe(self) -> dict[str, Any]:
        from datagen.core import prompts

        templates = {t: prompts.load(t).sha for t in (self.config.judge_template, self.config.complexity_template)}
        return {"name": self.name, **self.config.settings(), "templates": templates}

    # -- annotate ------------------------------------------------------------------------------

    def annotate(self, records: list[Record], ctx: FilterContext) -> None:
        for rec in records:
            for key in _SCORE_KEYS:
                rec.scores.pop(key, None)
            for key in _FLAG_KEYS:
                rec.flags.pop(key, None)
        if not records:
            return
        scorers = self.config.scorers
        if "judge" in scorers:
            self._rate(records, ctx, "judge")
        if "complexity" in scorers:
            self._rate(records, ctx, "complexity")
        if "ifd" in scorers:
            self._score_ifd(records, ctx)
        if "complexity_features" in scorers:
            for rec in records:
                feats = complexity_features(rec.instruction)
                rec.scores["complexity_features"] = feats["score"]
                rec.flags["complexity_features"] = feats
        failed = Counter(k for r in records for k in r.flags.get(ERROR_FLAG, {}))
        ctx.stats.extra.setdefault("quality", {}).update({f"{k}_failed": n for k, n in failed.items()})
        # which model produced which score (the pipeline puts this in the manifest), and what
        # the judge cost
        models: dict[str, Any] = {}
        if self._llm is not None:
            models["judge"] = self._llm.describe()
            ctx.stats.extra["llm"] = self._llm.usage.to_dict()
        if self._ifd is not None:
            models["ifd"] = {"model": self._ifd.scorer.model_id, "backend": "local"}
        ctx.stats.extra["models"] = models

    def _rate(self, records: list[Record], ctx: FilterContext, scorer: str) -> None:
        """Judge (answer quality, 1-5) or complexity (instruction, 1-6) ratings by the LLM."""
        from datagen.core import prompts
        from datagen.llm.base import ChatRequest

        llm = self._judge_llm(ctx)
        if scorer == "judge":
            from datagen.score.judge import JudgeSelector

            selector = JudgeSelector(llm, prompts.load(self.config.judge_template))
            todo = [r for r in records if r.response.strip()]
            for rec in records:
                if not rec.response.strip():
                    _fail(rec, "judge", "no answer to judge")
            requests = [selector.request(r, r.response) for r in todo]
            scale = JUDGE_SCALE
        else:
            template = prompts.load(self.config.complexity_template)
            todo = list(records)
            requests = [ChatRequest.of([("user", template.render(instruction=r.instruction))]) for r in todo]
            scale = COMPLEXITY_SCALE
        completions = llm.generate(requests, rating_params(scale)) if requests else []
        for rec, comp in zip(todo, completions):
            _store_rating(rec, scorer, rate(comp, scale, self.config.min_rating_mass))
            rec.flags[scorer]["model"] = comp.model or llm.model_id

    def _score_ifd(self, records: list[Record], ctx: FilterContext) -> None:
        if self._ifd is None:
            self._ifd = IFDScorer(self._ifd_model(ctx), ctx.cache_dir, self.config.ifd_max_answer_chars)
        for rec, result in zip(records, self._ifd.score(records)):
            if isinstance(result, str):
                _fail(rec, "ifd", result)
                continue
            rec.scores.update(ifd=round(result.ifd, 6), nll_given_instruction=round(result.nll_given_instruction, 6), nll_alone=round(result.nll_alone, 6))
            rec.flags["ifd"] = {"model": self._ifd.scorer.model_id}
            if result.ifd > 1:
                rec.flags["ifd_gt_1"] = True

    def _judge_llm(self, ctx: FilterContext) -> Any:
        if self._llm is None:
            if ctx.llm_factory is None:
                raise UserError("the quality stage's judge and complexity scorers need an LLM (none configured)")
            self._llm = ctx.llm_factory()
        return self._llm

    def _ifd_model(self, ctx: FilterContext) -> AnswerScorer:
        if self.config.ifd_model is None and ctx.llm_factory is not None:
            llm = self._judge_llm(ctx)
            if hasattr(llm, "answer_nll"):  # a local backend (CachedLLM forwards it)
                return llm
        from datagen.llm.local import LocalLLM

        return LocalLLM(self.config.ifd_model or "smollm2", batch_size=self.config.ifd_batch_size)

    # -- verdict -------------------------------------------------------------------------------

    def verdict(self, record: Record) -> Verdict:
        errors = record.flags.get(ERROR_FLAG)
        if errors:
            return "score_failed", {"errors": errors}
        for name, (score, kind, reason) in THRESHOLDS.items():
            threshold = getattr(self.config, name)
            if threshold is None or score not in self.config.scorers:
                continue
            value = record.scores.get(score)
            if value is None:
                return "score_failed", {"score": score, "error": "not scored (annotate with this scorer first)"}
            if (value < threshold) if kind == "min" else (value > threshold):
                return reason, {"score": score, "value": value, "threshold": threshold}
        return None


def _fail(rec: Record, scorer: str, reason: str) -> None:
    rec.flags.setdefault(ERROR_FLAG, {})[scorer] = reason


def _store_rating(rec: Record, scorer: str, rating: Rating) -> None:
    rec.flags[scorer] = rating.evidence()
    if rating.value is None:
        _fail(rec, scorer, f"no rating in the reply ({rating.method}): {rating.reply!r}")
        return
    rec.scores[scorer] = rating.value
    if scorer == "judge" and rating.parsed is not None:
        rec.scores["judge_parsed"] = float(rating.parsed)
