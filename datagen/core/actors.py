"""A pool of Ray actors, each holding one object it built once (a model), that maps batches in order.

The model stages of ``datagen filter --executor ray`` (the semantic stage's encoder, the quality
stage's scorers) run here: every actor builds its object from plain data (``build``, e.g.
:meth:`datagen.score.embeddings.EncoderSpec.build`), so a model is loaded once per actor, not
once per batch; batches go to the actors in turn and their results come back in the order of the
batches, so what the driver writes does not depend on which actor was faster. Each actor asks
for ``num_cpus`` CPUs and ``num_gpus`` GPUs: the same command runs on a laptop's local cluster
(no GPU) or asks for GPUs on a real one.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any, Callable, Iterable, Iterator

from pydantic import BaseModel, Field

from datagen.core.errors import UserError


def on_ray(executor: Any) -> bool:
    """Whether ``executor`` runs on a Ray cluster (:class:`~datagen.core.shards.RayExecutor`)."""
    from datagen.core.shards import RayExecutor

    return isinstance(executor, RayExecutor)


class ActorPool:
    """``size`` actors of ``num_cpus`` CPUs and ``num_gpus`` GPUs each, built on first use (a pool
    that is never asked for anything starts nothing). ``size`` defaults to what the cluster
    holds: its GPUs over ``num_gpus``, else the executor's workers over ``num_cpus``."""

    def __init__(self, executor: Any, build: Callable[[], Any], size: int | None = None, num_cpus: float = 1.0, num_gpus: float = 0.0,
                 what: str = "actor") -> None:
        self._ray = executor._ray
        self.build, self.num_cpus, self.num_gpus, self.what = build, num_cpus, num_gpus, what
        resources = self._ray.cluster_resources()
        if num_gpus > resources.get("GPU", 0):
            raise UserError(f"{what}: num_gpus {num_gpus:g} per actor, but the Ray cluster has {resources.get('GPU', 0):g} GPUs "
                            f"(set num_gpus: 0 to run on CPUs)")
        if num_cpus > resources.get("CPU", 0):
            raise UserError(f"{what}: num_cpus {num_cpus:g} per actor, but the Ray cluster has {resources.get('CPU', 0):g} CPUs")
        if size is None:
            size = int(resources.get("GPU", 0) // num_gpus) if num_gpus else int(executor.workers // max(num_cpus, 1e-9))
        self.size = max(1, size)
        self._actors: list[Any] = []

    def _start(self) -> list[Any]:
        if not self._actors:
            cls = self._ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus)(_Holder)
            self._actors = [cls.remote(os.getcwd(), self.build) for _ in range(self.size)]
        return self._actors

    def map(self, call: Callable[[Any, Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        """``call(obj, item)`` on the actors, for every item, yielded in the items' order; the
        items are read as the work goes (at most two per actor in flight), so a long stream is
        never all in memory. The first failure (in order) is raised as its own type (a
        :class:`UserError` stays one); the calls in flight are then waited for, not cancelled."""
        ray = self._ray
        actors = self._start()
        window = 2 * len(actors)
        pending: deque[Any] = deque()
        it = iter(items)
        turn = 0
        try:
            while True:
                while len(pending) < window:
                    item = next(it, _END)
                    if item is _END:
                        break
                    pending.append(actors[turn % len(actors)].call.remote(call, item))
                    turn += 1
                if not pending:
                    return
                ref = pending.popleft()
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    if not isinstance(cause, BaseException):
                        raise
                    raise cause from e
        except BaseException:
            refs = list(pending)
            if refs:
                ray.wait(refs, num_returns=len(refs), fetch_local=False)
            raise

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []


_END = object()


class _Holder:
    """A Ray actor: builds its object once, at its first call (so that a failure to build, such as
    a model that is not there, reaches the driver as its own error, as a call's would), in the
    driver's working directory when the node has it."""

    def __init__(self, cwd: str, build: Callable[[], Any]) -> None:
        if os.path.isdir(cwd):
            os.chdir(cwd)
        self.build: Callable[[], Any] | None = build
        self.obj: Any = None

    def call(self, fn: Callable[[Any, Any], Any], item: Any) -> Any:
        if self.build is not None:
            self.obj, self.build = self.build(), None
        return fn(self.obj, item)


class ActorResources(BaseModel):
    """What each of a model stage's actors asks of the cluster under ``--executor ray`` (the
    local executor ignores them; they never change the output)."""

    num_cpus: float = Field(1.0, gt=0, description="--executor ray: CPUs each model actor of this stage asks for")
    num_gpus: float = Field(0.0, ge=0, description="--executor ray: GPUs each model actor asks for (0: CPUs only)")
    actors: int | None = Field(None, ge=1, description="--executor ray: model actors; default: the cluster's GPUs / num_gpus, else its CPUs / num_cpus")

    def settings(self) -> dict[str, Any]:
        """The stage's settings less these (what its manifest describes: they never change the output)."""
        return self.model_dump(exclude=set(ActorResources.model_fields))

    def pool(self, executor: Any, build: Callable[[], Any], what: str) -> ActorPool:
        return ActorPool(executor, build, self.actors, self.num_cpus, self.num_gpus, what)
