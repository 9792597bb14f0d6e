"""Where S3 lives: object info and ranged GETs for one object, through s3fs's client.

Readers see only ``get_object_info()`` and ``get_stream(start, end)``; this
module turns those into HEAD and ranged GET requests on fsspec's event loop,
retries what failed for a transient reason (with the policy of ``retry.py``,
resuming a broken body after its last byte received), and pins every GET of
one open object to the ETag seen first. Its ``TransferCounter`` is the one
place that counts requests and bytes; ``fs.stats`` reads it.

How a range is fetched::

    get_stream(start, end)
      [start ............................................... end)
      | part 0 | part 1 | part 2 | part 3 | ...          | last |
        \\ up to ``max_parts_in_flight`` GETs run at once; parts are
          handed out in order, as the ``bytes`` pieces the HTTP client
          received (never joined into a copy here).

While the ETag is not yet known, only the first GET is in flight; its response
headers pin the ETag and the rest of the window opens at once, so all parts
come from one version of the object.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import errno
import itertools
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError
from fsspec.asyn import sync

from .errors import IncompleteObjectError, ObjectChangedError, ReadRetriesExhaustedError
from .protocol import Chunk, ObjectInfo, slice_chunks
from .retry import BodyEndedEarlyError, RetryPolicy, is_transient, single_attempt

if TYPE_CHECKING:
    from s3fs import S3FileSystem

logger = logging.getLogger(__name__)

DEFAULT_PART_SIZE = 8 * 1024 * 1024
"""Bytes per ranged GET when a long range is split into concurrent parts."""

DEFAULT_MAX_PARTS_IN_FLIGHT = 8
"""Concurrent GETs per stream; with the default part size, a 64 MiB memory window."""


_T = TypeVar("_T")


@dataclass(frozen=True)
class TransferStats:
    """Requests a filesystem sent, body bytes it received, and bytes its readers handed to their callers.

    A snapshot: later traffic does not change it. Subtract two snapshots to
    get the traffic in between (``after - before``).
    """

    get_requests: int = 0
    head_requests: int = 0
    other_requests: int = 0
    """Listing, writing and the like: s3fs's own calls through this filesystem."""
    bytes_fetched: int = 0
    """Body bytes received from S3."""
    bytes_delivered: int = 0
    """Bytes the readers handed to their callers (``read``, ``readinto``, ``readline``)."""

    @property
    def requests(self) -> int:
        return self.get_requests + self.head_requests + self.other_requests

    @property
    def read_amplification(self) -> float:
        """Bytes fetched per byte delivered: 1.0 is ideal, more means bytes fetched in vain."""
        return self.bytes_fetched / self.bytes_delivered if self.bytes_delivered else float("nan")

    def __sub__(self, other: TransferStats) -> TransferStats:
        return TransferStats(
            get_requests=self.get_requests - other.get_requests,
            head_requests=self.head_requests - other.head_requests,
            other_requests=self.other_requests - other.other_requests,
            bytes_fetched=self.bytes_fetched - other.bytes_fetched,
            bytes_delivered=self.bytes_delivered - other.bytes_delivered,
        )


