"""How many requests are in flight: a fixed limit per filesystem, and an adaptive one per endpoint per process.

Many objects read at once (``fs.cat(list)``, a DataLoader's workers, several
files of a checkpoint) each want connections; without a bound, a list of
10,000 keys would open 10,000. ``LimitedCalls`` lets at most ``limit``
requests of one filesystem be in flight, counting each from the moment it is
sent until its body is closed, which is when its connection is free again.

An endpoint that is asked too much answers ``503 SlowDown``. Retrying alone
keeps asking too much: every process backs off and comes back with the same
number of requests. So every filesystem of a process that talks to one
endpoint also takes its place in that endpoint's :class:`AdaptiveLimiter`,
which lowers the requests in flight when the endpoint throttles and raises
them again as requests succeed (additive increase, multiplicative decrease,
as TCP and the AWS SDKs' adaptive retry mode do)::

    in flight
      32 |        *  <- SlowDown: x 0.5, once per window, never below 1
         |       /|                       __..--  +1 per window of successes,
      16 |      / |                __..--'        up to the ceiling
         |     /  |         __..--'
       8 |----'   |  __..--'
         |        |-'
         +------------------------------------------> time
          slow start: x 2 per window of successes, until the first SlowDown
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

from ..forking import ForkSafeLock
from ..retry import is_transient
from .calls import S3Calls

logger = logging.getLogger(__name__)

INITIAL_WINDOW = 8
"""Requests in flight a process starts with per endpoint (or the ceiling, if lower); doubled per window of
successes until the first throttle. Starting at the ceiling would send a burst of every process's
full window into an endpoint that may already be throttling its neighbours."""

DECREASE_FACTOR = 0.5
"""On a throttle, the window is multiplied by this (never below 1)."""

INCREASE_PER_WINDOW = 1.0
"""The window grows by this much per window's worth of successful requests, while it is full."""

_THROTTLING_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "ServiceUnavailable"})

Outcome = Literal["ok", "throttled"] | None
"""What a request's answer says about the endpoint's load: fine, too much, or nothing (a 404, a cancellation)."""


def is_throttling(exc: BaseException) -> bool:
    """Whether ``exc`` is the endpoint asking for fewer requests: a transient 503, ``SlowDown`` or ``Throttling``."""
    if not is_transient(exc):
        return False
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, ClientError):
            status = candidate.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return status == 503 or candidate.response.get("Error", {}).get("Code") in _THROTTLING_CODES
    return False


class RequestLimiter:
    """At most ``limit`` holders at once; the others wait in order. For one event loop at a time."""

    def __init__(self, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"max_requests_in_flight must be an int >= 1, got {limit!r}")
        if limit < 1:
            raise ValueError(f"max_requests_in_flight must be at least 1, got {limit}")
        self.limit = limit
        self.peak = 0
        """The most requests that were in flight at once."""
        self._held = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._pid = os.getpid()

    @property
    def in_flight(self) -> int:
        return self._held

    async def acquire(self) -> None:
        if os.getpid() != self._pid:  # a forked child starts with nothing in flight
            self._pid, self._held, self._waiting = os.getpid(), 0, deque()
        if self._held < self.limit and not self._waiting:
            self._held += 1
            self.peak = max(self.peak, self._held)
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await waiter  # release() hands its place over: _held already counts this one
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the place was handed over just as the waiter gave up
            else:
                self._waiting.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiting and self._held <= self.limit:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the place passes on; _held stays as it is
                return
        self._held -= 1


@dataclass(frozen=True)
class Ticket:
    """A request's place in an :class:`AdaptiveLimiter`: when it was sent, and the window it was sent under."""

    order: int
    """It was the ``order``-th request sent through the limiter (in this process)."""
    window: float


