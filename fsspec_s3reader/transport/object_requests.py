"""One object's requests, on the event loop: HEAD and ranged GETs, retried, resumed, pinned and checked.

Each try is one ``S3Calls.send_once`` (one HTTP request); ``retry.py`` says
which failures deserve another and how long to wait. A broken body resumes
after its last byte received. The first response pins the object's ETag (and,
on a version-aware filesystem, its version), and every later GET asks for that
version, so an open file never mixes two. Every GET's ``Content-Range`` is
checked against the bytes asked for, and S3's answers become errors that
name ``s3://bucket/key``.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from ..errors import IncompleteObjectError, ObjectChangedError, ReadRetriesExhaustedError, describe_span
from ..in_place import IN_PLACE, SMALLEST, ObjectArena
from ..protocol import Chunk, ObjectInfo
from ..retry import RetryPolicy, configuration_error, is_transient
from .bodies import parse_content_range, read_body_into
from .calls import S3Calls
from .link_estimate import LinkEstimate
from .receive_buffers import RECEIVE_BUFFERS

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


def _client_error_code(exc: BaseException) -> str | None:
    """The S3 error code behind an exception s3fs translated, if there is one."""
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, ClientError):
            code = candidate.response.get("Error", {}).get("Code")
            return str(code) if code is not None else None
    return None


class _SuffixNotHonouredError(Exception):
    """The endpoint answered a suffix range with other bytes; its answer still told the object's size."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class ObjectRequests:
    """The requests of one open object: what they learned (size, pin) and how each is sent, retried and checked.

    Its coroutines run on ``calls.loop``; ``wait_for_pin`` is for the
    caller's thread, which waits there for the first response's headers.
    """

    def __init__(
        self,
        calls: S3Calls,
        bucket: str,
        key: str,
        version_id: str | None,
        *,
        retry_policy: RetryPolicy,
        pin_versions: bool,
        request_kwargs: dict[str, Any],
        link_estimate: LinkEstimate | None = None,
    ) -> None:
        self._calls = calls
        self._link_estimate = link_estimate
        self.bucket = bucket
        self.key = key
        self._version_id = version_id
        self._retry_policy = retry_policy
        self._pin_versions = pin_versions
        self._request_kwargs_extra = request_kwargs
        self.info: ObjectInfo | None = None
        self._info_listed = False  # ``info`` came from a listing, not from a response: the first response checks it
        self._pinned_etag: str | None = None
        self._pinned_version: str | None = None
        # Settled once a response told us the ETag (or that there is none);
        # until then a stream keeps one GET in flight so all parts share a pin.
        self.pin_settled = version_id is not None
        self._pin_changed = threading.Condition()
        # Called on the event loop once the pin settles: what schedules GETs itself opens its window then.
        self._pin_callbacks: list[Callable[[], None]] = []
        self._arena: ObjectArena | None = None
        self._lands_in_place = False

    @property
    def uri(self) -> str:
        suffix = f"?versionId={self._version_id}" if self._version_id else ""
        return f"s3://{self.bucket}/{self.key}{suffix}"

    # -- the pin, seen from the caller's thread ------------------------------------------

    def wait_for_pin(self, first_response_done: Callable[[], bool]) -> None:
        """Block until a response settled the pin, or the first request is over (it may have failed)."""
        with self._pin_changed:
            self._pin_changed.wait_for(lambda: self.pin_settled or first_response_done())

    def notify_pin_waiters(self) -> None:
        with self._pin_changed:
            self._pin_changed.notify_all()

    def call_when_pinned(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the event loop as soon as a response settles the pin (now, if it has)."""
        if self.pin_settled:
            callback()
        else:
            self._pin_callbacks.append(callback)

    def renew_locks_after_fork(self) -> None:
        """In a forked child: a parent thread may have held the pin's lock at the fork, and would never release it."""
        self._pin_changed = threading.Condition()

    def receive_in_place(self) -> None:
        """From now on, bodies land at their offsets in the object's arena (``in_place.py``) once its size is known.

        For objects whose reader hands out reads across several GETs as one
        buffer (pyarrow's reads of a parquet file); elsewhere bodies take
        buffers from the pool, whose pages stay warm from one object to the next.
        """
        self._lands_in_place = IN_PLACE

    def _in_arena(self, start: int, end: int) -> memoryview | None:
        """Where a body of ``[start, end)`` is received, when it lands in place (on the event loop)."""
        info = self.info
        if not self._lands_in_place or info is None or info.size < SMALLEST or end > info.size:
            return None
        if not (self._pinned_etag or self._pinned_version or self._version_id):
            return None  # no version to pin: a later GET of the same bytes could write others under a view
        if self._arena is None or self._arena.size != info.size:
            self._arena = ObjectArena(info.size, RECEIVE_BUFFERS.take_map)
        try:
            return self._arena.receive(start, end)
        except OSError as exc:  # no address space for it (a system that reserves memory for every map)
            logger.debug("%s: bodies get buffers of their own (no arena: %s)", self.uri, exc)
            self._lands_in_place = False
            return None

    def assume_listed(self, info: ObjectInfo) -> None:
        """Take the size (and ETag) a listing gave, so that opening the object sends nothing.

        The first response checks the size: an object that grew or shrank
        since it was listed raises :class:`ObjectChangedError` rather than
        being read to the listed length.
        """
        self.info = info
        self._info_listed = True

    def assume_answered(self, info: ObjectInfo) -> None:
        """Take the size and ETag (and version) a response gave moments ago, to another reader of the object.

        Unlike a listing's, they pin at once: every GET asks for that ETag
        (that version, when versions are pinned), so bytes kept from that
        response are never mixed with another version's.
        """
        self.info = info
        self._info_listed = False
        self._pinned_etag = info.etag
        if self._pin_versions:
            self._pinned_version = info.version_id
        self.pin_settled = True

    def answered_info(self) -> ObjectInfo | None:
        """The size and the ETag (version, when pinned) that responses pinned; None before that, or without an ETag."""
        if self.info is None or not self.pin_settled or self._pinned_etag is None or self._info_listed:
            return None
        return ObjectInfo(self.info.size, self._pinned_etag, self._pinned_version)

    @property
    def sends_unpinned(self) -> bool:
        """GETs may go out before a response pins the ETag (a listing told the size): each answer's ETag is checked."""
        return self._info_listed

    def _learn(self, response: dict[str, Any], size: int | None) -> None:
        """Keep what a response told us: the ETag to pin and, if known, the size."""
        with self._pin_changed:
            if self._info_listed and size is not None:
                self._check_listed_size(response, size)
            if self.info is None and size is not None:
                self.info = ObjectInfo(size=size, etag=response.get("ETag"), version_id=response.get("VersionId"))
            if not self.pin_settled:
                self._pinned_etag = response.get("ETag")
                if self._pin_versions:
                    # The user opted into versions (and the permission to GET
                    # them): later GETs ask for this very version, so an
                    # overwrite mid-read does not even interrupt the read.
                    self._pinned_version = response.get("VersionId")
                self.pin_settled = True
            elif self._pinned_etag is not None and response.get("ETag") not in (None, self._pinned_etag):
                # a GET sent before the pin settled, answered by another version
                raise ObjectChangedError(
                    errno.ESTALE,
                    f"{self.uri} was overwritten while being read (pinned ETag {self._pinned_etag}, "
                    f"answered {response.get('ETag')}); reopen it to read the new version",
                )
            self._pin_changed.notify_all()
        callbacks, self._pin_callbacks = self._pin_callbacks, []
        for callback in callbacks:
            callback()

    def _check_listed_size(self, response: dict[str, Any], size: int) -> None:
        assert self.info is not None
        self._info_listed = False
        if size != self.info.size:
            raise ObjectChangedError(
                errno.ESTALE,
                f"{self.uri} holds {size} bytes, but the listing (or info) it was opened from said {self.info.size}: "
                "it changed since; call fs.invalidate_cache() and reopen it",
            )
        if response.get("ETag") != self.info.etag:  # the same length, but a version written after the listing:
            self.info = None  # what the answer says replaces it

    # -- requests --------------------------------------------------------------------

    def _request(self) -> dict[str, Any]:
        request: dict[str, Any] = {**self._request_kwargs_extra, "Bucket": self.bucket, "Key": self.key}
        version_id = self._version_id or self._pinned_version
        if version_id:
            request["VersionId"] = version_id
        return request

    async def head(self) -> None:
        """Learn the size and pin from a HEAD."""

        async def head_once(attempt: int) -> dict[str, Any]:
            began = time.monotonic()
            response = await asyncio.wait_for(
                self._calls.send_once("head_object", **self._request()), self._retry_policy.wait_limit
            )
            logger.debug("HEAD %s in %.0f ms (attempt %d)", self.uri, (time.monotonic() - began) * 1000, attempt)
            return response

        response = await self._with_retries(head_once, lambda: None)
        self._learn(response, int(response["ContentLength"]))

    async def size(self) -> int:
        """The object's size: what a response told already, or a HEAD."""
        if self.info is None:
            await self.head()
        assert self.info is not None
        return self.info.size

    async def get_part(self, start: int, end: int, *, up_to_object_end: bool = False) -> list[Chunk]:
        """The bytes ``[start, end)`` as received; a retry asks only for the bytes not yet received.

        ``up_to_object_end``: the object may end before ``end`` (its size is not
        known yet); then the bytes up to its end are the part.
        """
        chunks: list[Chunk] = []

        def part_end() -> int:
            return min(end, self.info.size) if up_to_object_end and self.info else end

        def unread() -> tuple[int, int]:
            return start + sum(len(chunk) for chunk in chunks), part_end()

        async def get_rest(attempt: int) -> list[Chunk]:
            rest, stop = unread()
            if rest < stop:  # a try that failed after its last byte leaves nothing to ask for
                await self._get_into(chunks, rest, stop, attempt, up_to_object_end=up_to_object_end)
            return chunks

        return await self._with_retries(get_rest, unread)

    async def get_tail(self, length: int) -> tuple[int, list[Chunk]]:
        """The object's last ``length`` bytes (all of it, when it is shorter), and the offset they start at.

        One suffix GET (``Range: bytes=-length``) that also tells the size:
        what a reader of a file read from its end (a parquet footer) asks first.
        A try that broke off is resumed like any part, from the offset learned.
        """
        chunks: list[Chunk] = []
        located: list[int] = []  # the tail's first offset, once a response has said it

        def unread() -> tuple[int, int]:
            if not located or self.info is None:
                return -length, 0
            return located[0] + sum(len(chunk) for chunk in chunks), self.info.size

        async def get_rest(attempt: int) -> tuple[int, list[Chunk]]:
            if not located:
                try:
                    await self._get_suffix_into(chunks, located, length, attempt)
                except _SuffixNotHonouredError as refused:
                    # The answer told the size: ask for the same bytes by their offsets.
                    located.append(max(0, refused.size - length))
                    if located[0] < refused.size:
                        await self._get_into(chunks, located[0], refused.size, attempt)
            else:
                rest, stop = unread()
                if rest < stop:
                    await self._get_into(chunks, rest, stop, attempt)
            return located[0], chunks

        return await self._with_retries(get_rest, unread)

    async def _get_suffix_into(self, chunks: list[Chunk], located: list[int], length: int, attempt: int) -> None:
        what = f"the last {length} bytes"

        def accept(response: dict[str, Any]) -> tuple[int, int]:
            served = parse_content_range(response.get("ContentRange"))
            whole = response.get("ContentLength")
            if served is None and isinstance(whole, int) and whole <= length:
                served = (0, whole, whole)  # the whole object, shorter than the tail asked for, without a range
            if (
                served is not None
                and served[2] is not None
                and (served[1] != served[2] or served[1] - served[0] > length)
            ):
                # Some S3-compatible servers (s3rver) read "bytes=-N" as "bytes=0-N".
                self._learn(response, served[2])
                raise _SuffixNotHonouredError(served[2])
            if served is None or served[2] is None:
                raise self._range_not_honoured(response, what)
            self._learn(response, served[2])
            located.append(served[0])
            return served[0], served[1]

        await self._get(chunks, f"bytes=-{length}", what, attempt, accept)

    async def _get_into(
        self, chunks: list[Chunk], start: int, end: int, attempt: int, *, up_to_object_end: bool = False
    ) -> None:
        """One ranged GET of ``[start, end)``, its body appended to ``chunks`` as it arrives."""
        what = f"bytes [{start}, {end})"

        def accept(response: dict[str, Any]) -> tuple[int, int]:
            return start, self._check_served_range(response, start, end, what, up_to_object_end)

        await self._get(chunks, f"bytes={start}-{end - 1}", what, attempt, accept)

    async def _get(
        self,
        chunks: list[Chunk],
        byte_range: str,
        what: str,
        attempt: int,
        accept: Callable[[dict[str, Any]], tuple[int, int]],
    ) -> None:
        """One GET with ``Range: byte_range``; ``accept`` checks the answer and says which bytes it holds."""
        request = self._request()
        request["Range"] = byte_range
        if self._pinned_etag:
            request["IfMatch"] = self._pinned_etag
        timeout = self._retry_policy.wait_limit
        began = time.monotonic()
        already = len(chunks)
        response = await asyncio.wait_for(self._calls.send_once("get_object", **request), timeout)
        first_byte = time.monotonic()
        body = response["Body"]
        try:
            first, last = accept(response)
            await read_body_into(chunks, body, last - first, timeout, functools.partial(self._in_arena, first, last))
            if self._link_estimate is not None:
                self._link_estimate.record(first_byte - began, last - first, time.monotonic() - first_byte)
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

    def _range_not_honoured(self, response: dict[str, Any], what: str) -> OSError:
        # Without this check a server (or proxy) that ignores Range would
        # hand us the object's first bytes as if they were these.
        return OSError(
            errno.EIO,
            f"{self.uri}: asked for {what}, the endpoint answered "
            f"{response.get('ContentRange') or 'without a Content-Range'}; it does not honour ranged GETs",
        )

    def _check_served_range(
        self, response: dict[str, Any], start: int, end: int, what: str, up_to_object_end: bool
    ) -> int:
        """Accept a GET's response only if it holds the bytes asked for; learn the object's size from it.

        Returns where the served bytes end: ``end``, or the object's end when
        ``up_to_object_end`` allows the answer to stop there.
        """
        served = parse_content_range(response.get("ContentRange"))
        if served is None or served[0] != start:
            raise self._range_not_honoured(response, what)
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

    # -- retries and errors ------------------------------------------------------------

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
                what = "HEAD" if span is None else describe_span(span)
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

    def _translate(self, exc: Exception, what: str) -> Exception | None:
        """The error to raise instead of ``exc`` where it has a clearer one; else None."""
        misconfigured = configuration_error(exc)
        if misconfigured is not None:
            return misconfigured
        code = _client_error_code(exc)
        if isinstance(exc, FileNotFoundError) or code in ("NoSuchKey", "NoSuchBucket", "NoSuchVersion", "404"):
            return FileNotFoundError(
                errno.ENOENT, "No such S3 object (check the bucket, the key and the endpoint)", self.uri
            )
        if isinstance(exc, PermissionError) or code in ("AccessDenied", "AllAccessDisabled", "403"):
            return PermissionError(
                errno.EACCES, "Access denied (check the credentials, or anon=True for a public object)", self.uri
            )
        if code == "PreconditionFailed":
            return ObjectChangedError(
                errno.ESTALE,
                f"{self.uri} was overwritten while being read (pinned ETag {self._pinned_etag}); "
                "reopen it to read the new version",
            )
        if code == "InvalidRange":
            size = self.info.size if self.info else "unknown"
            return IncompleteObjectError(errno.EIO, f"{what} lies beyond the end of {self.uri} (object size {size})")
        return None
