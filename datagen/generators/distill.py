"""Strong-model distillation: a teacher model answers the prompts, optionally best-of-n.

Each input record's prompt (everything before its final assistant turn, so a multi-turn
conversation keeps its history and only its last answer is regenerated) goes to the teacher; the
answer becomes the new final assistant turn. The new record points to its prompt record through
``parent_id`` and names the teacher, the system-prompt template and its hash in ``meta``.

With ``--n K`` (K > 1) the teacher draws K candidate answers per prompt, each with its own seed,
and a :class:`Selector` keeps the best one. The default selector, :class:`JudgeSelector`, asks a
judge model to rate each answer from 1 to 5 (``prompts/distill/judge.j2``, AlpaGasus-style), read
by :func:`datagen.filters.rating.rate`: the expected rating under the judge's probabilities for
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

import abc
import argparse
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ..filters.rating import RATING_PARAMS, rate
from ..llm.base import ChatRequest, Completion, GenParams, LLM
from ..record import Message, Record, Rejection
from ..stage import Stats

if TYPE_CHECKING:
    from ..prompts import Template

STAGE = "distill"
SELECT_STAGE = "distill.best_of_n"
JUDGE_TEMPLATE = "distill/judge"
SCALE = range(1, 6)


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


def usage_of(comp: Completion) -> dict[str, int]:
    return {"prompt_tokens": comp.prompt_tokens, "completion_tokens": comp.completion_tokens}


def load_system_prompt(name: str | None) -> tuple[str | None, dict[str, str] | None]:
    """The rendered system prompt and its ``{"name", "sha"}``; (None, None) for no name or 'none'."""
    if not name or name.lower() == "none":
        return None, None
    t = load_template(name)
    return t.render(), {"name": t.name, "sha": t.sha}


def load_template(name: str) -> Template:
    from .. import prompts
    from ..errors import UserError

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
    """A judge's completion as a :class:`Score` (the rating as :func:`~datagen.filters.rating.rate` reads it)."""
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

    def answer_chunk(self, chunk: Sequence[Record]) -> tuple[list[Record], list[Rejection], Stats]:
        """Answer one chunk: (kept records, rejections, stats)."""
        st = Stats()
        reqs = [r for rec in chunk for r in self.teacher.requests(rec, self.n)]
        comps = self.teacher.llm.generate(reqs, self.teacher.params)
        st.extra["tokens"] = _token_counts("answer", [usage_of(c) for c in comps])
        rejected: list[Rejection] = []
        answers: list[_Answers] = []
        st.seen(STAGE, len(comps))
        for p, rec in enumerate(chunk):
            a = _Answers(rec, comps[p * self.n:(p + 1) * self.n])
            for j, comp in enumerate(a.completions):
                verdict = judge_completion(comp)
                if verdict:
                    a.failed[j] = verdict[0]
                    st.rejected(STAGE, verdict[0])
                    evidence = {**verdict[1], "candidate": j} if self.n > 1 else verdict[1]
                    rejected.append(Rejection(stage=STAGE, reason=verdict[0], evidence=evidence, record=rec))
                else:
                    a.valid.append((j, self.teacher.to_record(rec, comp, **({"candidate": j} if self.n > 1 else {}))))
            st.kept(STAGE, len(a.valid))
            answers.append(a)
        if self.n == 1:
            return [r for a in answers for _, r in a.valid], rejected, st
        return self._select([a for a in answers if a.valid], st, rejected), rejected, st

    def _select(self, answers: list[_Answers], st: Stats, rejected: list[Rejection]) -> list[Record]:
        """Best of n over each prompt's valid candidates; the others are rejected with evidence."""
        assert self.selector is not None
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
                st.rejected(SELECT_STAGE, "not_best_of_n")
                rejected.append(Rejection(stage=SELECT_STAGE, reason="not_best_of_n", evidence=evidence, record=cand))
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
        """Answer ``records`` in ``run`` (a :class:`~datagen.rundir.RunDir`), resuming from its
        sealed parts, and finalize it. Returns the final stats."""
        from tqdm import tqdm

        run.write_read_part(len(records), read_rejects)
        cs = self.chunk_size
        chunks = [records[i:i + cs] for i in range(0, len(records), cs)]
        done = sum(len(c) for i, c in enumerate(chunks, start=1) if run.part_done(i))
        if done:
            print(f"resuming {run.path}: {done}/{len(records)} prompts already answered", file=sys.stderr)
        hidden = not self.progress or os.environ.get("DATAGEN_PROGRESS") == "0" or len(records) < 2
        llm = self.teacher.llm
        left = lambda: sum(len(c) for i, c in enumerate(chunks, start=1) if not run.part_done(i))  # noqa: E731
        with run.stops_resumably(left, len(records), "prompts"), \
                tqdm(total=len(records), initial=done, desc="distill", unit="prompt", file=sys.stderr, disable=hidden) as bar:
            for i, chunk in enumerate(chunks, start=1):
                if run.part_done(i):
                    continue
                t0, before = time.time(), llm.usage.to_dict()
                kept, rejected, st = self.answer_chunk(chunk)
                after = llm.usage.to_dict()
                st.extra["llm"] = {k: round(after[k] - before[k], 6) for k in after}
                st.extra["seconds"] = round(time.time() - t0, 3)
                run.write_part(i, kept, rejected, st)
                bar.update(len(chunk))
        templates = {self.teacher.template["name"]: self.teacher.template["sha"]} if self.teacher.template else {}
        doc: dict[str, Any] = {"models": {"teacher": llm.describe()}, "seeds": {"sampling": self.teacher.params.seed}, "n": self.n}
        if self.selector is not None and self.n > 1:
            judge = self.selector.describe()
            doc["selector"] = judge
            if "template" in judge:
                templates[judge["template"]["name"]] = judge["template"]["sha"]
        doc["prompt_templates"] = templates
        return run.finalize({**doc, **(manifest or {})}, n_parts=len(chunks) + 1)