class AdaptiveLimiter:
    """Requests in flight to one endpoint from this process: halved when it throttles, grown back as requests succeed.

    Shared by every filesystem of the process that uses the endpoint, whatever
    event loop each runs on (a lock guards it; a waiter is woken on its own
    loop). Each request holds a :class:`Ticket`: a throttle lowers the window
    only if its request was sent after the last decrease, so one burst of
    ``SlowDown`` answers to the requests of one window counts once, not once
    per answer; and it halves the window its request was sent under, which in
    slow start is half the window by the time the answer comes back.
    """

    def __init__(self, endpoint: str, ceiling: int) -> None:
        self.endpoint = endpoint
        self.ceiling = ceiling
        """The window never grows past this: the largest ``max_requests_in_flight`` of the filesystems using it."""
        self.throttled = 0
        """Throttled answers seen, in this process."""
        self.decreases = 0
        self._window = float(min(INITIAL_WINDOW, ceiling))
        self._slow_start = True  # until the first throttle, each success adds 1: the window doubles
        self._lock = threading.Lock()
        self._held = 0
        self._waiting: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[Ticket]]] = deque()
        self._sent = 0  # tickets handed out; ticket n is the n-th request sent
        self._decreased_at = 0  # the last ticket sent before the last decrease

    @property
    def limit(self) -> int:
        """How many requests may be in flight now."""
        return max(1, int(self._window))

    @property
    def in_flight(self) -> int:
        return self._held

    def raise_ceiling(self, ceiling: int) -> None:
        """A filesystem with a higher ``max_requests_in_flight`` joined: the window may grow that far."""
        with self._lock:
            self.ceiling = max(self.ceiling, ceiling)

    async def acquire(self) -> Ticket:
        """Wait for a place; return its ticket, which ``release`` takes back."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._held < self.limit and not self._waiting:
                return self._take()
            waiter: asyncio.Future[Ticket] = loop.create_future()
            self._waiting.append((loop, waiter))
        try:
            return await waiter
        except asyncio.CancelledError:
            with self._lock:
                queued = any(queued is waiter for _, queued in self._waiting)
                if queued:
                    self._waiting = deque(entry for entry in self._waiting if entry[1] is not waiter)
            if not queued and waiter.done() and not waiter.cancelled():
                self.release(waiter.result(), None)  # handed over just as the waiter gave up
            # (a hand-over still on its way finds the waiter cancelled and gives the place back itself)
            raise

    def release(self, ticket: Ticket, outcome: Outcome) -> None:
        """Give a place back, telling what the endpoint answered; wake as many waiters as the window now allows."""
        with self._lock:
            self._learn(ticket, outcome)
            self._held -= 1
            handed = []
            while self._waiting and self._held < self.limit:
                loop, waiter = self._waiting.popleft()
                handed.append((loop, waiter, self._take()))
        for loop, waiter, handed_ticket in handed:
            self._hand_over(loop, waiter, handed_ticket)

    def _take(self) -> Ticket:
        self._held += 1
        self._sent += 1
        return Ticket(self._sent, self._window)

    def _learn(self, ticket: Ticket, outcome: Outcome) -> None:
        if outcome == "throttled":
            self.throttled += 1
            if ticket.order > self._decreased_at:  # sent after the last decrease: news, not an echo of it
                before = self.limit
                self._window = max(1.0, min(self._window, ticket.window) * DECREASE_FACTOR)
                self._slow_start = False
                self._decreased_at = self._sent
                self.decreases += 1
                logger.debug("%s throttles: requests in flight %d -> %d", self.endpoint, before, self.limit)
        elif outcome == "ok" and self._window < self.ceiling and (self._held >= self.limit or self._waiting):
            # Only a full window proves it is too small. Each success adds 1 in slow start (the window doubles
            # per window of successes), else 1/window (INCREASE_PER_WINDOW per window of them).
            before = self.limit
            step = 1.0 if self._slow_start else INCREASE_PER_WINDOW / self._window
            self._window = min(float(self.ceiling), self._window + step)
            if self.limit != before:
                logger.debug("%s: requests in flight %d -> %d", self.endpoint, before, self.limit)

    def _hand_over(self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[Ticket], ticket: Ticket) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._deliver(waiter, ticket)
            return
        try:
            loop.call_soon_threadsafe(self._deliver, waiter, ticket)
        except RuntimeError:  # that loop is closed: nobody waits there any more
            self.release(ticket, None)

    def _deliver(self, waiter: asyncio.Future[Ticket], ticket: Ticket) -> None:
        if waiter.done():  # cancelled meanwhile: the place goes to the next one
            self.release(ticket, None)
        else:
            waiter.set_result(ticket)

    def start_over_after_fork(self) -> None:
        """In a forked child: nothing of the parent's is in flight, and its lock may have been held at the fork."""
        self._lock = threading.Lock()
        self._held, self._waiting, self._sent, self._decreased_at = 0, deque(), 0, 0


