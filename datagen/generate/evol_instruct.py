"""Evol-Instruct (WizardLM): make instructions harder, round after round, and keep only the
evolutions that worked.

Each round takes the current pool of instructions and, for every one, picks an operation with a
seeded RNG (the same for the same seed, round and parent id on every run): one of the in-depth
rewrites (``add_constraints``, ``deepening``, ``concretizing``, ``increase_reasoning``,
``complicate_input``) or the in-breadth mutation (``breadth``). Each operation is a prompt file
under ``prompts/evol/``.

An evolution fails, and its parent goes back into the pool for the next round, when (the four
WizardLM elimination rules):

1. it gains no information over its parent (``no_information_gain``): the string is the same up to
   case, spacing and punctuation, or the model judges the two instructions equal
   (``prompts/evol/equality.j2``);
2. its answer is a short refusal (``refusal``): "sorry", "as an AI", "I cannot"... in < 80 words;
3. its answer is only punctuation and stop words (``stopwords_only``);
4. the new instruction copies the prompt's scaffolding (``copied_scaffolding``): "#Rewritten
   Prompt#", "given prompt", "created prompt"...

Besides these, an evolution or an answer that errored or came back empty is rejected with its own
reason, and an evolution that repeats an instruction already in the run is rejected as
``duplicate_instruction``. Every rejection goes to ``rejected.jsonl`` (stage ``evolve``) with the
operation, round, parent and the evidence. Survivors are answered by the distillation
:class:`~datagen.generate.distill.Teacher` and written, with their lineage (``parent_id``,
``meta.root_id``, ``meta.operation``, ``meta.round``), to ``records.jsonl``.

Each (round, chunk) is one sealed part of the run directory. On resume the pool of each round is
rebuilt from the sealed parts of the rounds before (survivors replace their parents, the parents of
failed evolutions stay), so the run continues exactly as it would have; every request is
deterministic, so the request cache makes redone work free.
"""

from __future__ import annotations

import random
from collections import defaultdict, deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from datagen.core.runner import Batch, Context, SealedPart, run_step
from datagen.llm.base import ChatRequest, Completion, GenParams, LLM
from datagen.core.stats import Stats
from datagen.score.equality import EQUALITY_SCHEMA, EQUALITY_TEMPLATE, NEAR_IDENTICAL, normalize, parse_equality, similarity
from datagen.generate.evol_rules import EVOLUTION_SCHEMA, copied_scaffolding, derive_seed, parse_evolution, refusal, stopwords_only

if TYPE_CHECKING:
    from datagen.core.record import Record, Rejection
    from datagen.generate.distill import Teacher

STAGE = "evolve"
DEPTH_OPERATIONS = ("add_constraints", "deepening", "concretizing", "increase_reasoning", "complicate_input")
OPERATIONS = DEPTH_OPERATIONS + ("breadth",)

