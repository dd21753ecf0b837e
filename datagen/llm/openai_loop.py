"""What an OpenAI-compatible backend's requests run on: a private asyncio loop in a daemon
thread (:class:`Runtime`, built on first use and kept for the backend's life, with the fleet's
clients, the concurrency bound and the rate limiters), and one ``generate_iter`` call on it
(:class:`Batch`, whose results reach the caller's thread through a queue, :data:`DONE` last)."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import weakref
from dataclasses import dataclass, field

from datagen.llm.endpoints import Fleet
from datagen.llm.openai_wire import RateLimiter

log = logging.getLogger(__name__)

DONE = object()  # end-of-batch marker on the result queue


@dataclass
class Runtime:
    """Everything bound to the backend's event loop; built on first use, dropped by close()."""

    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    fleet: Fleet  # the endpoints, each with its client
    semaphore: asyncio.Semaphore
    rpm: RateLimiter | None
    tpm: RateLimiter | None
    stop_loop: weakref.finalize
    pid: int  # a forked child rebuilds its own: the loop thread does not survive fork()
    failures_in_a_row: int = 0  # requests that failed for good, systemically, since the last success (across batches)
    last_failure: str = ""


@dataclass
class Batch:
    """One generate_iter call: results flow to the caller's thread through ``results``."""

    results: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    task: asyncio.Task | None = None
    cancelled: bool = False
    server_failures: int = 0  # requests of this batch that failed for good, the server's fault
    last_failure: str = ""

    def cancel(self) -> None:  # runs on the loop thread
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()


def drain(results: queue.SimpleQueue, timeout: float) -> None:
    """Discard results until the end-of-batch marker (or the timeout)."""
    deadline = time.monotonic() + timeout
    try:
        while results.get(timeout=max(0.0, deadline - time.monotonic())) is not DONE:
            pass
    except queue.Empty:
        log.warning("in-flight requests did not stop within %.0fs", timeout)
