"""A small HTTP/1.1 client for the lean path: one request at a time per kept-alive connection, bodies as received.

The lean path sends three kinds of request (a GET of a byte range, a HEAD,
a listing) to one endpoint, and reads each body as the pieces the socket
delivered. A general client does more for each: aiohttp builds a request
object with its multidicts and cookie jar, fires its tracing signals, and
its parser copies every piece of a body out of the buffer it arrived in.
On a near server, where the machines' CPU is the bound, that is about
0.1 ms per request and 0.16 ms per MB (a GET of 1.7 MB: 0.72 ms of client
CPU through aiohttp, 0.44 ms here). This client keeps only what those
requests need:

- connections kept alive per origin, at most ``limit`` in use at once
  (as aiohttp's connector limit), the most recently used taken first, none
  reused after ``KEPT_IDLE_AT_MOST`` seconds idle;
- a body delimited by ``Content-Length`` (every S3 answer but some errors),
  by chunks, or by the connection's end; read either as the pieces the
  socket delivered (``read``), reading paused once ``_HIGH_WATER`` bytes
  wait unread, or received straight into the caller's buffer
  (``receive_into``): the socket writes a GET's bytes where they will stay,
  as much as it holds per call, with no piece objects and no copy, and (on
  Linux, plain TCP) wakes the loop once 256 KiB wait, not at each piece;
- an idempotent request whose kept-alive connection the server closed
  before any answer is sent again once on a new connection (RFC 9112,
  9.3.1), as every client does: the server closed it while idle;
- errors as aiohttp's (``ClientConnectionError``, ``ClientPayloadError``,
  ``ConnectionTimeoutError``): the retry rules know them already.

It never follows redirects, decompresses, sends cookies or goes through a
proxy: the lean path hands a bucket behind a proxy to botocore.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import importlib.metadata
import logging
import platform
import socket
import ssl
import sys
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

if sys.platform.startswith("linux"):
    import fcntl
    import termios

logger = logging.getLogger(__name__)

_HIGH_WATER = 256 * 1024
"""Bytes received and not read yet at which the connection stops reading (the server then waits on TCP): what
the transport's budgets count is what it took, so what waits here stays small (a DCP load without staging peaked
at about 285-317 MiB beyond the state dict with 1 MiB here, 273-278 MiB with 256 KiB, as fast)."""
_LOW_WATER = 64 * 1024
_SCRATCH = 64 * 1024
"""Bytes received per call where no caller's buffer waits (an answer's head, a listing, an error): small bodies."""
_WAKE_AT_MOST = 256 * 1024
"""Bytes a plain TCP socket holds before it wakes the loop while ``receive_into`` waits for more (``SO_RCVLOWAT``).

A near server's bytes arrive about 64 KiB at a time, and the loop woke for
each, to put them where they go and wait again: 316 wakes into buffers for
a dataset scan's 27 MB, 96 with this. The caller wakes only when its buffer
is full anyway, so waking the loop later delays nothing for it. Never more
than the destination still expects, and back to one byte as soon as no
destination waits, so an answer's head or a body's last bytes wake it at
once. Not more: with 1 MiB (35 wakes) a server on the same machine spent
more CPU per byte sending to a reader that lets bytes pile up, and GETs of
2.5 MB one at a time took 8% longer on loopback (4% with this). Linux only,
plain TCP only (under TLS the bytes on the wire are not the bytes
expected)."""
_CAN_WAIT_FOR_BYTES = sys.platform.startswith("linux")
_LONGEST_HEAD = 64 * 1024
"""An answer's status line and headers longer than this are not HTTP from S3: the connection is dropped."""
_NO_BODY_STATUSES = frozenset({204, 304})
KEPT_IDLE_AT_MOST = 15.0
"""Seconds a connection waits idle for its next request before it is closed rather than reused (aiohttp's
default): a server or a NAT on the way may forget it first (S3 closes idle connections after about 20 s), and
a request sent on a connection forgotten silently would wait for an answer that never comes."""


