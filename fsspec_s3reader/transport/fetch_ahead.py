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
that waits for a part not yet sent makes it go at once, over the budget if
need be, so readers never wait for each other's bytes; that is all the budget
is exceeded by. Until an object's first response has pinned its version, it
has one GET in flight, as every stream does. Retries, resume and pinning are
``ObjectRequests.get_part``'s.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from ..protocol import Chunk, ObjectInfo
from .object_transport import S3ObjectTransport


@dataclass(frozen=True)
class PlannedSpan:
    """A range its reader reads front to back, and the items in it: ``(start, end)`` pairs, sorted, not overlapping."""

    start: int
    end: int
    items: tuple[tuple[int, int], ...]


@dataclass(eq=False)
class _Part:
    span: _Span
    start: int
    end: int
    received: concurrent.futures.Future[list[bytes]] | None = field(default_factory=concurrent.futures.Future)
    """The part's chunks once they arrive; None once released, so that nothing keeps them alive."""
    task: asyncio.Task[None] | None = None

    @property
    def released(self) -> bool:
        return self.received is None

    @property
    def size(self) -> int:
        return self.end - self.start


class _Span:
    """One planned span of one object: the parts cut from it so far, and who reads it."""

    def __init__(self, source: AheadObject, planned: PlannedSpan) -> None:
        self.source = source
        self.start, self.end = planned.start, planned.end
        self.item_ends = [end for _, end in planned.items]
        self.item_starts = [start for start, _ in planned.items]
        self.parts: list[_Part] = []
        self.cut_to = planned.start
        self.first_unreleased = 0
        self.claimed = False
        self.closed = False
        self.demanded = False

    def holds_from(self, position: int) -> int:
        """Where the bytes its reader may still use begin, once it reads at ``position``: its item's start."""
        index = bisect.bisect_right(self.item_ends, position)
        return self.item_starts[index] if index < len(self.item_starts) else position


class AheadObject:
    """One object of a :class:`FetchAhead`: the reader's ``get_object_info`` and ``get_stream`` for it.

    A stream asked for a planned span, once, gets the parts fetched ahead;
    anything else (a stray read, a span read again after a failure) goes to
    the object's transport, under the same version pin.
    """

    def __init__(self, fetch: FetchAhead, transport: S3ObjectTransport, spans: Sequence[PlannedSpan]) -> None:
        self._fetch = fetch
        self.transport = transport
        self.spans = [_Span(self, planned) for planned in spans]
        self._unclaimed = {(span.start, span.end): span for span in self.spans}
        self.in_flight = 0
        self.failed = False

    def get_object_info(self) -> ObjectInfo:
        return self.transport.get_object_info()

    def get_stream(self, start: int, end: int) -> Iterator[Chunk]:
        with self._fetch.lock:
            span = self._unclaimed.pop((start, end), None)
            if span is not None:
                span.claimed = True
        if span is None:
            return self.transport.get_stream(start, end)
        return _AheadStream(self._fetch, span)

    def may_send(self) -> bool:
        """One GET at a time until the version is pinned (so every part is of one version); none after a failure."""
        return not self.failed and (self.transport.requests.pin_settled or self.in_flight == 0)