def _token_counts(what: str, usages: list[dict[str, int]]) -> dict[str, int]:
    total = _sum_usage(usages)
    return {f"{what}_prompt_tokens": total["prompt_tokens"], f"{what}_completion_tokens": total["completion_tokens"]}


def _sum_usage(usages: Iterable[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for u in usages:
        total.update(u)
    return {"prompt_tokens": total["prompt_tokens"], "completion_tokens": total["completion_tokens"]}


# -- command line --------------------------------------------------------------------------------
def cli(args: argparse.Namespace) -> int:
    from ..commands import gen_params, llm_config, read_input
    from ..errors import UserError
    from ..llm import make_llm
    from ..rundir import RunDir, file_digest

    if args.n < 1 or args.chunk_size < 1:
        raise UserError("--n and --chunk-size must be >= 1")
    cfg = llm_config(args)
    params = gen_params(args)
    system, template = load_system_prompt(args.system_prompt)
    judge_template = load_template(args.judge_prompt) if args.n > 1 else None

    read_rejects: list[Rejection] = []
    records = read_input(args, read_rejects.append, require_answer=False)
    settings = {
        "input": str(args.input), "input_sha256": file_digest(args.input), "format": args.format,
        "limit": args.limit, "on_error": args.on_error, "llm": {"backend": cfg.backend, "model": cfg.model, "base_url": cfg.base_url},
        "params": params.to_dict(), "system_prompt": template, "n": args.n, "chunk_size": args.chunk_size,
        "judge": {"template": {"name": judge_template.name, "sha": judge_template.sha}, "params": RATING_PARAMS.to_dict()} if judge_template else None,
    }
    llm = make_llm(cfg)  # before the run directory: a server that does not serve --model is refused first
    run = RunDir(args.out, "distill", settings, force=args.force)
    selector = JudgeSelector(llm, judge_template) if judge_template else None
    distill = Distill(Teacher(llm, params, system, template), n=args.n, selector=selector, chunk_size=args.chunk_size)
    summary = distill.run(run, records, read_rejects, manifest={"llm_config": cfg.to_manifest()})
    print(f"distill: {summary['records']} answers, {summary['rejected']} rejected -> {args.out}", file=sys.stderr)
    return 0