class Settings(BaseModel):
    """Evol-Instruct's settings; the command's flags are derived from these fields
    (:func:`datagen.core.settings.add_flags`)."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(4, ge=1, description="evolution rounds; each evolves the survivors of the round before")
    operations: list[str] = Field(default_factory=lambda: list(OPERATIONS), description=(
        f"operations to draw from, comma-separated: {', '.join(OPERATIONS)}"), json_schema_extra={"metavar": "OPS"})
    answer: bool = Field(True, description="answer each evolution with the teacher (needed for the refusal and stop-word rules)")
    system_prompt: str = Field("distill/system", description="prompt template for the teacher's system message, or 'none'")
    chunk_size: int = Field(32, ge=1, description="instructions per resumable part")

    @field_validator("operations", mode="before")
    @classmethod
    def _operations(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.split(",")
        if isinstance(v, (list, tuple)):
            ops = list(dict.fromkeys(str(o).strip() for o in v if str(o).strip()))
            unknown = [o for o in ops if o not in OPERATIONS]
            if unknown or not ops:
                raise ValueError(f"unknown operation(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(OPERATIONS)}")
            return ops
        return v


# -- the generator -----------------------------------------------------------------------------
@dataclass
class _Attempt:
    parent: Record
    op: str
    candidate: Record | None = None
    rejection: Rejection | None = None
    survivor: Record | None = None
    judge: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvolInstruct:
    """Evolves a pool of instructions for ``rounds`` rounds. ``teacher`` answers the evolutions
    (rules 2 and 3 need an answer); without one, survivors are prompt-only records."""

    llm: LLM
    params: GenParams
    teacher: Teacher | None = None
    operations: Sequence[str] = OPERATIONS
    rounds: int = 4
    chunk_size: int = 32
    progress: bool = True
    before_round: Callable[[int, int, list[Sequence[Record]]], None] | None = None  # (round, its first part, its chunks)

    def __post_init__(self) -> None:
        from datagen.core import prompts

        self.operations = tuple(self.operations)
        self.templates = {op: prompts.load(f"evol/{op}") for op in self.operations}
        self.equality = prompts.load(EQUALITY_TEMPLATE)
        self.seed = self.params.seed or 0
        # on a server that can constrain its output, a {"instruction": ...} rewrite and an
        # {"verdict": ...} judgement: nothing to strip, nothing unclear
        self.evolve_params = replace(self.params, json_schema=EVOLUTION_SCHEMA)
        self.judge_params = replace(self.params, temperature=0.0, max_tokens=min(self.params.max_tokens, 16), json_schema=EQUALITY_SCHEMA)

    # -- bookkeeping ---------------------------------------------------------------------------
    def prompt_templates(self) -> dict[str, str]:
        out = {t.name: t.sha for t in self.templates.values()}
        out[self.equality.name] = self.equality.sha
        if self.teacher and self.teacher.template:
            out[self.teacher.template["name"]] = self.teacher.template["sha"]
        return out

    def pick(self, round_no: int, parent_id: str) -> str:
        return random.Random(f"evol|{self.seed}|{round_no}|{parent_id}").choice(self.operations)

    # -- one part: evolve a chunk of the pool --------------------------------------------------
    def evolve_requests(self, round_no: int, chunk: Sequence[Record]) -> list[ChatRequest]:
        """The chunk's first requests: one rewrite per member, by the operation it draws."""
        reqs = []
        for parent in chunk:
            prompt = self.templates[self.pick(round_no, parent.id)].render(instruction=parent.instruction)
            reqs.append(ChatRequest.of([("user", prompt)], seed=derive_seed(self.seed, round_no, parent.id, "evolve")))
        return reqs

    def evolve_chunk(self, round_no: int, chunk: Sequence[Record], seen: dict[str, str], ctx: Context) -> tuple[list[Record], list[Record]]:
        """Returns (survivors, the chunk's members for the next pool); rejections and counts go
        to ``ctx``. ``seen`` (normalized instruction -> record id) grows by the survivors."""
        from datagen.core.record import Rejection

        st = ctx.stats
        attempts = [_Attempt(parent=p, op=self.pick(round_no, p.id)) for p in chunk]

        def reject(a: _Attempt, reason: str, evidence: dict[str, Any], record: Record | None = None) -> None:
            ev = {"operation": a.op, "round": round_no, "parent_id": a.parent.id, "root_id": a.parent.meta.get("root_id") or a.parent.id, **evidence}
            a.rejection = Rejection(stage=STAGE, reason=reason, evidence=ev, record=record if record is not None else a.candidate)

        # 1. evolve
        reqs = self.evolve_requests(round_no, chunk)
        for a, comp in zip(attempts, self.llm.generate(reqs, self.evolve_params)):
            if not comp.ok:
                reject(a, "evolution_llm_error", {"error": comp.error})
                continue
            text = parse_evolution(comp.text)
            if not text:
                reject(a, "empty_evolution", {"raw": comp.text[:500], "finish_reason": comp.finish_reason})
                continue
            a.candidate = self._candidate(a, round_no, text, comp)
            phrase = copied_scaffolding(text)
            if phrase:
                reject(a, "copied_scaffolding", {"matched": phrase})
                continue
            sim = similarity(a.parent.instruction, text)
            if sim >= NEAR_IDENTICAL:
                reject(a, "no_information_gain", {"judged_by": "string", "verdict": "identical", "similarity": round(sim, 4)})

        # 2. rule 1: does the evolution gain information? the model judges ("unclear" passes:
        # an answer that is neither verdict is no evidence of equality; stats count them)
        verdicts: dict[str, int] = {}
        live = [a for a in attempts if a.rejection is None]
        reqs = [
            ChatRequest.of([("user", self.equality.render(first=a.parent.instruction, second=a.candidate.instruction))],
                           seed=derive_seed(self.seed, round_no, a.parent.id, "equality"))
            for a in live
        ]
        for a, comp in zip(live, self.llm.generate(reqs, self.judge_params) if reqs else []):
            if not comp.ok:
                reject(a, "judge_llm_error", {"error": comp.error})
                continue
            verdict = parse_equality(comp.text)
            a.judge = {"verdict": verdict, "text": comp.text.strip()[:300]}
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
            if verdict == "equal":
                reject(a, "no_information_gain", {"judged_by": "llm", "verdict": "equal", "judge_text": comp.text.strip()[:300]})

        # 3. answer, then rules 2 and 3 on the answer
        live = [a for a in attempts if a.rejection is None]
        if self.teacher is not None and live:
            reqs = [self.teacher.requests(a.candidate)[0] for a in live]  # type: ignore[arg-type]
            for a, comp in zip(live, self.teacher.llm.generate(reqs, self.teacher.params)):
                self._judge_answer(a, comp, reject)
        else:
            for a in live:
                a.survivor = a.candidate.model_copy(update={"meta": {**a.candidate.meta, "equality": a.judge}})  # type: ignore[union-attr]

        # 4. an instruction already in the run is no new data
        for a in attempts:
            if a.rejection is None and a.survivor is not None:
                key = normalize(a.survivor.instruction)
                if key in seen:
                    reject(a, "duplicate_instruction", {"duplicate_of": seen[key]}, record=a.survivor)
                    a.survivor = None
                else:
                    seen[key] = a.survivor.id

        survivors = [a.survivor for a in attempts if a.survivor is not None]
        rejections = [a.rejection for a in attempts if a.rejection is not None]
        next_pool = [a.survivor or a.parent for a in attempts]
        st.seen(STAGE, len(attempts))
        st.kept(STAGE, len(survivors))
        for r in rejections:
            st.rejected(STAGE, r.reason)
        counts: dict[str, dict[str, int]] = defaultdict(dict)
        for a in attempts:
            ok = int(a.survivor is not None)
            for name, key in (("by_operation", a.op), ("by_round", str(round_no))):
                counts[f"tried_{name}"][key] = counts[f"tried_{name}"].get(key, 0) + 1
                counts[f"passed_{name}"][key] = counts[f"passed_{name}"].get(key, 0) + ok
            if a.rejection is not None:
                k = f"{a.op}:{a.rejection.reason}"
                counts["rejected_by_operation_reason"][k] = counts["rejected_by_operation_reason"].get(k, 0) + 1
        st.extra.update(counts)
        st.extra["judge_verdicts"] = verdicts
        ctx.add_rejections(rejections)
        return survivors, next_pool

    def _candidate(self, a: _Attempt, round_no: int, text: str, comp: Completion) -> Record:
        from datagen.core.record import Record

        return Record.from_turns(
            text,
            source=f"evol:{a.op}",
            parent_id=a.parent.id,
            meta={
                "operation": a.op,
                "round": round_no,
                "root_id": a.parent.meta.get("root_id") or a.parent.id,
                "prompt_templates": self.prompt_templates_for(a.op),
                "evolution": {
                    "model": self.llm.model_id,
                    "finish_reason": comp.finish_reason,
                    "usage": {"prompt_tokens": comp.prompt_tokens, "completion_tokens": comp.completion_tokens},
                },
            },
        )

    def prompt_templates_for(self, op: str) -> dict[str, str]:
        t = self.templates[op]
        out = {t.name: t.sha, self.equality.name: self.equality.sha}
        if self.teacher and self.teacher.template:
            out[self.teacher.template["name"]] = self.teacher.template["sha"]
        return out

    def _judge_answer(self, a: _Attempt, comp: Completion, reject) -> None:
        from datagen.generate.distill import judge_completion

        assert self.teacher is not None and a.candidate is not None
        bad = judge_completion(comp)
        if bad:
            reason = "answer_llm_error" if bad[0] == "llm_error" else bad[0]
            reject(a, reason, bad[1])
            return
        answered = self.teacher.to_record(a.candidate, comp, source=a.candidate.source, equality=a.judge)
        answered = answered.model_copy(update={"parent_id": a.parent.id})  # lineage: the evolution's parent
        ref = refusal(answered.response)
        if ref:
            reject(a, "refusal", {**ref, "answer": answered.response[:300]}, record=answered)
        elif stopwords_only(answered.response):
            reject(a, "stopwords_only", {"answer": answered.response[:300]}, record=answered)
        else:
            a.survivor = answered

    # -- the whole run -------------------------------------------------------------------------
    def run(self, run: Any, pool: list[Record], read_rejects: Sequence[Rejection] = (), manifest: dict[str, Any] | None = None) -> dict[str, Any]:
        """Evolve ``pool`` in ``run`` (a :class:`~datagen.core.rundir.RunDir`) through the runner, one
        part per round and chunk, resuming from its sealed parts. Returns the final stats."""
        step = _EvolveStep(self, pool)
        return run_step(run, step, total=len(pool) * self.rounds, read=(len(pool), read_rejects),
                        llms=[self.llm] + ([self.teacher.llm] if self.teacher else []), progress=self.progress, manifest=manifest)

    def answer_on(self, executor: Any, cfg: Any, run: Any) -> dict[str, Any]:
        """Under ``--executor ray``: at the start of each round (inside :meth:`run`), the round's
        chunks not sealed in ``run`` answered by tasks on ``executor``
        (:mod:`datagen.generate.remote`; a chunk's requests do not depend on the other chunks of
        its round), their completions stored in the request cache of ``self.llm``. Returns the
        tasks' account, filled in as the rounds go, for the manifest."""
        from datagen.generate.remote import answer_chunks

        teacher = self.teacher
        spec = {"params": self.params.to_dict(), "operations": list(self.operations),
                "teacher": {"system": teacher.system_prompt, "template": teacher.template} if teacher else None}
        report: dict[str, Any] = {"executor": "ray", "tasks": 0, "usage": {}}

        def before_round(round_no: int, first: int, chunks: list[Sequence[Record]]) -> None:
            pending = [k for k in range(len(chunks)) if not run.part_done(first + k)]
            done = answer_chunks(executor, self.llm, cfg, evolve_remote, {**spec, "round": round_no}, chunks, pending,
                                 lambda chunk: self.evolve_requests(round_no, chunk), self.evolve_params, self.progress)
            report["tasks"] += done["tasks"]
            for k, v in done["usage"].items():
                report["usage"][k] = round(report["usage"].get(k, 0) + v, 6)

        self.before_round = before_round
        return report

    def describe(self) -> dict[str, Any]:
        """The manifest's account of the run: models, templates, operations, rounds, seed."""
        return {
            "models": {"evolver": self.llm.describe(), **({"teacher": self.teacher.llm.describe()} if self.teacher else {})},
            "prompt_templates": self.prompt_templates(),
            "operations": list(self.operations),
            "rounds": self.rounds,
            "seeds": {"sampling": self.seed},
        }


