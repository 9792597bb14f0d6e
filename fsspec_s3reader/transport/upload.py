"""One S3 object written from a thread: a write-only stream that uploads full parts while the writer goes on.

``ObjectUpload`` copies what is written into a part buffer. Each full buffer
becomes one ``UploadPart`` request on the filesystem's event loop, up to
``parts_in_flight`` at once, while the writer thread fills the next one::

    writer thread   write() ... [ part 1 ][ part 2 ][ part 3 ][ part 4 filling ....... ]  close()
                                    |         |         |                                   |
    event loop              CreateMultipartUpload, UploadPart 1, 2, 3 ...      last part, CompleteMultipartUpload

The writer waits only when ``parts_in_flight`` parts are still travelling, so
one file holds at most ``part_size * (parts_in_flight + 1)`` bytes. An object
smaller than one part is sent by ``close()`` as a single ``PutObject``. S3
shows an object under its key only once its upload completes, so until
``close()`` returns nothing is there; ``abort()`` stops the parts still in
flight and then aborts the upload, leaving no parts behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ..retry import RetryPolicy, is_transient

logger = logging.getLogger(__name__)

MIB = 1024 * 1024

MIN_PART_SIZE = 5 * MIB
"""S3 refuses a smaller part, except the last."""

MAX_PART_SIZE = 5 * 1024 * MIB
"""S3 refuses a larger part."""

MAX_PARTS = 10_000
"""S3 takes at most this many parts per upload."""

PARTS_PER_SIZE = 1_000
"""After every this-many parts the part size doubles: 10,000 parts from 8 MiB up reach S3's 5 TiB objects."""

DEFAULT_UPLOAD_PART_SIZE = 16 * MIB
"""Bytes per part: large enough that a request's fixed cost is small, small enough to start sending early."""

DEFAULT_UPLOAD_PARTS_IN_FLIGHT = 4
"""Parts of one file travelling at once while the writer fills the next one."""

_T = TypeVar("_T")


class UploadCalls(Protocol):
    """What an upload needs from the filesystem: its event loop, and one S3 request sent exactly once."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    async def send_once(self, method: str, **request: Any) -> dict[str, Any]: ...


def check_upload_settings(part_size: int, parts_in_flight: int) -> None:
    """Refuse part sizes S3 would refuse and counts that could never upload, naming the writer's argument."""
    if isinstance(part_size, bool) or not isinstance(part_size, int):
        raise TypeError(f"upload_part_size must be an int (bytes per part), got {part_size!r}")
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise ValueError(
            f"upload_part_size must be between {MIN_PART_SIZE} (5 MiB, S3's smallest part) and "
            f"{MAX_PART_SIZE} (5 GiB, its largest), got {part_size}"
        )
    if isinstance(parts_in_flight, bool) or not isinstance(parts_in_flight, int):
        raise TypeError(
            f"upload_parts_in_flight must be an int (parts of one file sent at once), got {parts_in_flight!r}"
        )
    if parts_in_flight < 1:
        raise ValueError(
            f"upload_parts_in_flight must be at least 1 (1 sends one part at a time), got {parts_in_flight}"
        )


