"""Ranges of many objects fetched ahead of their readers, in the order they will be read, within a byte budget.

A DCP load knows every range it will read before it reads one. This module
fetches them on the event loop, independently of how fast the readers use
them, and hands each reader its range as the received chunks::

    spans, in read order  [obj 0: span 0 ...... span 1 ..][obj 1: span 0 ..........][obj 2 ...
    parts, cut as sent    |part|part|part|part|part|       |part|part|part|part|      |part ...
    sent                  ─── next in read order, while the bytes held fit the budget ───>
    read                   ^ a reader (its item)            ^ another reader
    released              every part that ends before the item its reader is on

Bytes are held from the moment a part is sent until its reader has moved past
it (to an item that starts after the part's end) or closed its span. A reader
that waits for a part not yet sent makes it go at once, so readers never wait
for each other's bytes; room for that is kept in the budget, which only a
budget too small for the items being read exceeds. Until an object's first
response has pinned its version, it has one GET in flight, as every stream
does. Retries, resume and pinning are ``ObjectRequests.get_part``'s.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from ..protocol import Chunk
from .ahead_spans import AheadObject, AheadPart, AheadSpan, AheadStream, PlannedSpan
from .link_estimate import PartPlan
from .object_transport import S3ObjectTransport

__all__ = ["AheadObject", "AheadStream", "FetchAhead", "PlannedSpan"]


class FetchAhead:
    """Fetches planned spans of many objects ahead of their readers, within ``budget`` bytes held.

    ``sizing()`` is asked each time a part is cut, so parts follow what the
    link has shown so far. Each of the ``readers`` may need, besides what is
    fetched ahead, the item it is on (up to ``largest_item`` bytes, as parts
    it waits for) and as much again for what it builds from them (torch's
    tensor): that much of the budget is kept for each, and the rest is
    fetched ahead. So the bytes held, and what the readers build, stay
    within the budget whenever it holds that much. ``add`` every object,
    then ``start``; ``close`` cancels what is still in flight.
    """

    def __init__(self, budget: int, sizing: Callable[[], PartPlan], *, readers: int = 1, largest_item: int = 0) -> None:
        self.lock = threading.Condition()
        self._budget = budget
        self._readers = readers
        self._largest_item = largest_item
        self._sizing = sizing
        self._objects: list[AheadObject] = []
        self._spans: list[AheadSpan] = []
        self._cursor = 0  # the first span in read order that may still have parts to cut
        self._demanded: deque[AheadSpan] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.held = 0
        """Bytes sent for and not yet released: in flight, or received and not yet passed by their reader."""
        self.peak_held = 0
        self.in_flight = 0
        self.part_sizes: dict[int, int] = {}
        """How many parts of each size were cut."""
        self.schedules = 0
        """How many times the event loop looked for parts to send (for tests that wait for the fetch to settle)."""
        self._received = 0
        self._busy_seconds = 0.0
        self._busy_since: float | None = None
        self._closed = False

    def add(self, transport: S3ObjectTransport, spans: Sequence[PlannedSpan]) -> AheadObject:
        added = AheadObject(self, transport, spans)
        self._objects.append(added)
        self._spans.extend(added.spans)
        return added

    @property
    def delivery_rate(self) -> float | None:
        """Bytes received per second while at least one GET was in flight; None before two parts arrived (for logs)."""
        busy = self._busy_seconds + (time.monotonic() - self._busy_since if self._busy_since is not None else 0.0)
        if sum(self.part_sizes.values()) < 2 or self._received == 0 or busy <= 0:
            return None
        return self._received / busy

    def start(self) -> None:
        if not self._objects:
            return
        self._loop = self._objects[0].transport.loop
        self._loop.call_soon_threadsafe(self._start_on_loop)

    def _start_on_loop(self) -> None:
        for added in self._objects:
            added.transport.requests.call_when_pinned(self._schedule_soon)
        self._schedule()

    def close(self) -> None:
        """Stop fetching and release everything; readers still waiting get ``CancelledError``."""
        with self.lock:
            self._closed = True
            parts = [part for span in self._spans for part in span.parts]
            for span in self._spans:
                span.closed = True
            self._release(parts)
            self.lock.notify_all()
        self._cancel(parts)

    # -- on the event loop ---------------------------------------------------------------

    def _schedule_soon(self) -> None:
        if self._loop is not None and not self._closed:
            self._loop.call_soon_threadsafe(self._schedule)

    def _schedule(self) -> None:
        with self.lock:
            self.schedules += 1
            parts = []
            while not self._closed and (part := self._next_part()) is not None:
                parts.append(part)
            self.lock.notify_all()
        assert self._loop is not None
        for part in parts:
            part.task = self._loop.create_task(self._get(part))

    def _next_part(self) -> AheadPart | None:
        """The next part to send, cut and counted; None when nothing may go now."""
        plan = self._sizing()
        while self._demanded:  # a reader waits for these: they go whatever the budget
            span = self._demanded[0]
            if span.closed or span.cut_to >= span.end:
                self._demanded.popleft()
                continue
            if not span.source.may_send(ahead=False):
                break
            self._demanded.popleft()
            span.demanded = False
            return self._cut(span, self._size_of_next(span, plan))
        if self.in_flight >= plan.parts_in_flight:
            return None
        kept_for_readers = self._readers * (2 * self._largest_item + plan.part_size)
        ahead_budget = self._budget - kept_for_readers
        for index in range(self._cursor, len(self._spans)):
            span = self._spans[index]
            if span.closed or span.cut_to >= span.end:
                if index == self._cursor:
                    self._cursor += 1
                continue
            if not span.source.may_send(ahead=True):
                continue  # waiting for its pin: a later object may go meanwhile
            size = self._size_of_next(span, plan)
            if self.held + size > ahead_budget:
                return None  # in read order: nothing later jumps ahead of what does not fit
            return self._cut(span, size)
        return None

    def _size_of_next(self, span: AheadSpan, plan: PartPlan) -> int:
        # As the transport cuts a range: whole parts, then what is left (ceil(span / part) GETs).
        return min(max(1, plan.part_size), span.end - span.cut_to)

    def _cut(self, span: AheadSpan, size: int) -> AheadPart:
        part = AheadPart(span, span.cut_to, span.cut_to + size)
        span.cut_to = part.end
        span.parts.append(part)
        span.source.in_flight += 1
        if self.in_flight == 0:
            self._busy_since = time.monotonic()
        self.in_flight += 1
        self.held += part.size
        self.peak_held = max(self.peak_held, self.held)
        self.part_sizes[size] = self.part_sizes.get(size, 0) + 1
        self.lock.notify_all()
        return part

    async def _get(self, part: AheadPart) -> None:
        try:
            chunks = await part.span.source.transport.requests.get_part(part.start, part.end)
        except asyncio.CancelledError:
            self._finished(part, None)
            raise
        except BaseException as exc:
            self._finished(part, exc)
        else:
            self._finished(part, chunks)
        self._schedule()

    def _finished(self, part: AheadPart, outcome: list[Chunk] | BaseException | None) -> None:
        """A GET is over: count it out and hand its chunks (or its error) to the reader, unless released."""
        with self.lock:
            source = part.span.source
            source.in_flight -= 1
            self.in_flight -= 1
            if isinstance(outcome, list):
                self._received += part.size
            if self.in_flight == 0 and self._busy_since is not None:
                self._busy_seconds += time.monotonic() - self._busy_since
                self._busy_since = None
            received = part.received
            if isinstance(outcome, BaseException):
                source.failed = True
                if received is not None:
                    received.set_exception(outcome)
            elif outcome is not None and received is not None:
                received.set_result(outcome)
            self.lock.notify_all()

    # -- from the readers' threads -------------------------------------------------------

    def part_at(self, span: AheadSpan, index: int) -> AheadPart:
        """The ``index``-th part of ``span``, sent now if it was not yet (its reader is waiting for it)."""
        with self.lock:
            while index >= len(span.parts):
                if self._closed or span.closed:
                    raise concurrent.futures.CancelledError(f"fetching ahead of {span.source.transport.uri} stopped")
                if not span.demanded:
                    span.demanded = True
                    self._demanded.append(span)
                    self._schedule_soon()
                self.lock.wait()
            return span.parts[index]

    def release_behind(self, span: AheadSpan, position: int) -> None:
        """Its reader reads at ``position``: release the parts that end before the item it is on."""
        keep_from = span.holds_from(position)
        with self.lock:
            passed = []
            while span.first_unreleased < len(span.parts) and span.parts[span.first_unreleased].end <= keep_from:
                passed.append(span.parts[span.first_unreleased])
                span.first_unreleased += 1
            released = self._release(passed)
        if released:
            self._schedule_soon()

    def close_span(self, span: AheadSpan) -> None:
        """Its reader is done with ``span``: release its parts, stop those in flight, cut no more."""
        with self.lock:
            span.closed = True
            span.cut_to = span.end
            parts = span.parts[span.first_unreleased :]
            span.first_unreleased = len(span.parts)
            released = self._release(parts)
        self._cancel(parts)
        if released:
            self._schedule_soon()

    def _release(self, parts: list[AheadPart]) -> int:
        """Count ``parts`` as no longer held and let go of their chunks (under the lock)."""
        freed = 0
        for part in parts:
            received, part.received = part.received, None
            if received is not None:
                received.cancel()  # wakes nobody: a released part has no reader left
                freed += part.size
        self.held -= freed
        return freed

    def _cancel(self, parts: list[AheadPart]) -> None:
        """Stop the GETs of ``parts`` still in flight (their bytes are no longer wanted)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        for part in parts:
            task = part.task
            if task is not None and not task.done():
                loop.call_soon_threadsafe(task.cancel)
