"""The servers one OpenAI-compatible backend sends to: one, or a fleet (``--base-url`` given
several times, e.g. one vLLM per GPU node).

Every attempt of a request takes an endpoint from :meth:`Fleet.acquire` and gives it back with
its outcome (:meth:`Fleet.release`). The fleet spreads the attempts: the endpoint with the
lowest share of its capacity in flight (capacity: ``--concurrency``, or fewer where the server
says it serves fewer at once), so a faster server, whose requests finish sooner, takes more.

A failing endpoint is set aside. After ``SET_ASIDE_AFTER`` attempts in a row failed there for a
reason that is the server's (5xx, 429 without a wait, timeouts, refused connections, malformed
bodies), no attempt goes there for ``SET_ASIDE_FIRST`` seconds, twice as long each time it fails
again, up to ``SET_ASIDE_MAX``; then it is on probation: one attempt at a time until one
succeeds, which gives it its full capacity back. While every endpoint is set aside there is
nowhere better to go: the attempts go on, spread as before, and the retries and the circuit
breaker decide, as for a single server (an outage of the whole fleet stops the run, resumably). A request whose attempt failed at one endpoint
is retried at another one it has not failed at, at once and without spending a retry; when it
has failed everywhere, the backend's own retries and backoff apply, as for a single server. A
single server is never set aside (it has no other to hand its work to): its failures go through
the retries and the circuit breaker alone.

Everything here runs on the backend's event loop thread; nothing needs a lock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from datagen.llm.openai_wire import redact_url

log = logging.getLogger(__name__)

SET_ASIDE_AFTER = 3  # attempts in a row that failed at an endpoint, the server's fault
SET_ASIDE_FIRST = 5.0  # seconds
SET_ASIDE_MAX = 120.0

# answered; failed, the server's fault; failed, the request's (or a field it refused); stopped by the caller
Outcome = Literal["ok", "systemic", "request", "cancelled"]


@dataclass
class Endpoint:
    """One server of the fleet, with its health and what it has done."""

    index: int
    url: str
    capacity: int
    client: Any = None  # its openai.AsyncOpenAI, built on the loop's side
    in_flight: int = 0
    cooldown_until: float = 0.0  # monotonic time before which nothing is sent here (a 429 asked)
    failing: int = 0  # attempts in a row that failed here, the server's fault
    set_aside_until: float = 0.0
    set_aside_for: float = 0.0  # the last set-aside's length; 0 while healthy
    sent: int = 0
    answered: int = 0
    failed: int = 0
    times_set_aside: int = 0

    def available(self, now: float, every_one_aside: bool = False) -> bool:
        if every_one_aside:  # nowhere better to go: the retries and the breaker decide
            return self.in_flight < self.capacity
        if self.set_aside_until > now:
            return False
        if self.set_aside_for:  # on probation: one attempt at a time
            return self.in_flight == 0
        return self.in_flight < self.capacity

    def to_dict(self) -> dict[str, Any]:
        return {"url": redact_url(self.url), "capacity": self.capacity, "sent": self.sent, "answered": self.answered,
                "failed": self.failed, "set_aside": self.times_set_aside}


class Fleet:
    """The endpoints, and the choice of one for each attempt (see the module docstring)."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        if not endpoints:
            raise ValueError("a fleet needs at least one endpoint")
        self.endpoints = list(endpoints)
        self._wake: asyncio.Event | None = None  # made on the loop, at first use

    def on_new_loop(self) -> None:
        """Forget what belonged to the previous event loop (after close(), or in a forked child)."""
        self._wake = None
        for e in self.endpoints:
            e.in_flight = 0

    def __len__(self) -> int:
        return len(self.endpoints)

    @property
    def capacity(self) -> int:
        return sum(e.capacity for e in self.endpoints)

    async def acquire(self, avoid: set[int] = frozenset()) -> Endpoint:  # type: ignore[assignment]
        """An endpoint for one attempt, preferring those not in ``avoid`` (indexes of endpoints
        this request failed at); waits while none is available."""
        if self._wake is None:
            self._wake = asyncio.Event()
        while True:
            now = time.monotonic()
            # an endpoint this request has not failed at, and not set aside, is worth waiting for
            fresh = [e for e in self.endpoints if e.index not in avoid and e.set_aside_until <= now]
            every_one_aside = all(e.set_aside_until > now for e in self.endpoints)
            free = [e for e in (fresh or self.endpoints) if e.available(now, every_one_aside)]
            if free:
                ep = min(free, key=lambda e: (e.in_flight / e.capacity, e.sent, e.index))
                ep.in_flight += 1
                ep.sent += 1
                return ep
            back = [e.set_aside_until for e in self.endpoints if e.set_aside_until > now]
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=(min(back) - now) if back else None)
            except asyncio.TimeoutError:
                pass

    def release(self, ep: Endpoint, outcome: Outcome) -> None:
        """Give ``ep`` back after an attempt; a failure the server is to blame for counts towards
        setting it aside."""
        ep.in_flight -= 1
        if outcome == "systemic":
            ep.failed += 1
            ep.failing += 1
            now = time.monotonic()
            # set aside (or, failing on probation, for twice as long); the attempts that were
            # already in flight when it was set aside do not extend it
            if len(self.endpoints) > 1 and ep.set_aside_until <= now and (ep.set_aside_for or ep.failing >= SET_ASIDE_AFTER):
                ep.set_aside_for = min(SET_ASIDE_MAX, 2 * ep.set_aside_for or SET_ASIDE_FIRST)
                ep.set_aside_until = now + ep.set_aside_for
                ep.times_set_aside += 1
                log.warning("%s failed %d attempts in a row: set aside for %.0fs", redact_url(ep.url), ep.failing, ep.set_aside_for)
        elif outcome != "cancelled":
            ep.answered += outcome == "ok"
            ep.failing = 0
            ep.set_aside_for = 0.0
        if self._wake is not None:
            self._wake.set()

    def others(self, avoid: set[int]) -> bool:
        """Whether an endpoint outside ``avoid`` is not set aside (somewhere else to try)."""
        now = time.monotonic()
        return any(e.index not in avoid and e.set_aside_until <= now for e in self.endpoints)

    def where(self) -> str:
        """The servers, for a message: "the server at URL" or "the N servers (URL, ...)"."""
        if len(self.endpoints) == 1:
            return f"the server at {redact_url(self.endpoints[0].url)}"
        return f"the {len(self.endpoints)} servers ({', '.join(redact_url(e.url) for e in self.endpoints)})"