class _EvolveStep:
    """Evol-Instruct as a runner step: a batch is one chunk of one round's pool. Round ``r + 1``
    evolves what round ``r`` left (each member's survivor, or the member itself), so its batches
    exist only once round ``r``'s parts are processed or restored."""

    name, unit = "evolve", "evolution"

    def __init__(self, evol: EvolInstruct, pool: list[Record]) -> None:
        self.evol, self.pool = evol, pool
        self.seen: dict[str, str] = {}
        for p in pool:
            self.seen.setdefault(normalize(p.instruction), p.id)
        self.next_pool: list[Record] = []
        self.counts = Stats()  # every part's, for the pass rates

    def batches(self) -> Iterator[Batch]:
        cs, pool, part = self.evol.chunk_size, self.pool, 1
        for round_no in range(1, self.evol.rounds + 1):
            self.next_pool = []
            chunks = [pool[c:c + cs] for c in range(0, len(pool), cs)]
            if self.evol.before_round is not None:
                self.evol.before_round(round_no, part, chunks)
            for chunk in chunks:
                yield Batch((round_no, chunk), len(chunk), {"round": round_no})
            part += len(chunks)
            pool = self.next_pool

    def process(self, batch: Batch, ctx: Context) -> list[Record]:
        round_no, chunk = batch.items
        survivors, nxt = self.evol.evolve_chunk(round_no, chunk, self.seen, ctx)
        self.next_pool += nxt
        self.counts.merge(ctx.stats.to_dict())
        return survivors

    def restore(self, batch: Batch, part: SealedPart) -> None:
        """The next-pool members of a sealed part: each member's survivor, or the member itself."""
        _, chunk = batch.items
        by_parent: dict[str | None, deque[Record]] = defaultdict(deque)
        for s in part.records():
            by_parent[s.parent_id].append(s)
            self.seen.setdefault(normalize(s.instruction), s.id)
        self.next_pool += [by_parent[m.id].popleft() if by_parent.get(m.id) else m for m in chunk]
        self.counts.merge(part.stats())

    def final_stats(self) -> Stats:
        rates = Stats()
        rates.extra["pass_rate"] = pass_rates(self.counts.extra)
        return rates

    def manifest(self) -> dict[str, Any]:
        return self.evol.describe()


