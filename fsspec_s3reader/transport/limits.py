"""How many requests a filesystem has in flight: a limit on requests, held from send until the body is closed.

Many objects read at once (``fs.cat(list)``, a DataLoader's workers, several
files of a checkpoint) each want connections; without a bound, a list of
10,000 keys would open 10,000. ``LimitedCalls`` lets at most ``limit``
requests be in flight, counting each from the moment it is sent until its
body is closed, which is when its connection is free again.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from typing import Any

from .calls import S3Calls


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


class _ReleasingBody:
    """A response body that gives its request's place back when it is closed (once)."""

    def __init__(self, body: Any, limiter: RequestLimiter, loop: asyncio.AbstractEventLoop) -> None:
        self._body = body
        self._limiter: RequestLimiter | None = limiter
        self._loop = loop

    async def read(self, amt: int | None = None) -> bytes:
        data: bytes = await self._body.read(amt)
        return data

    def close(self) -> None:
        try:
            self._body.close()
        finally:
            limiter, self._limiter = self._limiter, None
            if limiter is not None:
                limiter.release()

    def __del__(self) -> None:
        # A body nobody closed (a response lost to a cancellation) must not keep its place.
        if self._limiter is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._limiter.release)


class LimitedCalls:
    """:class:`S3Calls` that keep at most ``limiter.limit`` requests of ``inner`` in flight."""

    def __init__(self, inner: S3Calls, limiter: RequestLimiter) -> None:
        self._inner = inner
        self.limiter = limiter

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._inner.loop

    async def send_once(self, method: str, **request: Any) -> dict[str, Any]:
        await self.limiter.acquire()
        try:
            response = await self._inner.send_once(method, **request)
        except BaseException:
            self.limiter.release()
            raise
        if "Body" in response:
            response["Body"] = _ReleasingBody(response["Body"], self.limiter, asyncio.get_running_loop())
        else:
            self.limiter.release()
        return response