@functools.lru_cache(maxsize=1)
def _unverified_context() -> ssl.SSLContext:
    """TLS without checking the server's certificate (``verify=False``): no CA bundle to load, one per process."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@functools.lru_cache(maxsize=1)
def user_agent() -> str:
    """Who asks, as servers and their logs see it (botocore names itself likewise)."""
    try:
        version = importlib.metadata.version("fsspec_s3reader")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "unknown"
    return f"fsspec-s3reader/{version} python/{platform.python_version()}"


class Http1Response:
    """One answer: its status, reason and headers, and its body read as the pieces received."""

    def __init__(self, method: str, connection: _Connection) -> None:
        self.method = method
        self.status = 0
        self.reason = ""
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
        self._connection: _Connection | None = connection
        self._pieces: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._complete = False
        self._keep_alive = True
        self._remaining: int | None = None  # bytes of the body still to come, when its length is known
        self._chunked: _Chunks | None = None
        # receive_into: where the socket writes the body now, how much it wrote there, when it last did
        self._destination: memoryview | None = None
        self._destination_filled = 0
        self._received_at = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._loop = connection.loop

    # -- fed by the connection ---------------------------------------------------------------

    def _start(self, status: int, reason: str, headers: CIMultiDict[str], http11: bool) -> None:
        self.status, self.reason, self.headers = status, reason, CIMultiDictProxy(headers)
        connection_header = headers.get("Connection", "").lower()
        self._keep_alive = "close" not in connection_header if http11 else "keep-alive" in connection_header
        if self.method == "HEAD" or status in _NO_BODY_STATUSES or 100 <= status < 200:
            self._remaining = 0
        elif "chunked" in headers.get("Transfer-Encoding", "").lower():
            self._chunked = _Chunks()
        elif "Content-Length" in headers:
            length = headers["Content-Length"].strip()
            if not length.isdigit():
                raise MalformedAnswerError(f"a Content-Length that is not a count of bytes: {length[:40]!r}")
            self._remaining = int(length)
        else:
            self._keep_alive = False  # the body ends with the connection
        if self._remaining == 0:
            self._finish()

    def _feed(self, data: bytes) -> bytes:
        """Take this answer's share of ``data``; return what follows it (bytes a server should not have sent)."""
        rest = b""
        if self._chunked is not None:
            pieces, rest, done = self._chunked.feed(data)
            for piece in pieces:
                self._append(piece)
            if done:
                self._finish()
            return rest
        if self._remaining is not None:
            if len(data) > self._remaining:
                data, rest = data[: self._remaining], data[self._remaining :]
            self._remaining -= len(data)
        self._append(data)
        if self._remaining == 0:
            self._finish()
        return rest

    def _append(self, piece: bytes) -> None:
        if not piece:
            return
        self._pieces.append(piece)
        self._buffered += len(piece)
        if self._buffered >= _HIGH_WATER and self._connection is not None:
            self._connection.pause()
        self._wake()

    def _finish(self) -> None:
        self._complete = True
        self._wake()
        if self._connection is not None:
            self._connection.answered()

    def _received_into(self, count: int) -> None:
        """The socket wrote ``count`` more bytes into the destination ``receive_into`` gave it."""
        assert self._destination is not None and self._remaining is not None
        self._destination_filled += count
        self._remaining -= count
        self._received_at = self._loop.time()
        if self._remaining == 0:
            self._finish()  # wakes the reader
        elif self._destination_filled == len(self._destination):
            self._wake()
        if self._connection is not None:  # the socket wakes the loop once what the destination still expects waits
            self._connection.wake_at(0 if self._complete else len(self._destination) - self._destination_filled)

    def _end_of_stream(self, exc: BaseException | None) -> None:
        """The connection closed: the end of a body delimited by it, or a body cut short."""
        if self._complete:
            return
        if self._remaining is None and self._chunked is None and exc is None:
            self._complete = True
        else:
            message = "the connection closed before the whole answer arrived"
            self._error = aiohttp.ClientPayloadError(f"{message}: {exc}" if exc else message)
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- read by the caller --------------------------------------------------------------------

    def at_eof(self) -> bool:
        return self._complete and not self._pieces

    async def read_some(self, limit: int | None = None) -> bytes:
        """The next piece received (cut at ``limit`` bytes), waiting for one; ``b""`` at the body's end."""
        while not self._pieces:
            if self._error is not None:
                raise self._error
            if self._complete:
                return b""
            self._waiter = self._loop.create_future()
            await self._waiter
        return self._next_piece(limit)

    def _next_piece(self, limit: int | None) -> bytes:
        """The first piece waiting (cut at ``limit`` bytes, the rest left first); reading resumes once few wait."""
        piece = self._pieces.popleft()
        if limit is not None and len(piece) > limit:
            self._pieces.appendleft(piece[limit:])
            piece = piece[:limit]
        self._buffered -= len(piece)
        if self._buffered <= _LOW_WATER and self._connection is not None:
            self._connection.resume()
        return piece

    async def read(self, amt: int | None = None) -> bytes:
        """At most ``amt`` bytes, as received (``read_some``); without ``amt``, the rest of the body, whole.

        With ``close()``, what the transport reads a body through.
        """
        if amt is not None:
            return await self.read_some(amt)
        pieces = []
        while piece := await self.read_some():
            pieces.append(piece)
        return b"".join(pieces)

    async def receive_into(self, buffer: memoryview, *, idle_timeout: float | None = None) -> int:
        """Fill ``buffer`` with the body's next bytes; return how many, fewer only at the body's end or a failure.

        The socket writes straight into ``buffer``, as much as it holds per
        call, and the caller wakes once: when ``buffer`` is full, the body
        over, or the connection broken. Bytes that came before (with the
        answer's head) are copied in first. A failure after some bytes
        returns them, and the next call raises it, so the caller knows where
        to resume. ``idle_timeout``: raise ``TimeoutError`` once that many
        seconds pass without a byte (not a bound on the whole body).
        """
        filled = self._take_pieces_into(buffer)
        if filled == len(buffer) or self.at_eof():
            return filled
        if self._error is not None:
            if filled:
                return filled
            raise self._error
        if self._remaining is None:  # chunks, or a body that ends with the connection: piece by piece
            while filled < len(buffer):
                try:
                    piece = await asyncio.wait_for(self.read_some(len(buffer) - filled), idle_timeout)
                except (TimeoutError, asyncio.TimeoutError, aiohttp.ClientError) as exc:
                    if not filled:
                        raise
                    self._error = self._error or exc  # raised by the next call: first, the bytes that came
                    break
                if not piece:
                    break
                buffer[filled : filled + len(piece)] = piece
                filled += len(piece)
            return filled
        destination = self._destination = buffer[filled : filled + min(len(buffer) - filled, self._remaining)]
        self._destination_filled = 0
        self._received_at = self._loop.time()
        if idle_timeout is not None:
            self._watchdog = self._loop.call_at(self._received_at + idle_timeout, self._watch, idle_timeout)
        if self._connection is not None:
            self._connection.resume()
            self._connection.wake_at(len(destination))
        try:
            while self._destination_filled < len(destination) and not self._complete and self._error is None:
                self._waiter = self._loop.create_future()
                await self._waiter
        finally:
            filled += self._destination_filled
            self._destination = None
            if self._connection is not None:
                self._connection.wake_at(1)
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None
        if filled == 0 and self._error is not None:
            raise self._error
        return filled

    def _take_pieces_into(self, buffer: memoryview) -> int:
        """Copy the pieces already received (and not read) into ``buffer``; how many bytes that was."""
        filled = 0
        while self._pieces and filled < len(buffer):
            piece = self._next_piece(len(buffer) - filled)
            buffer[filled : filled + len(piece)] = piece
            filled += len(piece)
        return filled

    def _watch(self, idle_timeout: float) -> None:
        """``receive_into``'s idle timer: fail the wait once the socket has been silent ``idle_timeout`` seconds."""
        if self._destination is None:
            return
        silent_until = self._received_at + idle_timeout
        if self._loop.time() >= silent_until and self._connection is not None and self._connection.holds_unread():
            # bytes came, fewer than the socket waits for before waking the loop: take them and watch on
            self._received_at = self._loop.time()
            self._connection.wake_at(1)
            silent_until = self._received_at + idle_timeout
        if self._loop.time() < silent_until:
            self._watchdog = self._loop.call_at(silent_until, self._watch, idle_timeout)
            return
        self._error = TimeoutError(f"no byte of the answer arrived for {idle_timeout} s")
        self._wake()

    def release(self) -> None:
        """Done with this answer: its connection goes back to the pool if the body was read to its end, else closes."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.done_with(self, reusable=self.at_eof() and self._keep_alive and self._error is None)

    close = release
    """A body read to its end hands its connection back to the pool; one left unread (a part cancelled, a stream
    closed early) closes it."""

    def __del__(self) -> None:
        if self._connection is not None:  # never released (a caller that raised): free its place in the pool
            self._connection.abandon()


class _Chunks:
    """A chunked body's framing (``Transfer-Encoding: chunked``): sizes, data, and the trailer after the last."""

    def __init__(self) -> None:
        self._buffer = b""
        self._left = 0  # bytes of the current chunk's data still to come
        self._after_data = False  # its data read, the CRLF after it not yet
        self._trailer = False

    def feed(self, data: bytes) -> tuple[list[bytes], bytes, bool]:
        pieces: list[bytes] = []
        data = self._buffer + data
        self._buffer = b""
        while data:
            if self._left:
                piece, data = data[: self._left], data[self._left :]
                self._left -= len(piece)
                pieces.append(piece)
                self._after_data = self._left == 0
                continue
            line_end = data.find(b"\r\n")
            if line_end < 0:
                if len(data) > _LONGEST_HEAD:
                    raise MalformedAnswerError("a chunked body's framing is malformed")
                self._buffer = data
                break
            line, data = data[:line_end], data[line_end + 2 :]
            if self._after_data:
                self._after_data = False
                continue
            if self._trailer:
                if not line:
                    return pieces, data, True
                continue
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise MalformedAnswerError(f"a chunk size that is not hexadecimal: {line[:40]!r}") from None
            if size == 0:
                self._trailer = True
            else:
                self._left = size
        return pieces, b"", False