@dataclass(frozen=True)
class UploadSettings:
    """How one object is uploaded: bytes per part, parts in flight, and how a failed request is retried."""

    part_size: int = DEFAULT_UPLOAD_PART_SIZE
    parts_in_flight: int = DEFAULT_UPLOAD_PARTS_IN_FLIGHT
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        check_upload_settings(self.part_size, self.parts_in_flight)

    def size_of_part(self, part_number: int) -> int:
        """Bytes in part ``part_number`` (counted from 1): ``part_size``, doubled after every 1,000 parts."""
        return min(MAX_PART_SIZE, self.part_size << ((part_number - 1) // PARTS_PER_SIZE))

    @property
    def memory_per_file(self) -> int:
        """Bytes one upload holds at most (in its first 1,000 parts): the parts in flight and the one filling."""
        return self.part_size * (self.parts_in_flight + 1)


class UploadFailedError(OSError):
    """Writing an object to S3 failed, and its key was left as it was.

    ``bucket`` and ``key`` name the object, ``attempts`` how many tries the
    failed request had (after transient failures: the whole retry budget);
    ``__cause__`` is the last failure. A multipart upload has been aborted by
    the time the caller sees this.
    """

    bucket: str = ""
    key: str = ""
    attempts: int = 0

    @classmethod
    def after(cls, bucket: str, key: str, request: str, attempts: int, cause: BaseException) -> UploadFailedError:
        if isinstance(cause, PermissionError):
            code, way_out = errno.EACCES, "the credentials need s3:PutObject on this bucket"
        elif isinstance(cause, FileNotFoundError):
            code, way_out = errno.ENOENT, "check that the bucket exists"
        else:
            code, way_out = errno.EIO, "raise read_attempts (the retry budget of uploads too) or check the endpoint"
        tries = f"after {attempts} attempts" if attempts > 1 else "on its only attempt"
        error = cls(
            code,
            f"s3://{bucket}/{key}: {request} failed {tries}: {type(cause).__name__}: {cause}; "
            f"the key was left as it was; {way_out}",
        )
        # Plain attributes beside OSError's own arguments, so the error pickles
        # (torch gathers a failed rank's exceptions across processes).
        error.bucket, error.key, error.attempts = bucket, key, attempts
        return error


class ObjectUpload:
    """A write-only stream to ``s3://bucket/key`` that sends full parts while the writer fills the next.

    ``write`` copies into the part buffer and returns; ``close`` sends what is
    left and completes the object (a failure aborts the upload, then raises);
    ``abort`` discards everything. Written from one thread, which must not be
    the event loop's own.
    """

    def __init__(self, calls: UploadCalls, bucket: str, key: str, settings: UploadSettings) -> None:
        self._calls = calls
        self.bucket = bucket
        self.key = key
        self._settings = settings
        self._buffer = bytearray(settings.size_of_part(1))
        self._filled = 0
        self._position = 0
        self._parts_sent = 0
        self._upload_id: concurrent.futures.Future[str] | None = None
        self._in_flight: list[concurrent.futures.Future[dict[str, Any]]] = []
        self._finished_parts: list[dict[str, Any]] = []
        self._part_tasks: set[asyncio.Task[Any]] = set()  # touched on the event loop only
        self._state = "open"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def closed(self) -> bool:
        return self._state != "open"

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        """Nothing to do: full parts are already on their way, and the rest must wait to make a part."""

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError(f"the upload of {self.uri} is {self._state}; it takes no more writes")
        with memoryview(data) as given, given.cast("B") as view:
            size = len(view)
            written = 0
            while written < size:
                count = min(len(self._buffer) - self._filled, size - written)
                self._buffer[self._filled : self._filled + count] = view[written : written + count]
                self._filled += count
                written += count
                if self._filled == len(self._buffer):
                    self._send_buffer()
        self._position += size
        return size

    def close(self) -> None:
        """Send what is left and complete the object; on any failure abort the upload and raise."""
        if self.closed:
            return
        try:
            if self._upload_id is None:
                del self._buffer[self._filled :]
                self._run(self._put(self._buffer))
            else:
                if self._filled:
                    self._send_buffer()
                self._wait_for_parts(until_fewer_than=1)
                parts = sorted(self._finished_parts, key=lambda part: int(part["PartNumber"]))
                self._run(self._complete(self._upload_id, parts))
        except BaseException:
            self.abort()
            raise
        self._state = "completed"
        self._buffer = bytearray()

    def abort(self) -> None:
        """Stop the parts in flight, then abort the multipart upload; the key is left as it was.

        A failed abort is logged, not raised: the caller is usually handling
        the error that made it abort.
        """
        if self.closed:
            return
        self._state = "aborted"
        self._buffer = bytearray()
        for part in self._in_flight:
            part.cancel()
        try:
            self._run(self._stop_and_abort(self._upload_id))
        except Exception as exc:
            logger.warning(
                "could not abort the multipart upload of %s (%s: %s); its parts stay stored until an "
                "AbortIncompleteMultipartUpload lifecycle rule removes them",
                self.uri,
                type(exc).__name__,
                exc,
            )

    def __enter__(self) -> ObjectUpload:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- the writer's side -------------------------------------------------------------

    def _send_buffer(self) -> None:
        """Hand the buffer to a part request and start a new one, waiting first if the window is full."""
        if self._parts_sent == MAX_PARTS:
            raise ValueError(f"{self.uri} would need more than {MAX_PARTS} parts; S3 stores at most 5 TiB per object")
        if self._upload_id is None:
            self._upload_id = self._submit(self._create())
        self._wait_for_parts(until_fewer_than=self._settings.parts_in_flight)
        self._parts_sent += 1
        del self._buffer[self._filled :]  # the last part may be short
        self._in_flight.append(self._submit(self._upload_part(self._upload_id, self._parts_sent, self._buffer)))
        self._buffer = bytearray(self._settings.size_of_part(self._parts_sent + 1))
        self._filled = 0

    def _wait_for_parts(self, until_fewer_than: int) -> None:
        """Keep the parts that finished, raising the first failure; wait while too many are in flight."""
        while True:
            still = []
            for part in self._in_flight:
                if part.done():
                    self._finished_parts.append(part.result())
                else:
                    still.append(part)
            self._in_flight = still
            if len(still) < until_fewer_than:
                return
            concurrent.futures.wait(still, return_when=concurrent.futures.FIRST_COMPLETED)

    def _submit(self, work: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        loop = self._calls.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            work.close()
            raise RuntimeError(
                f"writing {self.uri} from a coroutine on the filesystem's own event loop would block the "
                "requests it waits for; write from another thread"
            )
        return asyncio.run_coroutine_threadsafe(work, loop)

    def _run(self, work: Coroutine[Any, Any, _T]) -> _T:
        return self._submit(work).result()

    # -- on the event loop --------------------------------------------------------------

    async def _create(self) -> str:
        response = await self._send("CreateMultipartUpload", "create_multipart_upload")
        return str(response["UploadId"])

    async def _upload_part(
        self, upload_id: concurrent.futures.Future[str], number: int, body: bytearray
    ) -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        self._part_tasks.add(task)
        try:
            uploading = await asyncio.wrap_future(upload_id)
            request = f"UploadPart {number} ({len(body)} bytes)"
            response = await self._send(request, "upload_part", UploadId=uploading, PartNumber=number, Body=body)
            return {"PartNumber": number, "ETag": response["ETag"]}
        finally:
            self._part_tasks.discard(task)

    async def _put(self, body: bytearray) -> None:
        await self._send(f"PutObject ({len(body)} bytes)", "put_object", Body=body)

    async def _complete(self, upload_id: concurrent.futures.Future[str], parts: list[dict[str, Any]]) -> None:
        uploading = await asyncio.wrap_future(upload_id)
        request = f"CompleteMultipartUpload ({len(parts)} parts)"
        await self._send(request, "complete_multipart_upload", UploadId=uploading, MultipartUpload={"Parts": parts})

    async def _stop_and_abort(self, upload_id: concurrent.futures.Future[str] | None) -> None:
        # Parts still sending could land after the abort and be stored again;
        # stop them first. The creation is never cancelled: once S3 has made
        # the upload, only its id lets us abort it.
        parts = list(self._part_tasks)
        for task in parts:
            task.cancel()
        await asyncio.gather(*parts, return_exceptions=True)
        if upload_id is None:
            return
        try:
            uploading = await asyncio.wrap_future(upload_id)
        except Exception:
            return  # never created: nothing to abort
        await self._send("AbortMultipartUpload", "abort_multipart_upload", UploadId=uploading)
        logger.info("aborted the multipart upload of %s after %d parts", self.uri, self._parts_sent)

    async def _send(self, request: str, method: str, **params: Any) -> dict[str, Any]:
        """One request, tried up to the policy's attempts while its failures are transient."""
        policy = self._settings.retry_policy
        attempt = 1
        while True:
            started = time.perf_counter()
            try:
                response = await self._calls.send_once(method, Bucket=self.bucket, Key=self.key, **params)
            except Exception as exc:
                if attempt >= policy.attempts or not is_transient(exc):
                    raise UploadFailedError.after(self.bucket, self.key, request, attempt, exc) from exc
                wait = policy.delay(attempt)
                logger.warning(
                    "%s of %s failed (%s: %s), attempt %d of %d; retrying in %.2f s",
                    request,
                    self.uri,
                    type(exc).__name__,
                    exc,
                    attempt,
                    policy.attempts,
                    wait,
                )
                await asyncio.sleep(wait)
                attempt += 1
                continue
            logger.debug(
                "%s of %s: %.0f ms, attempt %d", request, self.uri, (time.perf_counter() - started) * 1000, attempt
            )
            return response
