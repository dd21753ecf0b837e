"""Byte ranges of a JSONL file, and the executor that runs a function over them.

A :class:`Shard` is the lines ``[start, end)`` of a file, cut on line breaks (:func:`split`), so
that workers read their part of one file without a second copy of it. An :class:`Executor` runs
functions of plain data (a shard, settings, paths) in this process or in a pool of processes,
and returns their results in order: what the shards produce joined in shard order is the same for
any number of workers. The filter's stages (:mod:`datagen.curate.shards`) and the reading of a
large JSONL input (:func:`datagen.core.io.read_records_parallel`) run on it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

SHARD_BYTES = 8 << 20  # input per shard, at most (a progress step; small inputs are one shard per worker)


@dataclass(frozen=True)
class Shard:
    """Lines ``[start, end)`` (bytes) of ``path``; ``index``: its place among the shards."""

    path: str
    start: int
    end: int
    index: int


def split(path: str | os.PathLike[str], workers: int, shard_bytes: int | None = None) -> list[Shard]:
    """``path`` cut into shards of about ``shard_bytes`` (default :data:`SHARD_BYTES`), each
    ending on a line break: one shard for a file smaller than that (a pool of processes would
    cost more than it saves), else at least one per worker."""
    shard_bytes = shard_bytes or SHARD_BYTES
    size = os.path.getsize(path)
    n = math.ceil(size / shard_bytes)
    n = max(n, workers) if n > 1 else 1
    bounds = [0]
    with open(path, "rb") as f:
        for k in range(1, n):
            f.seek(max(bounds[-1], k * size // n))
            f.readline()
            pos = f.tell()
            if bounds[-1] < pos < size:
                bounds.append(pos)
    bounds.append(size)
    return [Shard(str(path), a, b, i) for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]


def lines(shard: Shard) -> Iterator[bytes]:
    with open(shard.path, "rb") as f:
        f.seek(shard.start)
        pos = shard.start
        while pos < shard.end:
            line = f.readline()
            if not line:
                return
            pos += len(line)
            yield line


class Executor:
    """Runs the shard functions: in this process (one worker, or one task), or in a pool of
    ``workers`` processes (spawned, so that no thread or model of the parent is copied; a worker
    that dies is an error, never a wait)."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, int(workers))
        self._pool: Any = None

    def map(self, fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], on_done: Callable[[int, Any], None] | None = None) -> list[Any]:
        """``fn(*task)`` for every task, results in task order; ``on_done(i, result)`` as each
        one finishes (in order). The first task to fail (in order) raises its error here."""
        out: list[Any] = []
        if self.workers == 1 or len(tasks) <= 1:
            for i, t in enumerate(tasks):
                out.append(fn(*t))
                if on_done is not None:
                    on_done(i, out[-1])
            return out
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_sigint)
        futures = [self._pool.submit(fn, *t) for t in tasks]
        try:
            for i, f in enumerate(futures):
                out.append(f.result())
                if on_done is not None:
                    on_done(i, out[-1])
        except BaseException:
            self._stop(futures)  # a task failed (or Ctrl-C): stop the others, now
            raise
        return out

    def _stop(self, futures: Sequence[Any]) -> None:
        for f in futures:
            f.cancel()
        pool, self._pool = self._pool, None
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _ignore_sigint() -> None:
    """In a worker: Ctrl-C is the parent's to handle (it stops the pool), not a traceback per worker."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