def evolve_remote(cfg: Any, spec: dict[str, Any], rows: list[str]) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, float]]:
    """A task of :meth:`EvolInstruct.answer_on`: one chunk of one round (record JSON lines)
    evolved, judged and answered by a backend built from ``cfg``; returns the usable completions
    with their request keys, and the backend's usage."""
    from datagen.core.record import Record
    from datagen.generate.distill import Teacher
    from datagen.generate.remote import Recorder
    from datagen.llm import make_llm

    llm = Recorder(make_llm(cfg))
    params = GenParams(**spec["params"])
    t = spec["teacher"]
    evol = EvolInstruct(llm, params, teacher=Teacher(llm, params, t["system"], t["template"]) if t else None,
                        operations=spec["operations"], progress=False)
    evol.evolve_chunk(spec["round"], [Record.model_validate_json(r) for r in rows], {}, Context(STAGE))
    return llm.recorded, llm.usage.to_dict()


def pass_rates(extra: dict[str, Any]) -> dict[str, Any]:
    """{"by_operation": {op: {tried, passed, rate}}, "by_round": {...}, "overall": {...}} from the
    merged per-part counts."""
    out: dict[str, Any] = {}
    for name in ("by_operation", "by_round"):
        tried, passed = extra.get(f"tried_{name}", {}), extra.get(f"passed_{name}", {})
        order = {op: i for i, op in enumerate(OPERATIONS)}
        keys = sorted(tried, key=lambda k: (order.get(k, len(order)), len(k), k))
        out[name] = {k: {"tried": tried[k], "passed": passed.get(k, 0), "rate": round(passed.get(k, 0) / tried[k], 4) if tried[k] else 0.0} for k in keys}
    t = sum(extra.get("tried_by_round", {}).values())
    p = sum(extra.get("passed_by_round", {}).values())
    out["overall"] = {"tried": t, "passed": p, "rate": round(p / t, 4) if t else 0.0}
    return out
