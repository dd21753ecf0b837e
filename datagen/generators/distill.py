"""Strong-model distillation: a teacher model answers the prompts.

Each input record's prompt (everything before its final assistant turn) goes to the teacher; the
answer becomes the new final assistant turn. The new record points to its prompt record through
``parent_id`` and names the teacher, the system-prompt template and its hash in ``meta``.

Work is split into parts of ``chunk_size`` prompts. Each finished part is sealed in the run
directory, and every answer is in the request cache the moment it arrives, so an interrupted run
picks up where it stopped without paying twice.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

from ..llm.base import ChatRequest, Completion, GenParams, LLM
from ..record import Message, Record, Rejection
from ..stage import Stats

STAGE = "distill"


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
            "usage": {"prompt_tokens": comp.prompt_tokens, "completion_tokens": comp.completion_tokens},
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


def judge_completion(comp: Completion) -> tuple[str, dict[str, Any]] | None:
    """Reason code and evidence when a teacher completion cannot become an answer."""
    if not comp.ok:
        return "llm_error", {"error": comp.error}
    if not comp.text.strip():
        return "empty_answer", {"finish_reason": comp.finish_reason}
    return None


def answer_chunk(teacher: Teacher, chunk: Sequence[Record], samples: int, stats: Stats, stage: str = STAGE) -> tuple[list[Record], list[Rejection]]:
    reqs: list[ChatRequest] = []
    owners: list[Record] = []
    for rec in chunk:
        rs = teacher.requests(rec, samples)
        reqs += rs
        owners += [rec] * len(rs)
    comps = teacher.llm.generate(reqs, teacher.params)
    kept: list[Record] = []
    rejected: list[Rejection] = []
    stats.seen(stage, len(chunk))
    for rec, comp in zip(owners, comps):
        verdict = judge_completion(comp)
        if verdict:
            stats.rejected(stage, verdict[0])
            rejected.append(Rejection(stage=stage, reason=verdict[0], evidence=verdict[1], record=rec))
            continue
        kept.append(teacher.to_record(rec, comp))
        stats.kept(stage)
    return kept, rejected


def cli(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .. import prompts
    from ..commands import gen_params, llm_config, read_input
    from ..errors import UserError
    from ..llm import make_llm
    from ..rundir import RunDir, file_digest

    if args.num_samples < 1 or args.chunk_size < 1:
        raise UserError("--num-samples and --chunk-size must be >= 1")
    cfg = llm_config(args)
    params = gen_params(args)
    system = template = None
    if args.system_prompt and args.system_prompt.lower() != "none":
        try:
            t = prompts.load(args.system_prompt)
        except FileNotFoundError as e:
            raise UserError(str(e)) from None
        system, template = t.render(), {"name": t.name, "sha": t.sha}

    read_rejects: list[Rejection] = []
    records = read_input(args, read_rejects.append, require_answer=False)
    settings = {
        "input": str(args.input), "input_sha256": file_digest(args.input), "format": args.format,
        "limit": args.limit, "on_error": args.on_error, "llm": {"backend": cfg.backend, "model": cfg.model, "base_url": cfg.base_url},
        "params": params.to_dict(), "system_prompt": template, "num_samples": args.num_samples, "chunk_size": args.chunk_size,
    }
    run = RunDir(args.out, "distill", settings, force=args.force)
    llm = make_llm(cfg)
    teacher = Teacher(llm, params, system, template)

    if not run.part_done(0):  # part 0: what the reader rejected
        st = Stats()
        st.seen("read", len(records) + len(read_rejects))
        st.kept("read", len(records))
        for r in read_rejects:
            st.rejected("read", r.reason)
        run.write_part(0, [], read_rejects, st)
    chunks = [records[i : i + args.chunk_size] for i in range(0, len(records), args.chunk_size)]
    done = sum(len(c) for i, c in enumerate(chunks, start=1) if run.part_done(i))
    if done:
        print(f"resuming {args.out}: {done}/{len(records)} prompts already answered", file=sys.stderr)
    with tqdm(total=len(records), initial=done, desc="distill", unit="prompt", file=sys.stderr, disable=len(records) < 2) as bar:
        for i, chunk in enumerate(chunks, start=1):
            if run.part_done(i):
                continue
            st = Stats()
            t0, before = time.time(), llm.usage.to_dict()
            kept, rejected = answer_chunk(teacher, chunk, args.num_samples, st)
            after = llm.usage.to_dict()
            st.extra["llm"] = {k: round(after[k] - before[k], 6) for k in after}
            st.extra["seconds"] = round(time.time() - t0, 3)
            run.write_part(i, kept, rejected, st)
            bar.update(len(chunk))
    manifest = {
        "models": {"teacher": llm.describe()},
        "llm_config": cfg.to_manifest(),
        "prompt_templates": {template["name"]: template["sha"]} if template else {},
        "seeds": {"sampling": params.seed},
    }
    summary = run.finalize(manifest, n_parts=len(chunks) + 1)
    print(f"distill: {summary['records']} answers, {summary['rejected']} rejected -> {args.out}", file=sys.stderr)
    return 0
