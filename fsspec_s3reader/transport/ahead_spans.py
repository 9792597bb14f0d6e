"""What readers see of a :class:`~fsspec_s3reader.transport.fetch_ahead.FetchAhead`: planned spans and their streams.

An ``AheadObject`` stands for one object: its reader gets ``get_object_info``
and ``get_stream`` from it. A planned span asked for once is an
``AheadStream`` over the parts fetched ahead (``AheadPart``: the chunks as
received, dropped once released); anything else goes to the object's
transport. The stream tells the fetch where its reader is, so that the parts
behind the reader's item are released::

    span      [item a .........][item b ....]      [item c ..]
    parts     |part 0     |part 1     |part 2     |part 3     |
    reader                          ^ on item b: part 0 ends before b, released
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..protocol import Chunk, ObjectInfo
from .object_transport import S3ObjectTransport

if TYPE_CHECKING:
    from .fetch_ahead import FetchAhead


@dataclass(frozen=True)
class PlannedSpan:
    """A range its reader reads front to back, and the items in it: ``(start, end)`` pairs, sorted, not overlapping."""

    start: int
    end: int
    items: tuple[tuple[int, int], ...]


@dataclass(eq=False)
class AheadPart:
    """One GET of a span, ``[start, end)``: sent when cut, counted as held until released."""

    span: AheadSpan
    start: int
    end: int
    received: concurrent.futures.Future[list[Chunk]] | None = field(default_factory=concurrent.futures.Future)
    """The part's chunks once they arrive; None once released, so that nothing keeps them alive."""
    task: asyncio.Task[None] | None = None

    @property
    def released(self) -> bool:
        return self.received is None

    @property
    def size(self) -> int:
        return self.end - self.start


class AheadSpan:
    """One planned span of one object: the parts cut from it so far, and who reads it."""

    def __init__(self, source: AheadObject, planned: PlannedSpan) -> None:
        self.source = source
        self.start, self.end = planned.start, planned.end
        self.item_ends = [end for _, end in planned.items]
        self.item_starts = [start for start, _ in planned.items]
        self.parts: list[AheadPart] = []
        self.cut_to = planned.start
        self.first_unreleased = 0
        self.closed = False
        self.demanded = False

    def holds_from(self, position: int) -> int:
        """Where the bytes its reader may still use begin, once it reads at ``position``: its item's start.

        Never past ``position``: a reader in a gap skips the gap's bytes on its way to the next item.
        """
        index = bisect.bisect_right(self.item_ends, position)
        return min(position, self.item_starts[index]) if index < len(self.item_starts) else position


class AheadObject:
    """One object of a :class:`FetchAhead`: the reader's ``get_object_info`` and ``get_stream`` for it.

    A stream asked for a planned span, once, gets the parts fetched ahead;
    anything else (a stray read, a span read again after a failure) goes to
    the object's transport, under the same version pin.
    """

    def __init__(self, fetch: FetchAhead, transport: S3ObjectTransport, spans: Sequence[PlannedSpan]) -> None:
        self._fetch = fetch
        self.transport = transport
        self.spans = [AheadSpan(self, planned) for planned in spans]
        self._unclaimed = {(span.start, span.end): span for span in self.spans}
        self.in_flight = 0
        self.failed = False

    def get_object_info(self) -> ObjectInfo:
        return self.transport.get_object_info()

    def get_stream(self, start: int, end: int, /, *, ahead: bool = False) -> Iterator[Chunk]:
        with self._fetch.lock:
            span = self._unclaimed.pop((start, end), None)
        if span is None:
            return self.transport.get_stream(start, end, ahead=ahead)
        return AheadStream(self._fetch, span)

    def may_send(self, *, ahead: bool) -> bool:
        """One GET at a time until the version is pinned, so that every part is of one version.

        After a GET failed for good, nothing more is fetched ahead of the
        reader (it will meet that error); what it waits for is still sent.
        """
        if ahead and self.failed:
            return False
        return self.transport.requests.pin_settled or self.in_flight == 0


class AheadStream(Iterator[Chunk]):
    """A planned span's bytes, part after part as they were fetched ahead; what a reader's ``get_stream`` returns."""

    def __init__(self, fetch: FetchAhead, span: AheadSpan) -> None:
        self._fetch = fetch
        self._span = span
        self._next_part = 0
        self._position = span.start
        self._ready: deque[Chunk] = deque()

    def __next__(self) -> Chunk:
        while not self._ready:
            if self._position >= self._span.end:
                raise StopIteration
            self._fetch.release_behind(self._span, self._position)
            part = self._fetch.part_at(self._span, self._next_part)
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
