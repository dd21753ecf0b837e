"""Strong-model distillation: a teacher model answers the prompts, optionally best-of-n.

Each input record's prompt (everything before its final assistant turn, so a multi-turn
conversation keeps its history and only its last answer is regenerated) goes to the teacher; the
answer becomes the new final assistant turn. The new record points to its prompt record through
``parent_id`` and names the teacher, the system-prompt template and its hash in ``meta``.

With ``--n K`` (K > 1) the teacher draws K candidate answers per prompt, each with its own seed,
and a :class:`Selector` keeps the best one. The default selector, :class:`JudgeSelector`, asks a
judge model to rate each answer from 1 to 5 (``prompts/distill/judge.j2``, AlpaGasus-style), read
by :func:`datagen.score.rating.rate`: the expected rating under the judge's probabilities for
the tokens "1".."5" when the backend returns top logprobs, else the digit in its reply. A candidate whose rating cannot be read
gets no score (recorded in ``meta``, never a default); the best scored candidate wins, ties going
to the lowest index. The kept record's ``meta["best_of_n"]`` holds every candidate's score, the
judge template's name and hash, and the tokens spent answering and judging. The losers go to
``rejected.jsonl`` as ``not_best_of_n`` with their score and the winner's. When the judge could
rate no candidate of a prompt, the judge's failure does not cost the prompt its answer: the first
valid candidate is kept, and ``meta["best_of_n"]["winner_reason"]`` says so (``stats.json``
counts these as ``kept_unjudged``).

Stages and their ledgers (``in == out + rejected`` for each):

* ``distill``: candidate answers (prompts x K). Rejected: ``llm_error``, ``empty_answer``.
* ``distill.best_of_n`` (K > 1 only): the candidates that came back. Out: one winner per prompt.
  Rejected: ``not_best_of_n``.

Work is split into parts of ``chunk_size`` prompts. Each finished part is sealed in the run
directory, and every answer and rating is in the request cache the moment it arrives, so an
interrupted run picks up where it stopped without paying twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from pydantic import BaseModel, ConfigDict, Field

from datagen.core.runner import Batch, Context, run_step
from datagen.score.judge import Score, Selector, usage_of
from datagen.llm.base import ChatRequest, Completion, GenParams, LLM
from datagen.core.record import Message, Record, Rejection

if TYPE_CHECKING:
    from datagen.core.prompts import Template

STAGE = "distill"
SELECT_STAGE = "distill.best_of_n"
JUDGE_TEMPLATE = "distill/judge"


class Settings(BaseModel):
    """Distillation's settings; the command's flags are derived from these fields
    (:func:`datagen.core.settings.add_flags`)."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(1, ge=1, description=(
        "candidate answers per prompt, each with its own seed; with K > 1 a judge rates them 1-5 and only the best is kept "
        "(1: no judging)"), json_schema_extra={"metavar": "K"})
    judge_prompt: str = Field(JUDGE_TEMPLATE, description="prompt template the judge rates each candidate with (best-of-n)")
    system_prompt: str = Field("distill/system", description="prompt template for the teacher's system message, or 'none'")
    chunk_size: int = Field(64, ge=1, description="records per resumable part")


@dataclass
class Teacher:
    """A model plus how we prompt it. Generators reuse this to answer their instructions."""

    llm: LLM
    params: GenParams
    system_prompt: str | None = None
    template: dict[str, str] | None = None  # {"name":..., "sha":...} of the system prompt file

    def requests(self, rec: Record, samples: int = 1) -> list[ChatRequest]:
        msgs: list[Message] = rec.prompt_messages()
        if self.system_prompt and msgs[0].role != "system":
            msgs = [Message(role="system", content=self.system_prompt)] + msgs
        base = self.params.seed or 0
        return [ChatRequest.of(msgs, seed=base + j if samples > 1 else None) for j in range(samples)]

    def to_record(self, rec: Record, comp: Completion, source: str | None = None, **meta: Any) -> Record:
        m = {
            **{k: v for k, v in rec.meta.items() if k not in ("usage", "finish_reason", "teacher")},
            "teacher": self.llm.model_id,
            "finish_reason": comp.finish_reason,
            "usage": usage_of(comp),
            **meta,
        }
        if self.template:
            m["teacher_prompt"] = self.template
        return rec.with_answer(
            comp.text.strip(),
            source=source or f"distill:{self.llm.model_id}",
            parent_id=rec.id,
            meta=m,
        )


def load_system_prompt(name: str | None) -> tuple[str | None, dict[str, str] | None]:
    """The rendered system prompt and its ``{"name", "sha"}``; (None, None) for no name or 'none'."""
    if not name or name.lower() == "none":
        return None, None
    t = load_template(name)
    return t.render(), {"name": t.name, "sha": t.sha}


def load_template(name: str) -> Template:
    from datagen.core import prompts
    from datagen.core.errors import UserError

    try:
        return prompts.load(name)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None


