"""An S3-shaped link on loopback: a TCP proxy that delays each response's first byte and paces every connection.

Loopback hides what S3 charges. S3 answers each request after 10-50 ms and
serves one connection at roughly 85-90 MB/s, so a client that keeps one
connection busy gets a fraction of what one that keeps eight busy gets; on
loopback both look the same. This machine's kernel has no ``netem``, so the
link is made in user space: a proxy between the clients and s3rver that, on
each client connection,

- holds back the first byte of every response until ``delay_ms`` after the
  last byte of the request it answers (the server's time to first byte), and
- paces each direction to ``mbps`` megabytes (10**6 bytes) per second with a
  token bucket of its own (2 ms of credit: a connection idle for a while may
  send that much at once), so eight connections get eight times the bandwidth
  of one, as on S3, and a slow connection holds the server back as a slow
  reader would.

``mbps=0`` leaves the connection unpaced and ``delay_ms=0`` adds no delay: with
both, the proxy only forwards, which is how its own cost is measured.

No HTTP is parsed. HTTP/1.1 without pipelining (what botocore, aiohttp, the
CRT and obstore send) alternates request and response on a connection, so the
first bytes the client sends after a response has begun start the next
request. An upload sent with ``Expect: 100-continue`` thus waits ``delay_ms``
for its interim ``100 Continue`` and again, after its body, for its final
answer: two round trips, as on S3.

    python -m benchmarks.link --upstream-port 4568 --delay-ms 20 --mbps 90
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Sequence

from .processes import LOOPBACK, PortPrintingProcess, proxy_arguments

_SLICE = 256 * 1024
"""Bytes read, paced and written at a time: small enough for smooth pacing, large enough for little CPU."""

BURST_SECONDS = 0.002
"""The token bucket's depth, in seconds of the paced rate: what an idle connection may send at once. Also what
absorbs the event loop waking a little late, so that the mean rate holds."""

MB = 1_000_000


class Pacer:
    """A token bucket for one direction of one connection: ``rate`` bytes per second, ``BURST_SECONDS`` deep."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._sent_until = 0.0
        """When the bytes already let through would have finished leaving at ``rate``."""

    async def wait_for(self, size: int) -> None:
        """Return when ``size`` more bytes may leave; at once when unpaced."""
        if self._rate <= 0:
            return
        now = time.monotonic()
        self._sent_until = max(self._sent_until, now - BURST_SECONDS) + size / self._rate
        if self._sent_until > now:
            await asyncio.sleep(self._sent_until - now)


class _Exchange:
    """What one connection's two directions share: when the request now answered finished arriving."""

    def __init__(self, delay: float) -> None:
        self._delay = delay
        self._request_done: float | None = None
        self._response_started = True  # so that the very first bytes from the client start a request

    def request_bytes_forwarded(self) -> None:
        # The first bytes after a response began start the next request; later ones extend it.
        self._response_started = False
        self._request_done = time.monotonic()

    async def before_response_bytes(self) -> None:
        if self._response_started:
            return
        self._response_started = True
        if self._request_done is not None:
            wait = self._request_done + self._delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)


async def _requests(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pacer: Pacer, state: _Exchange) -> None:
    while data := await reader.read(_SLICE):
        await pacer.wait_for(len(data))
        writer.write(data)
        await writer.drain()
        state.request_bytes_forwarded()
    with contextlib.suppress(OSError):
        writer.write_eof()


async def _responses(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pacer: Pacer, state: _Exchange
) -> None:
    while data := await reader.read(_SLICE):
        await state.before_response_bytes()
        await pacer.wait_for(len(data))
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()


async def _serve_connection(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream_port: int,
    delay: float,
    rate: float,
) -> None:
    try:
        server_reader, server_writer = await asyncio.open_connection(LOOPBACK, upstream_port)
    except OSError:
        client_writer.close()
        return
    state = _Exchange(delay)
    try:
        await asyncio.gather(
            _requests(client_reader, server_writer, Pacer(rate), state),
            _responses(server_reader, client_writer, Pacer(rate), state),
        )
    except (ConnectionError, OSError):
        pass  # either side hung up: close both
    finally:
        for writer in (client_writer, server_writer):
            writer.close()


async def serve(upstream_port: int, delay_ms: float, mbps: float, port: int = 0) -> None:
    """Listen on ``port`` (0: any free one), print the port chosen on stdout, and forward until cancelled."""
    delay, rate = delay_ms / 1000, mbps * MB

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_connection(reader, writer, upstream_port, delay, rate)

    server = await asyncio.start_server(handle, LOOPBACK, port, backlog=256)
    chosen = server.sockets[0].getsockname()[1]
    print(chosen, flush=True)
    async with server:
        await server.serve_forever()


class LinkProxy(PortPrintingProcess):
    """The link in a process of its own (off the driver's GIL), stopped by ``stop`` or with the driver."""

    def __init__(self, upstream_port: int, delay_ms: float, mbps: float) -> None:
        self.delay_ms = delay_ms
        self.mbps = mbps
        arguments = ["--upstream-port", str(upstream_port), "--delay-ms", str(delay_ms), "--mbps", str(mbps)]
        super().__init__("benchmarks.link", arguments, "the link proxy")


def main(argv: Sequence[str] | None = None) -> int:
    parser = proxy_arguments("benchmarks.link", __doc__)
    parser.add_argument("--delay-ms", type=float, default=20.0, help="time to first byte of each response (20)")
    parser.add_argument("--mbps", type=float, default=90.0, help="MB/s per connection and direction; 0: no cap (90)")
    args = parser.parse_args(argv)
    if args.delay_ms < 0 or args.mbps < 0:
        parser.error("--delay-ms and --mbps must be at least 0")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.upstream_port, args.delay_ms, args.mbps, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
