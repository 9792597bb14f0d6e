"""The source behind one open reader: ``get_object_info()`` and ``get_stream(start, end)`` over S3.

Readers call these from their own thread; the requests run on the event loop
of the :class:`~fsspec_s3reader.transport.calls.S3Calls` given. How a range is
fetched::

    get_stream(start, end)
      [start ............................................... end)
      | part 0 | part 1 | part 2 | part 3 | ...          | last |
        \\ up to ``max_parts_in_flight`` GETs run at once; parts are
          handed out in order, as the ``bytes`` pieces the HTTP client
          received (never joined into a copy here).

While the ETag is not yet known, only the first GET is in flight; its response
headers pin the ETag and the rest of the window opens at once, so all parts
come from one version of the object.

A stream survives a ``fork``: the parts in flight belong to the parent's event
loop, which never runs in the child, so a child that reads on asks for them
again on its own loop, under the same pin (``If-Match``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fsspec.asyn import sync

from ..chunks import ChunkRun, joined
from ..errors import IncompleteObjectError
from ..protocol import Chunk, ObjectInfo
from ..retry import RetryPolicy
from .calls import S3Calls
from .link_estimate import LinkEstimate, part_fetched_ahead, part_for_a_read
from .object_requests import ObjectRequests

logger = logging.getLogger(__name__)

DEFAULT_PART_SIZE = 8 * 1024 * 1024
"""Bytes per ranged GET when a long range is split into concurrent parts."""

DEFAULT_MAX_PARTS_IN_FLIGHT = 8
"""Concurrent GETs per stream; with the default part size, a 64 MiB memory window."""

DEFAULT_FIRST_GET_SIZE = 64 * 1024
"""The first GET of an open object asks for this many bytes and learns its size from the answer: no HEAD."""

TAIL_TOLD_AT_MOST = 256 * 1024
"""A range read to the object's end that is this long at most is told as the object's tail (``on_tail``)."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class ObjectTail:
    """An object's last bytes, ``data`` from offset ``start`` to its end, and the version they came from."""

    info: ObjectInfo
    start: int
    data: bytes


