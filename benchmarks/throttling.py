"""An endpoint that throttles as S3 does: above a request rate, across all clients, it answers ``503 SlowDown``.

S3 serves a prefix up to a request rate (5,500 GET/s) and answers the excess
with ``503 SlowDown`` and an XML error body; a client that keeps asking as much
keeps being refused. This proxy, between the clients and a server on
127.0.0.1, does the same at a rate small enough to reach on one machine:

- a token bucket shared by every connection: ``rate`` GETs and HEADs per
  second, ``burst`` of them at once after a quiet moment; a request that finds
  the bucket empty is answered ``503 SlowDown`` and never reaches the server;
- every answer, refusals included, leaves ``delay_ms`` after its request
  arrived (S3's time to first byte), so the requests a client keeps in flight,
  not only how fast it sends, decide the rate it asks for;
- ``GET /__throttle__/counts`` answers what it saw as JSON (requests, how many
  it refused), and ``POST /__throttle__/reset`` zeroes the counts and fills the
  bucket, for the next run.

Standard library only, in a process of its own (``ThrottlingProxy``), as the link is::

    python -m benchmarks.throttling --upstream-port 4568 --rate 150 --burst 15 --delay-ms 50
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from .http_forward import forward, parse_head
from .processes import LOOPBACK, PortPrintingProcess, proxy_arguments

CONTROL = "/__throttle__/"
_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
    b"<RequestId>THROTTLED</RequestId></Error>"
)


@dataclass(frozen=True)
class ThrottleCounts:
    """What the proxy saw since its last reset: GETs and HEADs, and how many of them it refused."""

    requests: int = 0
    throttled: int = 0

    @property
    def throttled_share(self) -> float:
        return self.throttled / self.requests if self.requests else 0.0


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` kept; a request takes one or is refused."""

    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def fill(self) -> None:
        self._tokens, self._at = self._burst, time.monotonic()


class _Proxy:
    def __init__(self, upstream_port: int, rate: float, burst: float, delay: float) -> None:
        self._upstream_port = upstream_port
        self._bucket = TokenBucket(rate, burst)
        self._delay = delay
        self._counts = ThrottleCounts()

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                arrived = time.monotonic()
                method, path, headers = _parse(head)
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                if path.startswith(CONTROL):
                    writer.write(self._control(method, path))
                    await writer.drain()
                    continue
                answer, keep_open = await self._answer(method, head, body)
                wait = arrived + self._delay - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(answer)
                await writer.drain()
                if not keep_open:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer(self, method: str, head: bytes, body: bytes) -> tuple[bytes, bool]:
        """The reply to one request, and whether the connection may carry another."""
        if method in ("GET", "HEAD"):
            allowed = self._bucket.take()
            self._counts = ThrottleCounts(self._counts.requests + 1, self._counts.throttled + (not allowed))
            if not allowed:
                return _slow_down(method), True
        return await self._forward(method, head, body)

    async def _forward(self, method: str, head: bytes, body: bytes) -> tuple[bytes, bool]:
        """The server's answer, on a connection of its own (closed after it), as the client may keep its own open."""
        response = await forward(LOOPBACK, self._upstream_port, method, head, body)
        return response.head + response.body, not response.close_after

    def _control(self, method: str, path: str) -> bytes:
        if method == "POST" and path.startswith(CONTROL + "reset"):
            self._counts = ThrottleCounts()
            self._bucket.fill()
        body = json.dumps({"requests": self._counts.requests, "throttled": self._counts.throttled}).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body


def _parse(head: bytes) -> tuple[str, str, dict[str, str]]:
    """A request's method and path, and its headers by lower-case name."""
    first, headers = parse_head(head)
    words = first.split(" ")
    return words[0], words[1] if len(words) > 1 else "", headers


def _slow_down(method: str) -> bytes:
    body = b"" if method == "HEAD" else _SLOW_DOWN
    head = (
        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(_SLOW_DOWN)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


async def serve(upstream_port: int, rate: float, burst: float, delay_ms: float, port: int = 0) -> None:
    """Listen on ``port`` (0: any free one), print the port chosen on stdout, and serve until cancelled."""
    proxy = _Proxy(upstream_port, rate, burst, delay_ms / 1000)
    server = await asyncio.start_server(proxy.serve_connection, LOOPBACK, port, backlog=512)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


class ThrottlingProxy(PortPrintingProcess):
    """The proxy in a process of its own (off the caller's GIL), stopped by ``stop`` or with the caller."""

    def __init__(self, upstream_port: int, rate: float, burst: float, delay_ms: float) -> None:
        self.rate = rate
        arguments = ["--upstream-port", str(upstream_port), "--rate", str(rate), "--burst", str(burst)]
        super().__init__("benchmarks.throttling", [*arguments, "--delay-ms", str(delay_ms)], "the throttling proxy")

    def counts(self) -> ThrottleCounts:
        with urllib.request.urlopen(self.endpoint_url + CONTROL + "counts", timeout=10) as response:
            return ThrottleCounts(**json.loads(response.read()))

    def reset(self) -> None:
        """Zero the counts and fill the bucket: the next run starts as the first did."""
        request = urllib.request.Request(self.endpoint_url + CONTROL + "reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = proxy_arguments("benchmarks.throttling", __doc__)
    parser.add_argument("--rate", type=float, default=150.0, help="GETs and HEADs a second it serves (150)")
    parser.add_argument("--burst", type=float, default=15.0, help="how many it serves at once after a pause (15)")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="time to first byte of every answer (50)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.burst < 1 or args.delay_ms < 0:
        parser.error("--rate must be positive, --burst at least 1, --delay-ms at least 0")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.upstream_port, args.rate, args.burst, args.delay_ms, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