def judge_completion(comp: Completion) -> tuple[str, dict[str, Any]] | None:
    """Reason code and evidence when a teacher completion cannot become an answer."""
    if not comp.ok:
        return "llm_error", {"error": comp.error}
    if not comp.text.strip():
        return "empty_answer", {"finish_reason": comp.finish_reason}
    return None


# -- choosing the best of n ----------------------------------------------------------------------

# -- the generator -------------------------------------------------------------------------------
@dataclass
class _Answers:
    """The candidates drawn for one prompt."""

    prompt: Record
    completions: list[Completion]
    valid: list[tuple[int, Record]] = field(default_factory=list)  # (candidate index, answered record)
    failed: dict[int, str] = field(default_factory=dict)  # candidate index -> rejection reason


@dataclass
class Distill:
    """Answers records with ``teacher``; with ``n > 1``, keeps the best of n by ``selector``.
    ``run(run_dir, records)`` does (or resumes) the whole run."""

    teacher: Teacher
    n: int = 1
    selector: Selector | None = None
    chunk_size: int = 64
    progress: bool = True

    def __post_init__(self) -> None:
        if self.n < 1 or self.chunk_size < 1:
            raise ValueError("n and chunk_size must be >= 1")
        if self.n > 1 and self.selector is None:
            raise ValueError("best-of-n (n > 1) needs a selector")

    def answer_chunk(self, chunk: Sequence[Record], ctx: Context) -> list[Record]:
        """Answer one chunk: the kept records; rejections and counts go to ``ctx``."""
        st = ctx.stats
        reqs = [r for rec in chunk for r in self.teacher.requests(rec, self.n)]
        comps = self.teacher.llm.generate(reqs, self.teacher.params)
        st.extra["tokens"] = _token_counts("answer", [usage_of(c) for c in comps])
        answers: list[_Answers] = []
        st.seen(STAGE, len(comps))
        for p, rec in enumerate(chunk):
            a = _Answers(rec, comps[p * self.n:(p + 1) * self.n])
            for j, comp in enumerate(a.completions):
                verdict = judge_completion(comp)
                if verdict:
                    a.failed[j] = verdict[0]
                    ctx.reject(rec, verdict[0], {**verdict[1], "candidate": j} if self.n > 1 else verdict[1], stage=STAGE)
                else:
                    a.valid.append((j, self.teacher.to_record(rec, comp, **({"candidate": j} if self.n > 1 else {}))))
            st.kept(STAGE, len(a.valid))
            answers.append(a)
        if self.n == 1:
            return [r for a in answers for _, r in a.valid]
        return self._select([a for a in answers if a.valid], ctx)

    def _select(self, answers: list[_Answers], ctx: Context) -> list[Record]:
        """Best of n over each prompt's valid candidates; the others are rejected with evidence."""
        assert self.selector is not None
        st = ctx.stats
        picks = self.selector.pick_best_many([(a.prompt, [r.response for _, r in a.valid]) for a in answers])
        judge = self.selector.describe()
        kept: list[Record] = []
        st.stage(SELECT_STAGE)
        all_scores = [s for _, scores in picks for s in scores]
        st.extra["judge_methods"] = dict(Counter(s.method for s in all_scores))
        st.extra["tokens"].update(_token_counts("judge", [{"prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens} for s in all_scores]))
        for a, (win, scores) in zip(answers, picks):
            st.seen(SELECT_STAGE, len(a.valid))
            unjudged = win is None  # the judge gave no candidate a score: keep the first valid one
            if unjudged:
                win = 0
                st.extra["kept_unjudged"] = st.extra.get("kept_unjudged", 0) + 1
            winner = a.valid[win][0]
            winner_score = scores[win].value
            for k, ((j, cand), s) in enumerate(zip(a.valid, scores)):
                if k == win:
                    summary = self._summary(a, scores, winner, judge)
                    if unjudged:
                        summary["winner_reason"] = "no_judge_score: the judge rated no candidate; the first valid one is kept"
                    kept.append(cand.model_copy(update={"meta": {**cand.meta, "best_of_n": summary}}))
                    st.kept(SELECT_STAGE)
                    continue
                evidence = {"candidate": j, "score": s.value, "winner_score": winner_score, "winner_index": winner}
                if unjudged:
                    evidence["judge"] = s.to_dict()
                ctx.reject(cand, "not_best_of_n", evidence, stage=SELECT_STAGE)
        return kept

    def _summary(self, a: _Answers, scores: list[Score], winner: int, judge: dict[str, Any]) -> dict[str, Any]:
        """``meta["best_of_n"]`` of a kept record: every candidate's score (None for those that
        failed or could not be rated), the judge, and the tokens spent on the prompt."""
        candidates: list[dict[str, Any]] = [{"index": j, "score": None, "rejected": a.failed[j]} for j in sorted(a.failed)]
        candidates += [{"index": j, "score": s.value, **s.to_dict()} for (j, _), s in zip(a.valid, scores)]
        candidates.sort(key=lambda c: c["index"])
        return {
            "n": self.n,
            "winner": winner,
            "scores": [c["score"] for c in candidates],
            "candidates": candidates,
            "judge": judge,
            "usage": {
                "answering": _sum_usage(usage_of(c) for c in a.completions),
                "judging": _sum_usage({"prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens} for s in scores),
            },
        }

    def run(self, run: Any, records: Sequence[Record], read_rejects: Sequence[Rejection] = (), manifest: dict[str, Any] | None = None) -> dict[str, Any]:
        """Answer ``records`` in ``run`` (a :class:`~datagen.core.rundir.RunDir`) through the runner,
        one part per ``chunk_size`` prompts, resuming from its sealed parts. Returns the final stats."""
        step = _DistillStep(self, self._chunks(records))
        return run_step(run, step, total=len(records), read=(len(records), read_rejects), llms=[self.teacher.llm],
                        progress=self.progress, manifest=manifest)

    def _chunks(self, records: Sequence[Record]) -> list[Sequence[Record]]:
        return [records[i:i + self.chunk_size] for i in range(0, len(records), self.chunk_size)]

    def answer_on(self, executor: Any, cfg: Any, run: Any, records: Sequence[Record]) -> dict[str, Any]:
        """Before :meth:`run`, under ``--executor ray``: the chunks of ``records`` not sealed in
        ``run`` answered by tasks on ``executor`` (:mod:`datagen.generate.remote`), each a backend
        built from ``cfg``, their completions stored in the teacher's request cache. Returns
        what the tasks did, for the manifest."""
        from datagen.generate.remote import answer_chunks

        chunks = self._chunks(records)
        pending = [i for i in range(len(chunks)) if not run.part_done(i + 1)]  # part 0 holds the read
        judge = self.selector.describe().get("template", {}).get("name") if self.selector is not None and self.n > 1 else None
        spec = {"params": self.teacher.params.to_dict(), "system": self.teacher.system_prompt, "template": self.teacher.template,
                "n": self.n, "judge": judge}
        return answer_chunks(executor, self.teacher.llm, cfg, answer_remote, spec, chunks, pending,
                             lambda chunk: [r for rec in chunk for r in self.teacher.requests(rec, self.n)], self.teacher.params, self.progress)

    def describe(self) -> dict[str, Any]:
        """The manifest's account of the run: models, sampling seed, n, selector, prompt templates."""
        llm = self.teacher.llm
        templates = {self.teacher.template["name"]: self.teacher.template["sha"]} if self.teacher.template else {}
        doc: dict[str, Any] = {"models": {"teacher": llm.describe()}, "seeds": {"sampling": self.teacher.params.seed}, "n": self.n}
        if self.selector is not None and self.n > 1:
            judge = self.selector.describe()
            doc["selector"] = judge
            if "template" in judge:
                templates[judge["template"]["name"]] = judge["template"]["sha"]
        doc["prompt_templates"] = templates
        return doc


@dataclass
class _DistillStep:
    """Distillation as a runner step: a batch is a chunk of prompts, with no state between them."""

    distill: Distill
    chunks: list[Sequence[Record]]
    name: str = "distill"
    unit: str = "prompt"

    def batches(self) -> Iterator[Batch]:
        return (Batch(c, len(c)) for c in self.chunks)

    def process(self, batch: Batch, ctx: Context) -> list[Record]:
        return self.distill.answer_chunk(batch.items, ctx)

    def manifest(self) -> dict[str, Any]:
        return self.distill.describe()


def answer_remote(cfg: Any, spec: dict[str, Any], rows: list[str]) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, float]]:
    """A task of :meth:`Distill.answer_on`: one chunk of prompts (record JSON lines) answered, and
    judged when ``spec["n"]`` > 1, by a backend built from ``cfg``; returns the usable
    completions with their request keys, and the backend's usage."""
    from datagen.core import prompts
    from datagen.generate.remote import Recorder
    from datagen.llm import make_llm
    from datagen.score.judge import JudgeSelector

    llm = Recorder(make_llm(cfg))
    params = GenParams(**spec["params"])
    selector = JudgeSelector(llm, prompts.load(spec["judge"])) if spec["judge"] else None
    distill = Distill(Teacher(llm, params, spec["system"], spec["template"]), n=spec["n"], selector=selector, progress=False)
    distill.answer_chunk([Record.model_validate_json(r) for r in rows], Context(STAGE))
    return llm.recorded, llm.usage.to_dict()


def _token_counts(what: str, usages: list[dict[str, int]]) -> dict[str, int]:
    total = _sum_usage(usages)
    return {f"{what}_prompt_tokens": total["prompt_tokens"], f"{what}_completion_tokens": total["completion_tokens"]}


def _sum_usage(usages: Iterable[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for u in usages:
        total.update(u)
    return {"prompt_tokens": total["prompt_tokens"], "completion_tokens": total["completion_tokens"]}