class _Connection(asyncio.BufferedProtocol):
    """One kept-alive connection to an origin: it carries one request and its answer at a time.

    A buffered protocol: asyncio asks it where to put the next bytes
    (``get_buffer``) before each receive. While ``receive_into`` waits, that
    is the caller's buffer; otherwise a small scratch buffer, whose bytes
    become the pieces that ``read`` hands out.
    """

    def __init__(self, pool: Http1Client, origin: str) -> None:
        self._pool = pool
        self.loop = pool.loop
        self.origin = origin
        self._scratch = memoryview(bytearray(_SCRATCH))
        self._filling: Http1Response | None = None  # the answer whose destination the last get_buffer gave
        self._transport: asyncio.Transport | None = None
        self._head = b""
        self._response: Http1Response | None = None
        self._headers_arrived: asyncio.Future[None] | None = None
        self._received_any = False
        self._paused = False
        self._socket: socket.socket | None = None  # a plain TCP socket whose wake-up mark this connection sets
        self._wakes_at = 1
        self.closed = False
        self.idle_since = 0.0

    # -- asyncio's callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if _CAN_WAIT_FOR_BYTES and transport.get_extra_info("sslcontext") is None:
            self._socket = transport.get_extra_info("socket")

    def get_buffer(self, sizehint: int) -> memoryview:
        response = self._response
        if (
            response is not None
            and response._destination is not None
            and response._destination_filled < len(response._destination)
            and self._headers_arrived is None
        ):
            self._filling = response
            return response._destination[response._destination_filled :]
        self._filling = None
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        filling = self._filling
        if filling is not None:
            self._received_any = True
            filling._received_into(nbytes)
        else:
            self.data_received(bytes(self._scratch[:nbytes]))

    def data_received(self, data: bytes) -> None:
        self._received_any = True
        response = self._response
        if response is None:  # nothing asked: a server that talks out of turn is not trusted again
            self.close()
            return
        try:
            if self._headers_arrived is not None:
                data = self._read_head(data)
                if self._headers_arrived is not None or not data:
                    return
            rest = response._feed(data)
        except aiohttp.ClientError as exc:
            self._fail(exc)
            return
        if rest:
            logger.debug("%s sent %d bytes after its answer; closing the connection", self.origin, len(rest))
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._transport = None
        arrived, self._headers_arrived = self._headers_arrived, None
        if arrived is not None and not arrived.done():
            if self._received_any:
                arrived.set_exception(aiohttp.ServerDisconnectedError("the connection closed inside an answer's head"))
            else:
                arrived.set_exception(ClosedBeforeAnswerError(exc))
        elif self._response is not None:
            self._response._end_of_stream(exc)
        self._pool.forget(self)

    def pause_writing(self) -> None:  # requests are a few hundred bytes: nothing to hold back
        pass

    def resume_writing(self) -> None:
        pass

    # -- one exchange ------------------------------------------------------------------------

    async def exchange(self, method: str, head: bytes, on_written: Callable[[], None]) -> Http1Response:
        """Send a request's ``head`` and wait for its answer's status and headers."""
        if self._transport is None:
            raise ClosedBeforeAnswerError(None)
        response = self._response = Http1Response(method, self)
        self._headers_arrived = self.loop.create_future()
        self._received_any = False
        self._transport.write(head)
        on_written()
        try:
            await self._headers_arrived
        except BaseException:
            response._connection = None  # never handed out: the request's place is freed by its sender
            raise
        return response

    def _read_head(self, data: bytes) -> bytes:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _LONGEST_HEAD:
                raise MalformedAnswerError(f"an answer's head longer than {_LONGEST_HEAD} bytes")
            return b""
        head, rest = self._head[:end], self._head[end + 4 :]
        self._head = b""
        lines = head.decode("latin-1").split("\r\n")
        version, _, status_reason = lines[0].partition(" ")
        status, _, reason = status_reason.partition(" ")
        if not version.startswith("HTTP/1.") or not status.isdigit():
            raise MalformedAnswerError(f"not an HTTP/1 answer: {lines[0][:60]!r}")
        if 100 <= int(status) < 200:  # 100 Continue and the like: the answer proper follows
            return self._read_head(rest) if rest else b""
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
        assert self._response is not None
        self._response._start(int(status), reason, headers, version == "HTTP/1.1")
        arrived, self._headers_arrived = self._headers_arrived, None
        if arrived is not None and not arrived.done():
            arrived.set_result(None)
        return rest

    def _fail(self, exc: BaseException) -> None:
        arrived, self._headers_arrived = self._headers_arrived, None
        if arrived is not None and not arrived.done():
            arrived.set_exception(exc)
        elif self._response is not None and not self._response._complete:
            self._response._error = exc
            self._response._wake()
        self.close()

    def answered(self) -> None:
        """The answer's body has all arrived: reading resumes for whatever comes next."""
        self.resume()

    def done_with(self, response: Http1Response, *, reusable: bool) -> None:
        if response is self._response:
            self._response = None
        if not reusable or self.closed:
            self.close()
        self._pool.put_back(self, reusable=reusable and not self.closed)

    def abandon(self) -> None:
        """An answer dropped unreleased, from any thread: close its connection on its loop, freeing its place."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: so is everything on it
            self.loop.call_soon_threadsafe(self._abandoned)

    def _abandoned(self) -> None:
        self._response = None
        self.close()
        self._pool.put_back(self, reusable=False)

    # -- flow ------------------------------------------------------------------------------------

    def wake_at(self, count: int) -> None:
        """Wake the loop once ``count`` bytes (at most ``_WAKE_AT_MOST``; at least one) wait unread, not before.

        Set by the answer being received into a buffer, as it learns what the buffer still expects.
        """
        mark = max(1, min(count, _WAKE_AT_MOST))
        if mark == self._wakes_at or self._socket is None or self.closed:
            return
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, mark)
        except OSError:  # closed under us, or a socket that does not take it: wake at each byte, as before
            self._socket = None
            return
        self._wakes_at = mark

    def holds_unread(self) -> bool:
        """Whether bytes wait in the socket, fewer than its mark (so the loop was not woken for them)."""
        if self._socket is None or self._wakes_at == 1 or self.closed:
            return False
        try:
            waiting = fcntl.ioctl(self._socket.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return False
        return int.from_bytes(waiting, sys.byteorder) > 0

    def pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


class MalformedAnswerError(aiohttp.ClientPayloadError):
    """What came back is not an HTTP/1.1 answer as sent by S3 (a broken proxy, a cut connection): worth a retry."""


class ClosedBeforeAnswerError(aiohttp.ServerDisconnectedError):
    """The server closed the connection before a byte of the answer: on a reused connection, safe to send again."""

    def __init__(self, cause: BaseException | None) -> None:
        super().__init__("the server closed the connection before answering")
        self.__cause__ = cause


class Http1Client:
    """Kept-alive HTTP/1.1 connections to the origins of one event loop, at most ``limit`` in use at once."""

    def __init__(
        self,
        limit: int,
        ssl_context: ssl.SSLContext | bool,
        connect_timeout: float,
        on_sent: Callable[[str], None],
        *,
        kept_idle_at_most: float = KEPT_IDLE_AT_MOST,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self._places = asyncio.Semaphore(limit)
        self._ssl = ssl_context
        self._connect_timeout = connect_timeout
        self._on_sent = on_sent  # (what the request counts as), once its head is written
        self._user_agent = f"User-Agent: {user_agent()}"
        self._kept_idle_at_most = kept_idle_at_most
        self._idle: dict[str, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self.closed = False

    async def request(
        self, method: str, origin: str, target: str, headers: Mapping[str, str], *, host: str, counts_as: str
    ) -> Http1Response:
        """Send ``method target`` to ``origin`` (``scheme://host[:port]``) and return once the answer's head is in.

        ``host`` is the ``Host`` header (the one the signature covers). The
        caller reads the body (or not) and calls ``release()``, which frees
        the connection's place whatever happened.
        """
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", self._user_agent]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        on_written = functools.partial(self._on_sent, counts_as)
        await self._places.acquire()
        try:
            connection, reused = await self._connection(origin)
            try:
                return await self._exchange(connection, method, head, on_written)
            except ClosedBeforeAnswerError:
                if not reused:
                    raise
                # closed while idle, as the request went out: once more, on a connection of its own
                connection, _ = await self._connect(origin)
                return await self._exchange(connection, method, head, on_written)
        except BaseException:
            self._places.release()
            raise

    @staticmethod
    async def _exchange(
        connection: _Connection, method: str, head: bytes, on_written: Callable[[], None]
    ) -> Http1Response:
        try:
            return await connection.exchange(method, head, on_written)
        except BaseException:
            connection.close()  # an answer half-read (or a request cancelled) leaves it out of step
            raise

    async def _connection(self, origin: str) -> tuple[_Connection, bool]:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.closed:
                continue
            if self.loop.time() - connection.idle_since > self._kept_idle_at_most:
                connection.close()
                continue
            return connection, True
        return await self._connect(origin)

    async def _connect(self, origin: str) -> tuple[_Connection, bool]:
        split = urlsplit(origin)
        secure = split.scheme == "https"
        context: ssl.SSLContext | None = None
        if secure:
            context = self._ssl if isinstance(self._ssl, ssl.SSLContext) else _unverified_context()
        host = split.hostname or ""
        port = split.port or (443 if secure else 80)
        connecting = self.loop.create_connection(
            lambda: _Connection(self, origin), host, port, ssl=context, server_hostname=host if context else None
        )
        try:
            if sys.version_info >= (3, 11):
                # not wait_for: before 3.12 it can swallow a cancellation that comes as the connection is made,
                # and a request cancelled (a part no longer wanted) would then be sent all the same
                async with asyncio.timeout(self._connect_timeout):
                    _, connection = await connecting
            else:  # pragma: no cover - Python 3.10 has no asyncio.timeout
                _, connection = await asyncio.wait_for(connecting, self._connect_timeout)
        except asyncio.TimeoutError as exc:
            raise aiohttp.ConnectionTimeoutError(f"connecting to {origin} took over {self._connect_timeout} s") from exc
        except OSError as exc:
            raise aiohttp.ClientConnectionError(f"cannot connect to {origin}: {exc}") from exc
        self._open.add(connection)
        return connection, False

    def put_back(self, connection: _Connection, *, reusable: bool) -> None:
        """An exchange is over: its place is free, and its connection kept for the next request if it can be."""
        self._places.release()
        if reusable and not self.closed:
            connection.idle_since = self.loop.time()
            self._idle.setdefault(connection.origin, []).append(connection)

    def forget(self, connection: _Connection) -> None:
        self._open.discard(connection)
        idle = self._idle.get(connection.origin)
        if idle and connection in idle:
            idle.remove(connection)

    async def close(self) -> None:
        self.closed = True
        for connection in list(self._open):
            connection.close()
        self._idle.clear()
