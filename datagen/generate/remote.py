"""Generation on an executor (``--executor ray``): the chunks of a run answered by tasks, the run
written here.

A generator's work is cut into chunks, each a part of the run directory. Under ``--executor ray``
every chunk not yet sealed (and whose requests are not all in the request cache already) becomes
a task: it rebuilds the backend from the :class:`~datagen.llm.LLMConfig` (without a cache), runs
the chunk's real code (the teacher's answers, a judge's ratings: whatever the chunk asks), sends
its requests to the OpenAI-compatible endpoint(s) from wherever it runs, and returns the usable
completions it got with their request keys. The driver stores them in its request cache as each
task finishes, in order; then the ordinary run (:func:`datagen.core.runner.run_step`) goes
through the chunks here, every request now a cache hit, and writes and seals the parts. So:

* the records are those of a local run (the same requests, answered by the same servers);
* the request cache is only ever written by the driver (one sqlite file, no writers on other
  nodes); what a task got is kept the moment the task returns;
* a run interrupted on Ray resumes with either executor: sealed parts are kept, answered chunks
  are cache hits, and only the rest is asked for. A task stopped midway loses its own chunk's
  answers (at most ``--workers`` x 2 chunks are in flight).

A spending limit (``--max-tokens``, ``--max-cost``) is counted per backend and so would be
per task: it is refused with ``--executor ray``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from datagen.core.errors import UserError
from datagen.core.record import Record
from datagen.llm.base import ChatRequest, Completion, GenParams


@dataclass
class Recorder:
    """A backend that passes requests on to ``inner`` and keeps ``(request key, completion)`` of
    every usable completion (the ones the request cache would keep)."""

    inner: Any
    recorded: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.model_id = self.inner.model_id
        self.usage = self.inner.usage

    def generate(self, requests: Sequence[ChatRequest], params: GenParams) -> list[Completion]:
        from datagen.llm.cache import request_key

        out = self.inner.generate(requests, params)
        for req, comp in zip(requests, out):
            if comp.usable:
                self.recorded.append((request_key(self.model_id, req, params), comp.to_dict()))
        return out

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def __getattr__(self, name: str) -> Any:  # capabilities, token scoring of a local backend
        return getattr(self.inner, name)


def check_config(cfg: Any) -> None:
    """What ``--executor ray`` cannot honour in a generator's backend settings."""
    if cfg.no_cache:
        raise UserError("--executor ray keeps what the tasks were answered in the request cache: drop --no-cache")
    if cfg.max_tokens_budget is not None or cfg.max_cost is not None:
        raise UserError("--max-tokens and --max-cost are counted per backend, and so would be per Ray task: "
                        "they cannot be used with --executor ray")


ChunkTask = Callable[..., Any]  # (cfg, spec, records as JSON) -> (recorded, usage); a module-level function


def answer_chunks(executor: Any, llm: Any, cfg: Any, task: ChunkTask, spec: dict[str, Any], chunks: Sequence[Sequence[Record]],
                  pending: Sequence[int], requests_of: Callable[[Sequence[Record]], list[ChatRequest]], params: GenParams,
                  progress: bool = True) -> dict[str, Any]:
    """Run ``task(cfg, spec, chunk)`` on ``executor`` for the chunks at ``pending`` whose first
    requests (``requests_of(chunk)``, with ``params``) are not all in ``llm``'s request cache;
    store what each task got in that cache as it returns. Returns what was sent where: the
    number of tasks and the usage they reported."""
    from datagen.core.progress import bar
    from datagen.llm.base import Completion
    from datagen.llm.cache import request_key

    cache = llm.cache
    todo = []
    for i in pending:
        keys = [request_key(llm.model_id, r, params) for r in requests_of(chunks[i])]
        if len(cache.get_many(keys)) < len(set(keys)):
            todo.append(i)
    no_cfg = cfg.model_copy(update={"no_cache": True})
    usage: dict[str, float] = {}
    with bar(len(todo), "chunks on the executor", "chunk", show=progress) as pbar:
        def stored(_: int, result: tuple[list[tuple[str, dict[str, Any]]], dict[str, float]]) -> None:
            recorded, used = result
            for key, comp in recorded:
                cache.put(key, Completion.from_dict(comp))
            for k, v in used.items():
                usage[k] = usage.get(k, 0) + v
            pbar.update(1)

        executor.map(task, [(no_cfg, spec, [r.to_json() for r in chunks[i]]) for i in todo], stored)
    return {"executor": "ray", "tasks": len(todo), "usage": {k: round(v, 6) for k, v in usage.items()}}