class FetchAhead:
    """Fetches planned spans of many objects ahead of their readers, within ``budget`` bytes held.

    ``part_size()`` is asked each time a part is cut, so parts follow what the
    link has shown so far; at most ``max_parts_in_flight()`` GETs run at once
    besides those a reader waits for, and ``reserve()`` bytes of the budget are
    kept for those (one part per reader). ``add`` every object, then
    ``start``; ``close`` cancels what is still in flight.
    """

    def __init__(
        self,
        budget: int,
        part_size: Callable[[], int],
        max_parts_in_flight: Callable[[], int],
        *,
        reserve: Callable[[], int] = lambda: 0,
    ) -> None:
        self.lock = threading.Condition()
        self._budget = budget
        self._part_size = part_size
        self._max_in_flight = max_parts_in_flight
        self._reserve = reserve
        self._objects: list[AheadObject] = []
        self._spans: list[_Span] = []
        self._cursor = 0  # the first span in read order that may still have parts to cut
        self._demanded: deque[_Span] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.held = 0
        """Bytes sent for and not yet released: in flight, or received and not yet passed by their reader."""
        self.peak_held = 0
        self.in_flight = 0
        self._closed = False

    def add(self, transport: S3ObjectTransport, spans: Sequence[PlannedSpan]) -> AheadObject:
        added = AheadObject(self, transport, spans)
        self._objects.append(added)
        self._spans.extend(added.spans)
        return added

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
            self.lock.notify_all()
        with self.lock:
            self._release(parts)
        self._cancel(parts)

    # -- on the event loop ---------------------------------------------------------------

    def _schedule_soon(self) -> None:
        if self._loop is not None and not self._closed:
            self._loop.call_soon_threadsafe(self._schedule)

    def _schedule(self) -> None:
        with self.lock:
            parts = []
            while not self._closed and (part := self._next_part()) is not None:
                parts.append(part)
        assert self._loop is not None
        for part in parts:
            part.task = self._loop.create_task(self._get(part))

    def _next_part(self) -> _Part | None:
        """The next part to send, cut and counted; None when nothing may go now."""
        while self._demanded:  # a reader waits for these: they go whatever the budget
            span = self._demanded[0]
            if span.closed or span.cut_to >= span.end:
                self._demanded.popleft()
                continue
            if not span.source.may_send():
                break
            self._demanded.popleft()
            span.demanded = False
            return self._cut(span, self._size_of_next(span))
        if self.in_flight >= self._max_in_flight():
            return None
        ahead_budget = self._budget - self._reserve()
        for index in range(self._cursor, len(self._spans)):
            span = self._spans[index]
            if span.closed or span.cut_to >= span.end:
                if index == self._cursor:
                    self._cursor += 1
                continue
            if not span.source.may_send():
                continue  # waiting for its pin: a later object may go meanwhile
            size = self._size_of_next(span)
            if self.held + size > ahead_budget:
                return None  # in read order: nothing later jumps ahead of what does not fit
            return self._cut(span, size)
        return None

    def _size_of_next(self, span: _Span) -> int:
        size = max(1, self._part_size())
        left = span.end - span.cut_to
        # No sliver of a part at the end of a span: a request costs the same for 1 KiB as for 1 MiB.
        return left if left <= size + size // 4 else size

    def _cut(self, span: _Span, size: int) -> _Part:
        part = _Part(span, span.cut_to, span.cut_to + size)
        span.cut_to = part.end
        span.parts.append(part)
        span.source.in_flight += 1
        self.in_flight += 1
        self.held += part.size
        self.peak_held = max(self.peak_held, self.held)
        self.lock.notify_all()
        return part

    async def _get(self, part: _Part) -> None:
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

    def _finished(self, part: _Part, outcome: list[bytes] | BaseException | None) -> None:
        """A GET is over: count it out and hand its chunks (or its error) to the reader, unless released."""
        with self.lock:
            source = part.span.source
            source.in_flight -= 1
            self.in_flight -= 1
            received = part.received
            if isinstance(outcome, BaseException):
                source.failed = True
                if received is not None:
                    received.set_exception(outcome)
            elif outcome is not None and received is not None:
                received.set_result(outcome)

    # -- from the readers' threads -------------------------------------------------------

    def part_at(self, span: _Span, index: int) -> _Part:
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

    def release_behind(self, span: _Span, position: int) -> None:
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

    def close_span(self, span: _Span) -> None:
        """Its reader is done with ``span``: release its parts, stop those in flight, cut no more."""
        with self.lock:
            span.closed = True
            parts = span.parts[span.first_unreleased :]
            span.first_unreleased = len(span.parts)
            released = self._release(parts)
        self._cancel(parts)
        if released:
            self._schedule_soon()

    def _release(self, parts: list[_Part]) -> int:
        """Count ``parts`` as no longer held and let go of their chunks (under the lock)."""
        freed = 0
        for part in parts:
            received, part.received = part.received, None
            if received is not None:
                received.cancel()  # wakes nobody: a released part has no reader left
                freed += part.size
        self.held -= freed
        return freed

    def _cancel(self, parts: list[_Part]) -> None:
        """Stop the GETs of ``parts`` still in flight (their bytes are no longer wanted)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        for part in parts:
            task = part.task
            if task is not None and not task.done():
                loop.call_soon_threadsafe(task.cancel)


class _AheadStream(Iterator[Chunk]):
    """A planned span's bytes, part after part as they were fetched ahead; what a reader's ``get_stream`` returns."""

    def __init__(self, fetch: FetchAhead, span: _Span) -> None:
        self._fetch = fetch
        self._span = span
        self._next_part = 0
        self._position = span.start
        self._ready: deque[bytes] = deque()

    def __next__(self) -> Chunk:
        while not self._ready:
            if self._position >= self._span.end:
                raise StopIteration
            part = self._fetch.part_at(self._span, self._next_part)
            self._fetch.release_behind(self._span, self._position)
            received = part.received
            try:
                if received is None:
                    raise concurrent.futures.CancelledError(f"fetching {self._span.source.transport.uri} stopped")
                chunks = received.result()
            except BaseException:
                self.close()
                raise
            self._ready.extend(chunks)
            self._next_part += 1
            self._position = part.end
        return self._ready.popleft()

    def close(self) -> None:
        self._ready.clear()
        self._fetch.close_span(self._span)

    def __del__(self) -> None:
        if not self._span.closed:
            self.close()
