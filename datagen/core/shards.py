"""Byte ranges of a JSONL file, and the executor that runs a function over them.

A :class:`Shard` is the lines ``[start, end)`` of a file, cut on line breaks (:func:`split`), so
that workers read their part of one file without a second copy of it. An :class:`Executor` runs
functions of plain data (a shard, settings, paths) in this process or in a pool of processes,
and returns their results in order: what the shards produce joined in shard order is the same for
any number of workers. The filter's stages (:mod:`datagen.curate.shards`) and the reading of a
large JSONL input (:meth:`datagen.core.source.InputSpec.write_records`, each shard by
:func:`datagen.core.io.read_shard`) run on it. A
:class:`RayExecutor` runs the same functions as Ray tasks, on a cluster (:func:`make_executor`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from datagen.core.errors import UserError

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

            threads = max(1, (os.cpu_count() or 1) // self.workers)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                                             initargs=(threads,))
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


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _init_worker(threads: int) -> None:
    """In a worker: Ctrl-C is the parent's to handle (it stops the pool), not a traceback per
    worker; and the numeric libraries it loads (numpy's BLAS, torch) get ``threads`` threads (its
    share of the cores), unless the user set their own, so that N workers do not run N x cores
    threads."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in _THREAD_VARS:
        os.environ.setdefault(var, str(threads))


class RayExecutor:
    """Runs the shard functions as Ray tasks of one CPU each, with :class:`Executor`'s contract
    (results in task order; the first failure in order raised as its own error, so that a bad
    row is still a :class:`UserError`; no task still running once it is raised). The cluster:
    the one this process is already connected to, or the one at ``address`` (``auto``,
    ``HOST:PORT``, ``ray://HOST:10001``), or else a local one of ``workers`` CPUs; :meth:`close`
    shuts down only one started here. ``workers`` (default: the cluster's CPUs) is the number of
    shards a stage is cut into, at least; twice as many tasks are in flight, at most.

    The tasks take paths, not data: every node must see the input and the run directory at the
    same paths (a shared file system), and each task runs in the driver's working directory
    (where the node has it), so that a relative path means what it means here. The workers
    import this package from the directory it was imported from here (``PYTHONPATH``), which a
    local cluster always has, and a cluster whose nodes mount the checkout, or install the
    package, has too."""

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'datagen-train[ray]'") from None
        import logging

        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            code = str(Path(__file__).resolve().parents[2])  # the directory that holds datagen/
            path = os.pathsep.join(p for p in (code, os.environ.get("PYTHONPATH")) if p)
            opts: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR, "runtime_env": {"env_vars": {"PYTHONPATH": path}}}
            if address is None:
                opts.update(address="local", num_cpus=workers or os.cpu_count() or 1, include_dashboard=False)
            try:
                ray.init(address=opts.pop("address", address), **opts)
            except (ConnectionError, RuntimeError, ValueError, SystemExit) as e:  # an unreachable head exits (its code: no message)
                what = f"--ray-address {address}: cannot connect to a Ray cluster" if address else "cannot start a local Ray cluster"
                raise UserError(what + ("" if isinstance(e, SystemExit) else f": {e}")) from None
            self._started = True
        self.workers = max(1, int(workers or ray.cluster_resources().get("CPU", 1)))
        self._task = ray.remote(num_cpus=1)(_in_dir)

    def map(self, fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], on_done: Callable[[int, Any], None] | None = None) -> list[Any]:
        """As :meth:`Executor.map`. At most two tasks per worker are in flight, so that a failure
        (or Ctrl-C) stops the work within about a shard per worker: no new task starts, and the
        ones in flight are waited for, so that none writes after this returns. They are not
        cancelled: with Ray 2.60, ``ray.cancel`` of a task that is finishing at that moment
        aborts the driver now and then (``Check failed: ... Tried to complete task that was not
        pending``, in ``task_manager.cc``)."""
        ray, cwd = self._ray, os.getcwd()
        window = 2 * self.workers
        refs: dict[int, Any] = {}

        def submit(i: int) -> None:
            if i < len(tasks):
                refs[i] = self._task.remote(cwd, fn, tasks[i])

        for i in range(window):
            submit(i)
        out: list[Any] = []
        try:
            for i in range(len(tasks)):
                try:
                    out.append(ray.get(refs.pop(i)))
                except ray.exceptions.RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    if not isinstance(cause, BaseException):
                        raise
                    raise cause from e  # its own type (a UserError reaches the CLI as one); the worker's traceback above it
                submit(i + window)
                if on_done is not None:
                    on_done(i, out[-1])
        except BaseException:
            self._settle(list(refs.values()))
            raise
        return out

    def _settle(self, refs: list[Any]) -> None:
        """Wait for the tasks still in flight and drop what they return: Ray would log the error
        of a result nobody read, after the one that matters."""
        ray = self._ray
        if refs:
            ray.wait(refs, num_returns=len(refs), fetch_local=False)
        for ref in refs:
            try:
                ray.get(ref)
            except Exception:
                pass

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def _in_dir(cwd: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """A Ray task: ``fn(*args)`` in the driver's working directory, when this node has it."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    return fn(*args)


EXECUTORS = ("local", "ray")


def make_executor(kind: str = "local", workers: int | None = None, address: str | None = None) -> Executor | RayExecutor:
    """The executor ``--executor`` names: ``local`` (``workers`` processes, default 1) or
    ``ray`` (``workers`` defaults to the cluster's CPUs; ``address``: which cluster)."""
    if kind not in EXECUTORS:
        raise UserError(f"unknown executor {kind!r}; expected one of {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise UserError("--workers must be >= 1")
    if address is not None and kind != "ray":
        raise UserError("--ray-address needs --executor ray")
    return RayExecutor(workers, address) if kind == "ray" else Executor(workers or 1)
