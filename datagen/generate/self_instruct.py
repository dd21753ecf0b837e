"""Self-Instruct (Wang et al., 2022): a model bootstraps new tasks from a small pool of seed tasks.

Each *round* sends ``requests_per_round`` requests. A request shows 8 example tasks, 6 drawn from
the seeds and 2 from the tasks accepted so far (more seeds while there are not yet 2), and asks the
model to continue the numbered list. Every proposed task then goes through:

1. parsing: ``Task N: ...`` lines (or a plain numbered list); when the completion was cut by the
   token limit, its last, partial task is rejected as ``truncated``;
2. cheap filters (:mod:`datagen.curate.stages.instructions`): ``too_short`` / ``too_long`` (words; CJK
   characters count one each), ``blacklisted`` (images, files, ... that a text model cannot
   handle; Chinese too), ``starts_with_punctuation``, ``write_a_program``;
3. novelty (:mod:`datagen.generate.novelty`): ``near_duplicate`` when its ROUGE-L F against any
   task in the pool (seeds, accepted tasks, and tasks already taken this round) exceeds 0.7;
   the evidence names the closest task, its id and the score;
4. ``surplus`` once enough tasks are in hand to reach ``--num``;
5. a separate request asks whether it is a classification task (yes/no; an unparseable answer
   counts as "no" and sets ``flags["is_classification_parsed"] = False``);
6. a request for instances: output-first (``Class label: ... / Input: ...``) for classification
   tasks, so the labels are not all the same, input-first (``Input: ... / Output: ...``) otherwise;
7. instance clean-up (stage ``self-instruct.instances``): ``empty_output``, ``input_equals_output``,
   ``duplicate_instance``, ``conflicting_outputs`` (same input, different outputs), and
   ``truncated`` for the last instance of a cut completion. A task left without an instance is
   rejected as ``no_valid_instance``.

A task that survives joins the pool and becomes one record per instance: the user turn is the
instruction (plus a blank line and the input, when there is one), the assistant turn the output;
``meta["fields"]`` keeps instruction and input apart for the Alpaca export. Seed tasks are examples
for the prompts only: they are not written to records.jsonl.

``--mode alpaca`` is the one-pass Stanford Alpaca variant: each request shows 3 seed tasks with
their input and output and asks for 20 complete tasks in ``###``-separated blocks; the same
filters and novelty check apply, with no classification or instance requests.

Reproducibility and resume: the examples of request ``j`` of round ``r`` are drawn with
``random.Random(f"{seed}:{r}:{j}")`` from the pool as it stood when the round began. Each round is
one sealed part of the run directory; on restart the pool is rebuilt from the sealed parts, so the
next round sends exactly the requests an uninterrupted run would have sent, and the request cache
answers the ones already paid for.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator


from datagen.core.runner import Batch, Context, SealedPart, run_step
from datagen.core.stats import Stats
from datagen.curate.stages.instructions import check_instruction
from datagen.llm.base import ChatRequest, Completion, GenParams, LLM
from datagen.core.record import Record, Rejection
from datagen.core.text import normalize_space
from datagen.generate.novelty import NoveltyIndex, closer
from datagen.generate.self_instruct_parsing import CLASSIFY_SCHEMA, clean_instances, parse_alpaca_tasks, parse_instances, parse_tasks, parse_yes_no
from datagen.generate.self_instruct_settings import Settings

STAGE = "self-instruct"
INSTANCE_STAGE = "self-instruct.instances"
TEMPLATES = {
    "tasks": "self_instruct/tasks",
    "is_classification": "self_instruct/is_classification",
    "input_first": "self_instruct/instances_input_first",
    "output_first": "self_instruct/instances_output_first",
    "alpaca": "self_instruct/alpaca",
}
MODE_TEMPLATES = {
    "bootstrap": ("tasks", "is_classification", "input_first", "output_first"),
    "alpaca": ("alpaca",),
}
# Rejections of tasks that passed the screen (and so joined the novelty index) but got no instance.
SPENT_REASONS = ("no_valid_instance", "llm_error")


# -- the loop ----------------------------------------------------------------------------------


@dataclass
class Candidate:
    id: str
    instruction: str
    request: int
    input: str = ""  # alpaca mode: the proposed instance
    output: str = ""
    is_classification: bool | None = None
    flags: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    accepted: int
    rounds: int
    stop_reason: str  # "done" | "stalled" | "max_rounds"
    summary: dict[str, Any]


class SelfInstruct:
    """The bootstrap loop over an ``llm``. ``run(run_dir)`` does (or resumes) the whole run."""

    def __init__(self, llm: LLM, params: GenParams, seeds: list[dict[str, Any]], settings: Settings | None = None, templates: dict[str, Any] | None = None) -> None:
        from datagen.core import prompts

        self.llm = llm
        self.params = params
        self.seeds = seeds
        self.s = settings or Settings()
        names = MODE_TEMPLATES[self.s.mode]
        self.templates = templates or {k: prompts.load(TEMPLATES[k]) for k in names}
        self.classify_params = replace(params, temperature=0.0, max_tokens=min(params.max_tokens, self.s.classify_max_tokens), json_schema=CLASSIFY_SCHEMA)
        self.machine: list[tuple[str, str]] = []  # accepted tasks (id, instruction), in order
        self.index = NoveltyIndex(self.s.rouge_threshold)
        for t in seeds:
            self.index.add(t["id"], t["instruction"])

    @property
    def template_hashes(self) -> dict[str, str]:
        return {t.name: t.sha for t in self.templates.values()}

    # -- requests ------------------------------------------------------------------------
    def _rng(self, rnd: int, j: int) -> random.Random:
        return random.Random(f"{self.params.seed}:{rnd}:{j}")

    def _request_seed(self, rnd: int, j: int) -> int | None:
        if self.params.seed is None:
            return None
        return int(hashlib.sha256(f"{self.params.seed}:{rnd}:{j}".encode()).hexdigest()[:8], 16)

    def task_request(self, rnd: int, j: int) -> ChatRequest:
        rng = self._rng(rnd, j)
        if self.s.mode == "alpaca":
            shown = rng.sample(self.seeds, min(self.s.alpaca_examples, len(self.seeds)))
            tasks = [{"instruction": _prompt_text(t["instruction"]), "input": t["instances"][0]["input"], "output": t["instances"][0]["output"]} for t in shown]
            prompt = self.templates["alpaca"].render(tasks=tasks, num_tasks=max(self.s.alpaca_tasks, len(tasks) + 1))
        else:
            total = self.s.num_seed_examples + self.s.num_machine_examples
            k_machine = min(self.s.num_machine_examples, len(self.machine))
            picked = [text for _, text in rng.sample(self.machine, k_machine)]
            picked += [t["instruction"] for t in rng.sample(self.seeds, min(total - k_machine, len(self.seeds)))]
            rng.shuffle(picked)
            prompt = self.templates["tasks"].render(tasks=[_prompt_text(x) for x in picked])
        return ChatRequest.of([("user", prompt)], seed=self._request_seed(rnd, j), tag=f"round {rnd} request {j}")

    # -- growing the pool -----------------------------------------------------------------
    def _grow(self, accepted: list[tuple[str, str]], failed: list[tuple[str, str]]) -> None:
        """Add a round's outcome to the pool. Accepted tasks become examples for later prompts;
        tasks that passed the screen but got no usable instance only join the novelty index,
        so the model proposing them again does not block the quota round after round."""
        for tid, instruction in accepted:
            self.machine.append((tid, instruction))
            self.index.add(tid, instruction)
        for tid, instruction in failed:
            self.index.add(tid, instruction)

    def restore_round(self, records: Iterable[Record], rejections: Iterable[Rejection]) -> int:
        """Rebuild the pool from one sealed round, in the order a live run built it; returns the
        tasks it accepted."""
        accepted: dict[str, str] = {}
        for rec in records:
            accepted.setdefault(rec.meta["task_id"], rec.meta["fields"]["instruction"])
        failed: dict[str, str] = {}
        for rej in rejections:
            if rej.stage == STAGE and rej.reason in SPENT_REASONS and rej.record is not None:
                failed[rej.evidence["task_id"]] = rej.record.meta["fields"]["instruction"]
        self._grow(list(accepted.items()), list(failed.items()))
        return len(accepted)

    def run(self, run: Any, manifest: dict[str, Any] | None = None, progress: bool = False) -> Result:
        """Generate in ``run`` (a :class:`~datagen.core.rundir.RunDir`) through the runner, one part per
        round, resuming from its sealed rounds, until ``num`` tasks are accepted, the rounds run
        out, or ``patience`` rounds in a row accept none."""
        step = _RoundsStep(self)
        summary = run_step(run, step, total=self.s.num, llms=[self.llm], progress=progress, manifest=manifest,
                           pending=lambda: (max(0, self.s.num - len(self.machine)), self.s.num, "tasks"))
        return Result(step.accepted, step.rounds, step.stop_reason(), summary)

    # -- one round -----------------------------------------------------------------------
    def run_round(self, rnd: int, st: Stats) -> tuple[list[Record], list[Rejection]]:
        """Send one round of requests; return its records and rejections, and add the tasks it
        accepted to the pool."""
        reqs = [self.task_request(rnd, j) for j in range(self.s.requests_per_round)]
        comps = self.llm.generate(reqs, self.params)
        rejected: list[Rejection] = []
        st.extra["rounds"] = 1
        st.extra["requests"] = {"tasks": len(reqs)}
        st.stage(STAGE)
        candidates = self._parse_round(rnd, comps, st, rejected)
        selected = self._screen(rnd, candidates, st, rejected)
        if self.s.mode == "alpaca":
            for c in selected:
                c.flags = {}
            results = [(c, [{"input": c.input, "output": c.output}], False) for c in selected]
        else:
            self._classify(selected, st)
            results = self._instances(rnd, selected, st, rejected)
        records: list[Record] = []
        st.stage(INSTANCE_STAGE)
        for cand, instances, truncated in results:
            n_parsed = len(instances)
            st.seen(INSTANCE_STAGE, n_parsed)
            recs: list[Record] = []
            drops: dict[str, int] = {}
            if truncated and instances:
                cut = instances.pop()
                self._reject_instance(rnd, cand, cut, "truncated", {"finish_reason": "length"}, st, rejected)
                drops["truncated"] = 1
            kept, dropped = clean_instances(instances)
            for inst, reason, evidence in dropped:
                self._reject_instance(rnd, cand, inst, reason, evidence, st, rejected)
                drops[reason] = drops.get(reason, 0) + 1
            for inst in kept:
                recs.append(self._record(rnd, cand, inst))
            st.kept(INSTANCE_STAGE, len(recs))
            if not recs:
                self._reject(rnd, cand, "no_valid_instance", {"instances_parsed": n_parsed, "dropped": drops}, st, rejected)
                continue
            records += recs
            st.kept(STAGE)
        accepted = {r.meta["task_id"] for r in records}
        self._grow([(c.id, c.instruction) for c in selected if c.id in accepted], [(c.id, c.instruction) for c in selected if c.id not in accepted])
        st.extra["tasks_accepted"] = len(accepted)
        return records, rejected

    def _parse_round(self, rnd: int, comps: list[Completion], st: Stats, rejected: list[Rejection]) -> list[Candidate]:
        candidates: list[Candidate] = []
        for j, comp in enumerate(comps):
            if not comp.ok:
                st.seen(STAGE)
                st.rejected(STAGE, "llm_error")
                rejected.append(Rejection(stage=STAGE, reason="llm_error", evidence={"step": "tasks", "round": rnd, "request": j, "error": comp.error}))
                continue
            if self.s.mode == "alpaca":
                parsed: list[Any] = parse_alpaca_tasks(comp.text)
            else:
                parsed = parse_tasks(comp.text)
            if not parsed:
                st.seen(STAGE)
                st.rejected(STAGE, "no_tasks_parsed")
                rejected.append(Rejection(stage=STAGE, reason="no_tasks_parsed", evidence={"round": rnd, "request": j, "finish_reason": comp.finish_reason}, raw=comp.text))
                continue
            for k, item in enumerate(parsed):
                cid = f"r{rnd}.{j}.{k}"
                last_cut = comp.truncated and k == len(parsed) - 1
                if self.s.mode == "alpaca" and isinstance(item, str):  # a block without the fields
                    st.seen(STAGE)
                    reason = "truncated" if last_cut else "unparsed_task"
                    st.rejected(STAGE, reason)
                    rejected.append(Rejection(stage=STAGE, reason=reason, evidence={"round": rnd, "request": j, "task_id": cid}, raw=item))
                    continue
                if isinstance(item, dict):
                    cand = Candidate(cid, item["instruction"], j, item["input"], item["output"])
                else:
                    cand = Candidate(cid, item, j)
                if last_cut:
                    self._reject(rnd, cand, "truncated", {"finish_reason": "length"}, st, rejected, seen=True)
                    continue
                candidates.append(cand)
        return candidates

    def _screen(self, rnd: int, candidates: list[Candidate], st: Stats, rejected: list[Rejection]) -> list[Candidate]:
        """Cheap filters, then novelty against the pool and the round's earlier picks, then the
        quota. Returns the candidates that go on to classification and instances."""
        this_round = NoveltyIndex(self.s.rouge_threshold)
        selected: list[Candidate] = []
        remaining = self.s.num - len(self.machine)
        for cand in candidates:
            verdict = check_instruction(cand.instruction, self.s.min_words, self.s.max_words)
            if verdict:
                self._reject(rnd, cand, verdict[0], verdict[1], st, rejected, seen=True)
                continue
            match = closer(self.index.check(cand.instruction), this_round.check(cand.instruction))
            if match:
                evidence = {
                    "closest_id": match.id, "closest_instruction": match.text, "rouge_l": round(match.score, 4),
                    "threshold": self.s.rouge_threshold, "same_round": match.id in this_round,
                }
                self._reject(rnd, cand, "near_duplicate", evidence, st, rejected, seen=True)
                continue
            if len(selected) >= remaining:
                self._reject(rnd, cand, "surplus", {"num": self.s.num, "accepted_before_round": len(self.machine)}, st, rejected, seen=True)
                continue
            st.seen(STAGE)
            this_round.add(cand.id, cand.instruction)
            selected.append(cand)
        return selected

    def _classify(self, selected: list[Candidate], st: Stats) -> None:
        tpl = self.templates["is_classification"]
        reqs = [ChatRequest.of([("user", tpl.render(instruction=_prompt_text(c.instruction)))], tag=c.id) for c in selected]
        comps = self.llm.generate(reqs, self.classify_params) if reqs else []
        st.extra["requests"]["classify"] = len(reqs)
        for c, comp in zip(selected, comps):
            answer = parse_yes_no(comp.text) if comp.ok else None
            c.is_classification = bool(answer)
            c.flags = {"is_classification_parsed": answer is not None}
            if not comp.ok:
                c.flags["is_classification_error"] = comp.error

    def _instances(self, rnd: int, selected: list[Candidate], st: Stats, rejected: list[Rejection]) -> list[tuple[Candidate, list[dict[str, str]], bool]]:
        reqs = []
        for c in selected:
            tpl = self.templates["output_first" if c.is_classification else "input_first"]
            reqs.append(ChatRequest.of([("user", tpl.render(instruction=_prompt_text(c.instruction)))], tag=c.id))
        comps = self.llm.generate(reqs, self.params) if reqs else []
        st.extra["requests"]["instances"] = len(reqs)
        out = []
        for c, comp in zip(selected, comps):
            if not comp.ok:
                self._reject(rnd, c, "llm_error", {"step": "instances", "error": comp.error}, st, rejected)
                continue
            out.append((c, parse_instances(comp.text, bool(c.is_classification)), comp.truncated))
        return out

    # -- records and rejections ----------------------------------------------------------
    def _meta(self, rnd: int, cand: Candidate, inp: str) -> dict[str, Any]:
        if self.s.mode == "alpaca":
            used = ["alpaca"]
        else:
            used = ["tasks", "is_classification", "output_first" if cand.is_classification else "input_first"]
        return {
            "task_id": cand.id,
            "is_classification": cand.is_classification,
            "round": rnd,
            "mode": self.s.mode,
            "prompt_templates": {self.templates[k].name: self.templates[k].sha for k in used},
            "generator_model": self.llm.model_id,
            "fields": {"instruction": cand.instruction, "input": inp},
        }

    def _record(self, rnd: int, cand: Candidate, inst: dict[str, str]) -> Record:
        user = f"{cand.instruction}\n\n{inst['input']}" if inst["input"] else cand.instruction
        return Record.from_turns(user, inst["output"], source=STAGE, flags=dict(cand.flags), meta=self._meta(rnd, cand, inst["input"]))

    def _reject(self, rnd: int, cand: Candidate, reason: str, evidence: dict[str, Any], st: Stats, rejected: list[Rejection], seen: bool = False) -> None:
        if seen:
            st.seen(STAGE)
        st.rejected(STAGE, reason)
        evidence = {"task_id": cand.id, "round": rnd, **evidence}
        if cand.instruction.strip():
            rec = Record.from_turns(cand.instruction, source=STAGE, flags=dict(cand.flags), meta=self._meta(rnd, cand, ""))
            rejected.append(Rejection(stage=STAGE, reason=reason, evidence=evidence, record=rec))
        else:
            rejected.append(Rejection(stage=STAGE, reason=reason, evidence=evidence, raw=cand.instruction))

    def _reject_instance(self, rnd: int, cand: Candidate, inst: dict[str, str], reason: str, evidence: dict[str, Any], st: Stats, rejected: list[Rejection]) -> None:
        st.rejected(INSTANCE_STAGE, reason)
        rec = self._record(rnd, cand, inst)
        rejected.append(Rejection(stage=INSTANCE_STAGE, reason=reason, evidence={"task_id": cand.id, "round": rnd, **evidence}, record=rec))


class _RoundsStep:
    """Self-Instruct as a runner step: a batch is one round. Whether there is another round
    depends on the rounds before (tasks accepted, rounds in a row with none), so each batch is
    decided only once the one before was processed or restored."""

    unit = "task"

    def __init__(self, gen: SelfInstruct) -> None:
        self.gen, self.name = gen, f"self-instruct ({gen.s.mode})"
        self.accepted = self.rounds = self.stall = 0

    def batches(self) -> Iterator[Batch]:
        s, limit = self.gen.s, self.gen.s.rounds_limit()
        while self.accepted < s.num and self.rounds < limit and self.stall < s.patience:
            yield Batch(self.rounds + 1, 0, {"round": self.rounds + 1})

    def _count(self, batch: Batch, new: int) -> None:
        batch.size = max(0, min(new, self.gen.s.num - self.accepted))  # progress counts accepted tasks up to num
        self.accepted += new
        self.stall = 0 if new else self.stall + 1
        self.rounds += 1

    def process(self, batch: Batch, ctx: Context) -> list[Record]:
        records, rejected = self.gen.run_round(batch.items, ctx.stats)
        ctx.add_rejections(rejected)
        self._count(batch, len({r.meta["task_id"] for r in records}))
        return records

    def restore(self, batch: Batch, part: SealedPart) -> None:
        self._count(batch, self.gen.restore_round(part.records(), part.rejections()))

    def stop_reason(self) -> str:
        if self.accepted >= self.gen.s.num:
            return "done"
        return "stalled" if self.stall >= self.gen.s.patience else "max_rounds"

    def manifest(self) -> dict[str, Any]:
        g = self.gen
        return {"mode": g.s.mode, "prompt_templates": g.template_hashes, "seed_tasks": len(g.seeds),
                "tasks_accepted": self.accepted, "rounds": self.rounds, "stop_reason": self.stop_reason()}


def _prompt_text(instruction: str) -> str:
    """An instruction as shown in a prompt: on one line, without a trailing colon."""
    return normalize_space(instruction).rstrip(":").strip()