class TransferCounter:
    """The one place where requests and bytes are counted; safe across threads.

    The filesystem records every S3 call it makes (``record_request``),
    wraps every response body in a :class:`CountingBody`, so the readers'
    ranged GETs and s3fs's own calls (``info``, ``cat_file``, ...) are counted
    alike, and has each reader it opens report what it hands to its caller
    (``record_delivered``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = TransferStats()

    def record_request(self, method: str) -> None:
        with self._lock:
            stats = self._stats
            if method == "get_object":
                self._stats = dataclasses.replace(stats, get_requests=stats.get_requests + 1)
            elif method == "head_object":
                self._stats = dataclasses.replace(stats, head_requests=stats.head_requests + 1)
            else:
                self._stats = dataclasses.replace(stats, other_requests=stats.other_requests + 1)

    def record_bytes(self, count: int) -> None:
        with self._lock:
            self._stats = dataclasses.replace(self._stats, bytes_fetched=self._stats.bytes_fetched + count)

    def record_delivered(self, count: int) -> None:
        with self._lock:
            self._stats = dataclasses.replace(self._stats, bytes_delivered=self._stats.bytes_delivered + count)

    def renew_lock_after_fork(self) -> None:
        """In a forked child: a parent thread may have held the lock at the fork, and would never release it here."""
        self._lock = threading.Lock()

    def snapshot(self) -> TransferStats:
        with self._lock:
            return self._stats

    def reset(self) -> None:
        with self._lock:
            self._stats = TransferStats()


class CountingBody:
    """An S3 response body that records every byte read from it, then passes it on unchanged."""

    def __init__(self, body: Any, counter: TransferCounter) -> None:
        self._body = body
        self._counter = counter

    async def read(self, amt: int | None = None) -> bytes:
        data: bytes = await self._body.read(amt)
        self._counter.record_bytes(len(data))
        return data

    def close(self) -> None:
        self._body.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._body, name)


class _PartStream(Iterator[bytes]):
    """The parts of one range, fetched concurrently within a window and handed out in order."""

    def __init__(self, transport: S3ObjectTransport, parts: list[tuple[int, int]]) -> None:
        self._transport = transport
        self._parts = parts
        self._next_part = 0
        self._in_flight: deque[concurrent.futures.Future[list[bytes]]] = deque()
        self._ready: deque[bytes] = deque()  # the chunks of the part being handed out
        self._fill_window()

    def __next__(self) -> bytes:
        if not self._ready:
            self._ready.extend(self._next_part_chunks())
        return self._ready.popleft()

    def _next_part_chunks(self) -> list[bytes]:
        if not self._in_flight:
            raise StopIteration
        transport = self._transport
        if not transport._pin_settled and self._next_part < len(self._parts):
            # Open the window as soon as the first response's headers arrive
            # (they pin the ETag), not when its whole body has.
            transport._wait_for_pin(self._in_flight[0])
        self._fill_window()  # the pin may have settled since the last call, elsewhere too
        try:
            part = self._in_flight.popleft().result()
        except BaseException:
            self.close()
            raise
        self._fill_window()  # keep the window full while the caller works on this part
        return part

    def _fill_window(self) -> None:
        transport = self._transport
        window = transport._max_parts_in_flight if transport._pin_settled else 1
        while self._next_part < len(self._parts) and len(self._in_flight) < window:
            start, end = self._parts[self._next_part]
            self._in_flight.append(transport._submit(transport._get_part(start, end)))
            self._next_part += 1

    def close(self) -> None:
        """Stop fetching: the caller closed the file or moved elsewhere."""
        while self._in_flight:
            self._in_flight.pop().cancel()
        self._next_part = len(self._parts)
        self._ready.clear()

    def __del__(self) -> None:
        self.close()


async def _read_body_into(chunks: list[bytes], body: Any, length: int, timeout: float | None) -> None:
    """Append a response body's ``length`` bytes to ``chunks`` as the pieces the HTTP client received.

    ``read(n)`` hands back what the connection has buffered, up to ``n``
    bytes, as the client's own ``bytes`` objects; reading the whole body at
    once would copy every piece into a new buffer of the part's size. Each
    piece lands in ``chunks`` as soon as it arrives, so that when the
    connection breaks the caller knows exactly where to resume.
    """
    if timeout is None:
        await _read_pieces(chunks, body.read, length, lambda: None)
    elif sys.version_info >= (3, 11):
        # One deadline for the whole body, pushed back as bytes arrive. Moving
        # it costs a timer; so it moves only once a quarter of the timeout has
        # passed, and lies 1.25 timeouts after the last move: a body that goes
        # silent fails between 1 and 1.25 timeouts later, never sooner.
        # (asyncio.wait_for around every read would cost a task per piece,
        # ~30 us, thousands of times per part.)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(loop.time() + 1.25 * timeout) as deadline:
            moved_at = loop.time()

            def progress() -> None:
                nonlocal moved_at
                now = loop.time()
                if now - moved_at > timeout / 4:
                    deadline.reschedule(now + 1.25 * timeout)
                    moved_at = now

            await _read_pieces(chunks, body.read, length, progress)
    else:  # pragma: no cover - Python 3.10 has no asyncio.timeout

        async def read_within_timeout(amount: int) -> bytes:
            piece: bytes = await asyncio.wait_for(body.read(amount), timeout)
            return piece

        await _read_pieces(chunks, read_within_timeout, length, lambda: None)


async def _read_pieces(
    chunks: list[bytes], read: Callable[[int], Awaitable[bytes]], length: int, progress: Callable[[], None]
) -> None:
    remaining = length
    while remaining > 0:
        piece = await read(remaining)
        if not piece:
            raise BodyEndedEarlyError(f"the response body ended {remaining} bytes short of its {length}")
        chunks.append(piece)
        remaining -= len(piece)
        progress()


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


def validate_part_settings(part_size: int, max_parts_in_flight: int) -> None:
    """Refuse part settings that could never fetch anything."""
    for name, value in (("part_size", part_size), ("max_parts_in_flight", max_parts_in_flight)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}")
    if part_size <= 0:
        raise ValueError(f"part_size must be a positive number of bytes, got {part_size}")
    if max_parts_in_flight <= 0:
        raise ValueError(f"max_parts_in_flight must be at least 1, got {max_parts_in_flight}")


def split_into_parts(start: int, end: int, part_size: int) -> list[tuple[int, int]]:
    """Cut ``[start, end)`` into consecutive ``[s, e)`` parts of at most ``part_size`` bytes."""
    return [(s, min(s + part_size, end)) for s in range(start, end, part_size)]


def _client_error_code(exc: BaseException) -> str | None:
    """The S3 error code behind an exception s3fs translated, if there is one."""
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, ClientError):
            code = candidate.response.get("Error", {}).get("Code")
            return str(code) if code is not None else None
    return None


def _parse_content_range(content_range: str | None) -> tuple[int, int, int | None] | None:
    """``Content-Range: bytes 0-99/12345`` as ``(0, 100, 12345)`` (end exclusive; total None for ``*``)."""
    if not content_range or not content_range.startswith("bytes ") or "/" not in content_range:
        return None
    span, _, total = content_range[len("bytes ") :].partition("/")
    first, _, last = span.partition("-")
    if not (first.isdigit() and last.isdigit()):
        return None
    return int(first), int(last) + 1, int(total) if total.isdigit() else None


class S3ObjectTransport:
    """HEAD and ranged GETs for one S3 object; the source behind one open reader.

    Built by the filesystem for every file it opens, so the ETag pin and the
    cached object info live exactly as long as that file.
    """

    def __init__(
        self,
        fs: S3FileSystem,
        bucket: str,
        key: str,
        version_id: str | None = None,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        max_parts_in_flight: int = DEFAULT_MAX_PARTS_IN_FLIGHT,
        retry_policy: RetryPolicy | None = None,
        request_kwargs: dict[str, Any] | None = None,
        first_get_size: int = 0,
    ) -> None:
        validate_part_settings(part_size, max_parts_in_flight)
        self._first_get_size = first_get_size
        # The object's first bytes, received by the GET that told us its size.
        self._head_bytes: list[bytes] = []
        self._head_starts: list[int] = []
        self._head_length = 0
        self._fs = fs
        self.bucket = bucket
        self.key = key
        self._version_id = version_id
        self._part_size = part_size
        self._max_parts_in_flight = max_parts_in_flight
        self._retry_policy = retry_policy or RetryPolicy()
        self._request_kwargs_extra = dict(request_kwargs or {})
        self._info: ObjectInfo | None = None
        self._pinned_etag: str | None = None
        self._pinned_version: str | None = None
        # Settled once a response told us the ETag (or that there is none);
        # until then a stream keeps one GET in flight so all parts share a pin.
        self._pin_settled = version_id is not None
        self._pin_changed = threading.Condition()

    @property
    def uri(self) -> str:
        suffix = f"?versionId={self._version_id}" if self._version_id else ""
        return f"s3://{self.bucket}/{self.key}{suffix}"

    # -- the protocol readers see ------------------------------------------------

    def get_object_info(self) -> ObjectInfo:
        """Size, ETag and version of the object; asked once, cached after.

        With ``first_get_size`` > 0, asked with a GET of the object's first
        ``first_get_size`` bytes rather than a HEAD: the answer's ``Content-Range`` tells the size, and the
        bytes are kept for the reads that usually follow (a small object is
        then read with one request instead of two). An empty object, which has
        no first byte to ask for, is asked with a HEAD. A GET that already ran
        may have told us the size, in which case nothing is sent at all.
        """
        if self._info is None:
            self._refuse_the_event_loop()
            if self._first_get_size > 0:
                sync(self._fs.loop, self._get_head_bytes)
            if self._info is None:
                response = sync(self._fs.loop, self._head)
                self._learn(response, int(response["ContentLength"]))
        assert self._info is not None
        return self._info

    def get_stream(self, start: int, end: int) -> Iterator[Chunk]:
        """Yield the bytes of ``[start, end)`` in order, as concurrent ranged GETs.

        The first GET is sent now, not at the first ``next()``: a reader that
        knows what it will need (the DCP reader's next range group) starts the
        stream early and the bytes are on their way while it works.
        """
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range [{start}, {end}) for {self.uri}")
        kept_to = min(end, self._head_length)
        if start >= kept_to:
            return _PartStream(self, split_into_parts(start, end, self._part_size))
        # The start of the range was received with the object's size: hand it
        # out from memory, and fetch only the rest (started now, as always).
        kept = slice_chunks(self._head_bytes, self._head_starts, start, kept_to)
        rest = _PartStream(self, split_into_parts(kept_to, end, self._part_size))
        return _KeptThenStreamed(kept, rest)

    # -- internals -----------------------------------------------------------------

    def _submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        try:
            self._refuse_the_event_loop()
        except RuntimeError:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, self._fs.loop)

    def _refuse_the_event_loop(self) -> None:
        """Blocking on fsspec's loop from inside it would wait forever: say so instead."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if running is self._fs.loop:
            raise RuntimeError(
                f"cannot read {self.uri} from inside fsspec's event loop; call the reader from a regular thread"
            )

    def _wait_for_pin(self, first_part: concurrent.futures.Future[list[bytes]]) -> None:
        first_part.add_done_callback(lambda _: self._notify_pin_waiters())
        with self._pin_changed:
            self._pin_changed.wait_for(lambda: self._pin_settled or first_part.done())

    def _notify_pin_waiters(self) -> None:
        with self._pin_changed:
            self._pin_changed.notify_all()

    def _learn(self, response: dict[str, Any], size: int | None) -> None:
        """Keep what a response told us: the ETag to pin and, if known, the size."""
        with self._pin_changed:
            if self._info is None and size is not None:
                self._info = ObjectInfo(size=size, etag=response.get("ETag"), version_id=response.get("VersionId"))
            if not self._pin_settled:
                self._pinned_etag = response.get("ETag")
                if getattr(self._fs, "version_aware", False):
                    # The user opted into versions (and the permission to GET
                    # them): later GETs ask for this very version, so an
                    # overwrite mid-read does not even interrupt the read.
                    self._pinned_version = response.get("VersionId")
                self._pin_settled = True
            self._pin_changed.notify_all()

    def _request_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {**self._request_kwargs_extra, "Bucket": self.bucket, "Key": self.key}
        version_id = self._version_id or self._pinned_version
        if version_id:
            kwargs["VersionId"] = version_id
        return kwargs

    def _translate(self, exc: Exception, what: str) -> Exception | None:
        """The error to raise instead of ``exc`` where it has a clearer one; else None."""
        code = _client_error_code(exc)
        if isinstance(exc, FileNotFoundError) or code in ("NoSuchKey", "NoSuchBucket", "NoSuchVersion", "404"):
            error: Exception = FileNotFoundError(
                errno.ENOENT, "No such S3 object (check the bucket, the key and the endpoint)", self.uri
            )
        elif isinstance(exc, PermissionError) or code in ("AccessDenied", "AllAccessDisabled", "403"):
            error = PermissionError(
                errno.EACCES, "Access denied (check the credentials, or anon=True for a public object)", self.uri
            )
        elif code == "PreconditionFailed":
            error = ObjectChangedError(
                errno.ESTALE,
                f"{self.uri} was overwritten while being read (pinned ETag {self._pinned_etag}); "
                "reopen it to read the new version",
            )
        elif code == "InvalidRange":
            size = self._info.size if self._info else "unknown"
            error = IncompleteObjectError(errno.EIO, f"{what} lies beyond the end of {self.uri} (object size {size})")
        else:
            return None
        return error

    async def _head(self) -> dict[str, Any]:
        async def head_once(attempt: int) -> dict[str, Any]:
            began = time.monotonic()
            with single_attempt():
                response: dict[str, Any] = await asyncio.wait_for(
                    self._fs._call_s3("head_object", self._fs.kwargs, **self._request_kwargs()),
                    self._retry_policy.wait_limit,
                )
            logger.debug("HEAD %s in %.0f ms (attempt %d)", self.uri, (time.monotonic() - began) * 1000, attempt)
            return response

        return await self._with_retries(head_once, lambda: None)

    async def _with_retries(
        self, attempt_once: Callable[[int], Awaitable[_T]], unread: Callable[[], tuple[int, int] | None]
    ) -> _T:
        """``attempt_once(attempt)`` until it succeeds, fails for good, or the policy's attempts are spent.

        ``unread()`` names the bytes still missing after a failure (``None``
        for a HEAD), for the log and the final error.
        """
        policy = self._retry_policy
        for attempt in range(1, policy.attempts + 1):
            try:
                return await attempt_once(attempt)
            except Exception as exc:
                span = unread()
                what = "HEAD" if span is None else f"bytes [{span[0]}, {span[1]})"
                if not is_transient(exc):
                    translated = self._translate(exc, what)
                    if translated is None:
                        raise
                    raise translated from exc
                if attempt == policy.attempts:
                    raise ReadRetriesExhaustedError.after(self.bucket, self.key, span, attempt, exc) from exc
                delay = policy.delay(attempt)
                logger.warning(
                    "%s %s: attempt %d of %d failed (%s: %s); retrying in %.2fs",
                    self.uri,
                    what,
                    attempt,
                    policy.attempts,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def _check_served_range(
        self, response: dict[str, Any], start: int, end: int, what: str, up_to_object_end: bool = False
    ) -> int:
        """Accept a GET's response only if it holds the bytes asked for; learn the object's size from it.

        Returns where the served bytes end: ``end``, or the object's end when
        ``up_to_object_end`` allows the answer to stop there.
        """
        served = _parse_content_range(response.get("ContentRange"))
        if served is None or served[0] != start:
            # Without this check a server (or proxy) that ignores Range would
            # hand us the object's first bytes as if they were these.
            raise OSError(
                errno.EIO,
                f"{self.uri}: asked for {what}, the endpoint answered "
                f"{response.get('ContentRange') or 'without a Content-Range'}; it does not honour ranged GETs",
            )
        self._learn(response, served[2])
        if up_to_object_end and served[1] < end and served[1] == served[2]:
            return served[1]
        if served[1] != end:
            raise IncompleteObjectError(
                errno.EIO,
                f"{what} runs past the end of {self.uri} (object size {served[2]}); "
                "the object is shorter than expected",
            )
        return end

    async def _get_head_bytes(self) -> None:
        """GET the first bytes (as many as there are, up to ``first_get_size``), learning size and ETag."""
        try:
            chunks = await self._get_part(0, self._first_get_size, up_to_object_end=True)
        except IncompleteObjectError:
            # 416: an empty object has no byte 0 to ask for; the HEAD will tell its size.
            logger.debug("%s: no first byte to GET (an empty object?); asking with HEAD", self.uri)
            return
        self._head_bytes = chunks
        self._head_starts = list(itertools.accumulate((len(chunk) for chunk in chunks[:-1]), initial=0))
        self._head_length = sum(len(chunk) for chunk in chunks)

    async def _get_part(self, start: int, end: int, *, up_to_object_end: bool = False) -> list[bytes]:
        """The bytes ``[start, end)`` as received; a retry asks only for the bytes not yet received.

        ``up_to_object_end``: the object may end before ``end`` (its size is not
        known yet); then the bytes up to its end are the part.
        """
        chunks: list[bytes] = []

        def part_end() -> int:
            return min(end, self._info.size) if up_to_object_end and self._info else end

        def unread() -> tuple[int, int]:
            return start + sum(len(chunk) for chunk in chunks), part_end()

        async def get_rest(attempt: int) -> list[bytes]:
            rest, stop = unread()
            if rest < stop:  # a try that failed after its last byte leaves nothing to ask for
                await self._get_into(chunks, rest, stop, attempt, up_to_object_end=up_to_object_end)
            return chunks

        return await self._with_retries(get_rest, unread)

    async def _get_into(
        self, chunks: list[bytes], start: int, end: int, attempt: int, *, up_to_object_end: bool = False
    ) -> None:
        """One ranged GET of ``[start, end)``, its body appended to ``chunks`` as it arrives.

        ``up_to_object_end`` accepts an answer that stops at the object's end
        before ``end`` (the first GET, which does not know the size yet).
        """
        what = f"bytes [{start}, {end})"
        kwargs = self._request_kwargs()
        kwargs["Range"] = f"bytes={start}-{end - 1}"
        if self._pinned_etag:
            kwargs["IfMatch"] = self._pinned_etag
        timeout = self._retry_policy.wait_limit
        began = time.monotonic()
        already = len(chunks)
        with single_attempt():
            response = await asyncio.wait_for(self._fs._call_s3("get_object", **kwargs), timeout)
        body = response["Body"]
        try:
            served_end = self._check_served_range(response, start, end, what, up_to_object_end)
            await _read_body_into(chunks, body, served_end - start, timeout)
        finally:
            body.close()
            logger.debug(
                "GET %s %s: %d bytes in %.0f ms (attempt %d)",
                self.uri,
                what,
                sum(len(chunk) for chunk in chunks[already:]),
                (time.monotonic() - began) * 1000,
                attempt,
            )