def _check_count(name: str, value: int, least: int, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < least:
        raise ValueError(f"{name} must be {meaning}, got {value}")


@dataclass(frozen=True)
class TransportSettings:
    """How every transport of one filesystem fetches: part sizes, the window, retries, the first GET, pinning."""

    part_size: int = DEFAULT_PART_SIZE
    max_parts_in_flight: int = DEFAULT_MAX_PARTS_IN_FLIGHT
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    first_get_size: int = DEFAULT_FIRST_GET_SIZE
    """When > 0, learn an object's size from a GET of its first this-many bytes (kept) instead of a HEAD."""
    pin_versions: bool = False
    """Pin the first response's ``VersionId`` too (a version-aware filesystem), not only its ETag."""
    link_estimate: LinkEstimate | None = field(default=None, compare=False)
    """Where every GET records its time to first byte and throughput (a DCP load learns its link there)."""
    reads_fit_link: bool = False
    """Cut a stream that fits in flight into parts sized from ``link_estimate`` (``part_for_a_read``)."""

    def __post_init__(self) -> None:
        _check_count("part_size", self.part_size, 1, "a positive number of bytes")
        _check_count("max_parts_in_flight", self.max_parts_in_flight, 1, "at least 1")
        if isinstance(self.first_get_size, bool) or not isinstance(self.first_get_size, int) or self.first_get_size < 0:
            raise ValueError(f"first_get_size must be an int >= 0 (0 asks with a HEAD), got {self.first_get_size!r}")


def split_into_parts(start: int, end: int, part_size: int) -> list[tuple[int, int]]:
    """Cut ``[start, end)`` into consecutive ``[s, e)`` parts of at most ``part_size`` bytes."""
    return [(s, min(s + part_size, end)) for s in range(start, end, part_size)]


class S3ObjectTransport:
    """HEAD and ranged GETs for one S3 object; the source behind one open reader.

    Built by the filesystem for every file it opens, so the ETag pin and the
    cached object info live exactly as long as that file.
    """

    def __init__(
        self,
        calls: S3Calls,
        bucket: str,
        key: str,
        version_id: str | None = None,
        *,
        settings: TransportSettings | None = None,
        request_kwargs: dict[str, Any] | None = None,
        read_from_end: bool = False,
        listed: ObjectInfo | None = None,
        known_tail: ObjectTail | None = None,
        on_tail: Callable[[ObjectTail], None] | None = None,
    ) -> None:
        self._calls = calls
        self._on_tail = on_tail
        self._read_from_end = read_from_end
        self._settings = settings or TransportSettings()
        self._requests = ObjectRequests(
            calls,
            bucket,
            key,
            version_id,
            retry_policy=self._settings.retry_policy,
            pin_versions=self._settings.pin_versions,
            request_kwargs=dict(request_kwargs or {}),
            link_estimate=self._settings.link_estimate,
        )
        if read_from_end:  # a parquet file: pyarrow's reads span several GETs, handed out as one view
            self._requests.receive_in_place()
        # The object's first bytes, received by the GET that told us its size (or its last).
        self._first_bytes = ChunkRun()
        if known_tail is not None and version_id is None:
            # Another reader of this version read them moments ago: no request until the reads go past them.
            self._requests.assume_answered(known_tail.info)
            self._first_bytes = ChunkRun(known_tail.start, [known_tail.data])
        elif listed is not None and version_id is None:
            self._requests.assume_listed(listed)
        self._pid = os.getpid()

    @property
    def bucket(self) -> str:
        return self._requests.bucket

    @property
    def key(self) -> str:
        return self._requests.key

    @property
    def uri(self) -> str:
        return self._requests.uri

    @property
    def requests(self) -> ObjectRequests:
        """The object's requests (size, pin, retried parts), for a caller that schedules its own GETs on ``loop``."""
        return self._requests

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the requests run on."""
        return self._calls.loop

    # -- the protocol readers see ------------------------------------------------

    def get_object_info(self) -> ObjectInfo:
        """Size, ETag and version of the object; asked once, cached after.

        With ``first_get_size`` > 0, asked with a GET of the object's first
        ``first_get_size`` bytes rather than a HEAD (its last, for an object
        ``read_from_end``, as a parquet file is): the answer's ``Content-Range``
        tells the size, and the bytes are kept for the reads that usually
        follow (a small object is then read with one request, not two). An empty object, which has
        no first byte to ask for, is asked with a HEAD. A GET that already ran
        may have told us the size, in which case nothing is sent at all.
        """
        if self._requests.info is None:
            self._refuse_the_event_loop()
            self._start_over_after_fork()
            if self._settings.first_get_size > 0:
                sync(self._calls.loop, self._get_first_bytes)
            if self._requests.info is None:
                sync(self._calls.loop, self._requests.head)
        assert self._requests.info is not None
        return self._requests.info

    def get_stream(self, start: int, end: int, /, *, ahead: bool = False) -> Iterator[Chunk]:
        """Yield the bytes of ``[start, end)`` in order, as concurrent ranged GETs.

        The first GET is sent now, not at the first ``next()``: a reader that
        knows what it will need (the DCP reader's next range group) starts the
        stream early and the bytes are on their way while it works.

        A stream fetched ``ahead`` of any read is cut into parts of
        ``part_size`` (from a near server, of at least 32 MiB:
        ``part_fetched_ahead``): nobody waits for its first bytes, and the
        streams fetched ahead together keep the connections busy, so cutting
        each into parts that fit the link would only add requests (each costs
        the client, the server and the bill; on a server that is itself the
        bottleneck, it costs time too).
        """
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range [{start}, {end}) for {self.uri}")
        first_bytes = self._first_bytes
        if not first_bytes.start <= start < min(end, first_bytes.end):
            stream = _PartStream(self, self._cut(start, end, ahead))
            info = self._requests.info
            if self._on_tail is None or info is None or end != info.size or end - start > TAIL_TOLD_AT_MOST:
                return stream
            return _ToldAtEnd(stream, end - start, functools.partial(self._tell_tail, start))
        # The start of the range was received with the object's size: hand it
        # out from memory, and fetch only the rest (started now, as always).
        kept_to = min(end, first_bytes.end)
        kept = first_bytes.slice(start, kept_to)
        rest = _PartStream(self, self._cut(kept_to, end, ahead))
        return _KeptThenStreamed(kept, rest)

    def fetch_tail_ahead(self) -> concurrent.futures.Future[None]:
        """GET the object's last ``first_get_size`` bytes now, and return without waiting for them.

        ``on_tail`` hears the bytes when they arrive: a footer fetched before
        anyone opens the file (``footers_ahead.py``). The size must be known (a
        listing said it): the bytes are asked for by their offsets, as a
        reader's footer read would ask (a server that ignores a suffix range
        would take two requests).
        """
        info = self._requests.info
        if not self._read_from_end or info is None:
            raise ValueError(f"{self.uri}: only a transport that reads from the end, its size listed, fetches ahead")
        return self._submit(self._get_tail_from(max(0, info.size - self._settings.first_get_size), info.size))

    async def _get_tail_from(self, start: int, end: int) -> None:
        if start < end:
            self._tell_tail(start, await self._requests.get_part(start, end))

    # -- internals -----------------------------------------------------------------

    def _cut(self, start: int, end: int, ahead: bool) -> list[tuple[int, int]]:
        settings = self._settings
        part_size = settings.part_size
        if settings.reads_fit_link and settings.link_estimate is not None:
            sample = settings.link_estimate.sample()
            if ahead:
                part_size = part_fetched_ahead(sample, largest=part_size)
            else:
                part_size = part_for_a_read(
                    sample, end - start, largest=part_size, parts_in_flight=settings.max_parts_in_flight
                )
        return split_into_parts(start, end, part_size)

    async def _get_first_bytes(self) -> None:
        """GET the first bytes (or the last), as many as there are up to ``first_get_size``, learning size and ETag."""
        try:
            if self._read_from_end:
                start, chunks = await self._requests.get_tail(self._settings.first_get_size)
                self._first_bytes = ChunkRun(start, chunks)
                self._tell_tail(start, chunks)
                return
            chunks = await self._requests.get_part(0, self._settings.first_get_size, up_to_object_end=True)
        except IncompleteObjectError:
            # 416: an empty object has no byte 0 to ask for; the HEAD will tell its size.
            logger.debug("%s: no first byte to GET (an empty object?); asking with HEAD", self.uri)
            return
        self._first_bytes = ChunkRun(0, chunks)

    def _tell_tail(self, start: int, chunks: list[Chunk]) -> None:
        """Hand the object's last bytes, as received, to ``on_tail`` with the version they came from."""
        info = self._requests.answered_info()
        if self._on_tail is None or info is None:
            return
        data = joined(chunks)
        if start + len(data) == info.size:
            self._on_tail(ObjectTail(info, start, data))

    def _submit_part(self, start: int, end: int) -> concurrent.futures.Future[list[Chunk]]:
        return self._submit(self._requests.get_part(start, end))

    def _submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        try:
            self._refuse_the_event_loop()
        except RuntimeError:
            coro.close()
            raise
        self._start_over_after_fork()
        return asyncio.run_coroutine_threadsafe(coro, self._calls.loop)

    def _start_over_after_fork(self) -> None:
        """In a forked child, before its first request: renew the pin's lock, which a parent thread may have held.

        What the parent learned (size, pin, first bytes) stays: the child's
        GETs ask for the same version. ``self._calls.loop`` is the child's own
        (the filesystem starts over after a fork).
        """
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._requests.renew_locks_after_fork()

    def _refuse_the_event_loop(self) -> None:
        """Blocking on the requests' loop from inside it would wait forever: say so instead."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if running is self._calls.loop:
            raise RuntimeError(
                f"cannot read {self.uri} from inside fsspec's event loop; call the reader from a regular thread"
            )

    @property
    def pin_settled(self) -> bool:
        """Whether a response has told which version every GET must ask for."""
        return self._requests.pin_settled

    def _window(self) -> int:
        """GETs a stream may keep in flight: one until the first response has pinned the version.

        Unless the size came from a listing: then every part may go at once,
        and each answer's ETag is checked against the first one's instead.
        """
        if self.pin_settled or self._requests.sends_unpinned:
            return self._settings.max_parts_in_flight
        return 1

    def _wait_for_pin(self, first_part: concurrent.futures.Future[list[Chunk]]) -> None:
        self._start_over_after_fork()
        first_part.add_done_callback(lambda _: self._requests.notify_pin_waiters())
        self._requests.wait_for_pin(first_part.done)


class _PartStream(Iterator[Chunk]):
    """The parts of one range, fetched concurrently within a window and handed out in order."""

    def __init__(self, transport: S3ObjectTransport, parts: list[tuple[int, int]]) -> None:
        self._transport = transport
        self._parts = parts
        self._next_part = 0
        self._in_flight: deque[concurrent.futures.Future[list[Chunk]]] = deque()
        self._ready: deque[Chunk] = deque()  # the chunks of the part being handed out
        self._pid = os.getpid()  # whose event loop the futures in flight belong to
        self._fill_window()

    def __next__(self) -> Chunk:
        if not self._ready:
            self._ready.extend(self._next_part_chunks())
        return self._ready.popleft()

    def _next_part_chunks(self) -> list[Chunk]:
        self._ask_again_after_fork()
        if not self._in_flight:
            raise StopIteration
        if not self._transport.pin_settled and self._next_part < len(self._parts):
            # Open the window as soon as the first response's headers arrive
            # (they pin the ETag), not when its whole body has.
            self._transport._wait_for_pin(self._in_flight[0])
        self._fill_window()  # the pin may have settled since the last call, elsewhere too
        try:
            part = self._in_flight.popleft().result()
        except BaseException:
            self.close()
            raise
        self._fill_window()  # keep the window full while the caller works on this part
        return part

    def _fill_window(self) -> None:
        window = self._transport._window()
        while self._next_part < len(self._parts) and len(self._in_flight) < window:
            start, end = self._parts[self._next_part]
            self._in_flight.append(self._transport._submit_part(start, end))
            self._next_part += 1

    def _ask_again_after_fork(self) -> None:
        """In a forked child: forget the parent's parts in flight and ask for them again, on this process's loop.

        Their futures would never complete here (nothing runs the parent's
        loop in the child), so waiting on one would hang for good. They are
        dropped, not cancelled (cancelling would reach into the parent's
        loop), and not read even when done: a future's lock may have been held
        by the parent's loop thread at the fork. Bytes already handed out, and
        the part being handed out (``_ready``), stay.
        """
        if self._pid == os.getpid():
            return
        logger.debug(
            "%s: forked with %d parts in flight; asking for them again", self._transport.uri, len(self._in_flight)
        )
        self._pid = os.getpid()
        self._next_part -= len(self._in_flight)
        self._in_flight = deque()
        self._fill_window()

    def close(self) -> None:
        """Stop fetching: the caller closed the file or moved elsewhere."""
        if self._pid != os.getpid():
            self._in_flight = deque()  # the parent's: not this process's to cancel
        while self._in_flight:
            self._in_flight.pop().cancel()
        self._next_part = len(self._parts)
        self._ready.clear()

    def __del__(self) -> None:
        self.close()


class _ToldAtEnd(Iterator[Chunk]):
    """A stream of ``length`` bytes whose chunks, once the last has been handed out, are told to ``at_end``."""

    def __init__(self, stream: _PartStream, length: int, at_end: Callable[[list[Chunk]], None]) -> None:
        self._stream = stream
        self._unseen = length
        self._at_end: Callable[[list[Chunk]], None] | None = at_end
        self._seen: list[Chunk] = []

    def __next__(self) -> Chunk:
        chunk = next(self._stream)
        if self._at_end is not None:
            self._seen.append(chunk)
            self._unseen -= len(chunk)
            if self._unseen <= 0:  # a reader stops asking once it has its bytes: tell now, not at StopIteration
                at_end, self._at_end, seen, self._seen = self._at_end, None, self._seen, []
                at_end(seen)
        return chunk

    def close(self) -> None:
        self._at_end = None
        self._seen = []
        self._stream.close()


class _KeptThenStreamed(Iterator[Chunk]):
    """Bytes already in memory, then a stream of the rest; closing it closes the stream."""

    def __init__(self, kept: list[Chunk], rest: _PartStream) -> None:
        self._kept = deque(kept)
        self._rest = rest

    def __next__(self) -> Chunk:
        if self._kept:
            return self._kept.popleft()
        return next(self._rest)

    def close(self) -> None:
        self._kept.clear()
        self._rest.close()
