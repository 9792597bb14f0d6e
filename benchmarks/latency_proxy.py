"""A TCP proxy that holds back each HTTP response's first byte, to give loopback S3's time-to-first-byte.

S3 answers a request after tens of milliseconds; loopback answers at once, and
this machine's kernel has no ``netem`` to add delay. The proxy sits between the
clients and s3rver and, on each connection, delays the first byte of every
response until ``delay_ms`` after the first byte of the request it answers.
It models first-byte latency only: no bandwidth limit, no per-packet delay, and
the body then flows as fast as loopback allows.

No HTTP is parsed. HTTP/1.1 without pipelining (what botocore, aiohttp and the
CRT send) alternates request and response on a connection, so the first bytes
the client sends after a response has begun start the next request. Caveat: a
request with ``Expect: 100-continue`` gets its interim ``100 Continue`` delayed,
and its body is then taken for a new request, so its final answer is delayed
twice (only uploads send it, and the benchmark uploads around the proxy).

    python -m benchmarks.latency_proxy --upstream-port 4568 --delay-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from .servers import LOOPBACK, die_with_parent, stop_process

_CHUNK = 1024 * 1024


class _Exchange:
    """The state one connection's two directions share: when the request now answered began."""

    def __init__(self) -> None:
        self.request_started: float | None = None
        self.response_started = True  # so that the very first bytes from the client start a request

    async def on_request_bytes(self) -> None:
        if self.response_started:  # the first bytes after a response began: the next request
            self.request_started = time.monotonic()
            self.response_started = False

    async def on_response_bytes(self, delay: float) -> None:
        if self.response_started:
            return
        self.response_started = True
        if self.request_started is not None:
            wait = self.request_started + delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, before: Callable[[], Awaitable[None]]
) -> None:
    """Forward one direction until its end, awaiting ``before()`` ahead of each chunk."""
    while data := await reader.read(_CHUNK):
        await before()
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()


async def _serve_connection(
    client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, upstream_port: int, delay: float
) -> None:
    try:
        server_reader, server_writer = await asyncio.open_connection(LOOPBACK, upstream_port)
    except OSError:
        client_writer.close()
        return
    state = _Exchange()
    try:
        await asyncio.gather(
            _pump(client_reader, server_writer, state.on_request_bytes),
            _pump(server_reader, client_writer, functools.partial(state.on_response_bytes, delay)),
        )
    except (ConnectionError, OSError):
        pass  # either side hung up: close both
    finally:
        for writer in (client_writer, server_writer):
            writer.close()


async def serve(upstream_port: int, delay_ms: float, port: int = 0) -> None:
    """Listen on ``port`` (0: any free one), print the port chosen on stdout, and proxy until cancelled."""
    delay = delay_ms / 1000

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_connection(reader, writer, upstream_port, delay)

    server = await asyncio.start_server(handle, LOOPBACK, port, backlog=256)
    chosen = server.sockets[0].getsockname()[1]
    print(chosen, flush=True)
    async with server:
        await server.serve_forever()


class LatencyProxy:
    """The proxy in a process of its own (off the driver's GIL), stopped by ``stop`` or with the driver."""

    def __init__(self, upstream_port: int, delay_ms: int) -> None:
        self.delay_ms = delay_ms
        command = ["-m", "benchmarks.latency_proxy", "--upstream-port", str(upstream_port)]
        self._process = subprocess.Popen(
            [sys.executable, *command, "--delay-ms", str(delay_ms)],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"the latency proxy did not start (it said {line!r})")
        self.port = int(line)

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        stop_process(self._process)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency_proxy", description=__doc__.split("\n")[0])
    parser.add_argument("--upstream-port", type=int, required=True, help="the server's port on 127.0.0.1")
    parser.add_argument("--delay-ms", type=float, required=True, help="time to first byte of each response")
    parser.add_argument("--port", type=int, default=0, help="where to listen (default: a free port, printed)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.upstream_port, args.delay_ms, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