_ENDPOINT_LIMITERS: dict[str, AdaptiveLimiter] = {}
_ENDPOINT_LIMITERS_LOCK = ForkSafeLock()


def endpoint_limiter(endpoint: str, ceiling: int) -> AdaptiveLimiter:
    """This process's adaptive limiter for ``endpoint``, its ceiling at least ``ceiling``."""
    with _ENDPOINT_LIMITERS_LOCK:
        limiter = _ENDPOINT_LIMITERS.get(endpoint)
        if limiter is None:
            limiter = _ENDPOINT_LIMITERS[endpoint] = AdaptiveLimiter(endpoint, ceiling)
    limiter.raise_ceiling(ceiling)
    return limiter


def _start_over_in_child() -> None:
    for limiter in _ENDPOINT_LIMITERS.values():  # what a child learned of an endpoint, it keeps: the window
        limiter.start_over_after_fork()


os.register_at_fork(after_in_child=_start_over_in_child)


class _ReleasingBody:
    """A response body that gives its request's places back when it is closed (once)."""

    def __init__(self, body: Any, release: Callable[[], None], loop: asyncio.AbstractEventLoop) -> None:
        self._body = body
        self._release: Callable[[], None] | None = release
        self._loop = loop
        self._pid = os.getpid()

    async def read(self, amt: int | None = None) -> bytes:
        data: bytes = await self._body.read(amt)
        return data

    def __getattr__(self, name: str) -> Any:  # what else the body can do (``receive_into``), as it does it
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._body, name)

    def close(self) -> None:
        try:
            self._body.close()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()

    def __del__(self) -> None:
        # A body nobody closed (a response lost to a cancellation) must not keep its place; in a forked
        # child, the places are the parent's, and the child's limiters started over without them.
        if self._release is not None and self._pid == os.getpid() and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._release)


class LimitedCalls:
    """:class:`S3Calls` that keep at most ``limiter.limit`` requests of ``inner`` in flight, and the endpoint's
    ``adaptive`` limit (None: no adaptation) across every filesystem of the process."""

    def __init__(self, inner: S3Calls, limiter: RequestLimiter, adaptive: AdaptiveLimiter | None = None) -> None:
        self._inner = inner
        self.limiter = limiter
        self.adaptive = adaptive

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._inner.loop

    async def send_once(self, method: str, **request: Any) -> dict[str, Any]:
        await self.limiter.acquire()
        try:
            ticket = await self.adaptive.acquire() if self.adaptive is not None else None
        except BaseException:
            self.limiter.release()
            raise
        try:
            response = await self._inner.send_once(method, **request)
        except BaseException as exc:
            self._release(ticket, "throttled" if is_throttling(exc) else None)
            raise
        if "Body" in response:
            response["Body"] = _ReleasingBody(
                response["Body"], lambda: self._release(ticket, "ok"), asyncio.get_running_loop()
            )
        else:
            self._release(ticket, "ok")
        return response

    def _release(self, ticket: Ticket | None, outcome: Outcome) -> None:
        try:
            if self.adaptive is not None and ticket is not None:
                self.adaptive.release(ticket, outcome)
        finally:
            self.limiter.release()
