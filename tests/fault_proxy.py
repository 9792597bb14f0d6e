"""An HTTP proxy between the client and the moto server that injects faults by rule, deterministically.

Point a filesystem's ``endpoint_url`` at ``proxy.endpoint_url`` and add rules::

    proxy.add(Fault.status(503, "SlowDown"), method="GET", nth=2)  # the 2nd GET only
    proxy.add(Fault.reset(after_bytes=1000), every=10)  # every 10th request

A rule counts the requests it matches (method and a substring of the path)
and fires on the ``nth`` of them, on every ``every``-th, on all from the
``from_nth`` on, or on all of them;
``times`` caps how often it fires. Every request is recorded in
``proxy.requests`` with the fault it got, so tests can assert how many
attempts were made and which ranges were asked for.

Faults:

- ``status``: an S3-style XML error (``SlowDown`` for 503 by default), the
  server never sees the request;
- ``refuse``: the connection is closed before any reply, as a refused or
  dropped connection looks to the client;
- ``reset``: the real response, cut by a TCP reset after ``after_bytes``
  body bytes;
- ``truncate``: the real headers (full ``Content-Length``) and only
  ``after_bytes`` body bytes, then a clean close;
- ``stall``: the real headers and ``after_bytes`` body bytes (or nothing at
  all, ``before_headers=True``), then silence until the client gives up;
- ``action``: not a fault but a moment: ``action(path)`` runs (say, to
  overwrite the object), then the request goes on to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the forwarding step is shared with the benchmarks' proxies, beside the library
    sys.path.insert(0, str(ROOT))

from benchmarks.http_forward import ForwardedResponse, forward, parse_head  # noqa: E402

FaultKind = Literal["status", "refuse", "reset", "truncate", "stall", "action"]

_ERROR_MESSAGES = {
    400: ("BadRequest", "Bad request."),
    403: ("AccessDenied", "Access Denied"),
    404: ("NoSuchKey", "The specified key does not exist."),
    416: ("InvalidRange", "The requested range is not satisfiable"),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    502: ("BadGateway", "Bad gateway."),
    503: ("SlowDown", "Please reduce your request rate."),
    504: ("GatewayTimeout", "Gateway timeout."),
}
_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 416: "Range Not Satisfiable"}


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    status_code: int = 503
    code: str = ""
    after_bytes: int = 0
    before_headers: bool = False
    action: Callable[[str], None] | None = None

    @staticmethod
    def status(status_code: int, code: str = "") -> Fault:
        return Fault("status", status_code=status_code, code=code or _ERROR_MESSAGES[status_code][0])

    @staticmethod
    def refuse() -> Fault:
        return Fault("refuse")

    @staticmethod
    def reset(after_bytes: int) -> Fault:
        return Fault("reset", after_bytes=after_bytes)

    @staticmethod
    def truncate(after_bytes: int) -> Fault:
        return Fault("truncate", after_bytes=after_bytes)

    @staticmethod
    def stall(after_bytes: int = 0, before_headers: bool = False) -> Fault:
        return Fault("stall", after_bytes=after_bytes, before_headers=before_headers)

    @staticmethod
    def run(action: Callable[[str], None]) -> Fault:
        return Fault("action", action=action)

    def __str__(self) -> str:
        if self.kind == "status":
            return f"{self.status_code} {self.code}"
        if self.kind == "stall" and self.before_headers:
            return "stall before headers"
        return f"{self.kind} after {self.after_bytes} bytes" if self.kind != "refuse" else "refuse"


@dataclass
class Rule:
    fault: Fault
    method: str | None = None
    path_contains: str = ""
    nth: int | None = None
    every: int | None = None
    from_nth: int | None = None
    times: int | None = None
    matched: int = 0
    fired: int = 0

    def fires_on(self, method: str, path: str) -> bool:
        if (self.method is not None and method != self.method) or self.path_contains not in path:
            return False
        self.matched += 1
        if self.times is not None and self.fired >= self.times:
            return False
        if self.nth is not None:
            hit = self.matched == self.nth
        elif self.every is not None:
            hit = self.matched % self.every == 0
        elif self.from_nth is not None:
            hit = self.matched >= self.from_nth
        else:
            hit = True
        self.fired += hit
        return hit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    fault: Fault | None

    @property
    def range(self) -> str | None:
        return self.headers.get("range")


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


class FaultProxy:
    """The proxy; a context manager that serves from a thread of its own on 127.0.0.1."""

    def __init__(self, upstream_url: str) -> None:
        parsed = urlsplit(upstream_url)
        self._upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._port = 0

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def add(
        self,
        fault: Fault,
        *,
        method: str | None = "GET",
        path_contains: str = "",
        nth: int | None = None,
        every: int | None = None,
        from_nth: int | None = None,
        times: int | None = None,
    ) -> Rule:
        rule = Rule(fault, method, path_contains, nth, every, from_nth, times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def reset(self) -> None:
        """No rules, no recorded requests: a clean proxy for the next test."""
        with self._lock:
            self._rules = []
            self.requests = []

    def requests_of(self, method: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == method]

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result()
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *_: object) -> None:
        async def shut_down() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shut_down(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    # -- serving -------------------------------------------------------------------

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            fault = None
            for rule in self._rules:
                if rule.fires_on(method, path) and fault is None:
                    fault = rule.fault
            return fault

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await _read_head(reader)
                if head is None:
                    return
                request_line, headers = parse_head(head)
                method, path, _ = request_line.split(" ", 2)
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                fault = self._fault_for(method, path)
                with self._lock:
                    self.requests.append(Request(method, path, headers, fault))
                if not await self._answer(method, head, body, fault, reader, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # the proxy is shutting down: end quietly, not as a cancelled task asyncio would report
        finally:
            writer.close()

    async def _answer(
        self,
        method: str,
        head: bytes,
        body: bytes,
        fault: Fault | None,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Send the reply (or the fault); True when the connection can take another request."""
        if fault is not None and fault.kind == "refuse":
            _abort(writer)
            return False
        if fault is not None and fault.kind == "status":
            writer.write(_error_reply(method, fault))
            await writer.drain()
            return True
        if fault is not None and fault.kind == "stall" and fault.before_headers:
            await _until_client_leaves(reader)
            return False
        if fault is not None and fault.action is not None:
            path = head.split(b" ", 2)[1].decode()
            await asyncio.get_running_loop().run_in_executor(None, fault.action, path)
            fault = None
        response = await self._forward(head, body, method)
        if fault is None:
            writer.write(response.head + response.body)
            await writer.drain()
            return not response.close_after
        writer.write(response.head + response.body[: fault.after_bytes])
        await writer.drain()
        if fault.kind == "reset":
            await asyncio.sleep(0.02)  # let the client take the bytes before the reset discards them
            _abort(writer)
        elif fault.kind == "stall":
            await _until_client_leaves(reader)
        return False  # truncate: a clean close with bytes still owed

    async def _forward(self, head: bytes, body: bytes, method: str) -> ForwardedResponse:
        """The moto server's answer to this request, on a connection of its own."""
        return await forward(*self._upstream, method, head, body)


def _error_reply(method: str, fault: Fault) -> bytes:
    code, message = _ERROR_MESSAGES.get(fault.status_code, (fault.code, "Injected fault."))
    code = fault.code or code
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>FAULT</RequestId></Error>"
    ).encode()
    reason = _REASONS.get(fault.status_code, "Error")
    body = b"" if method == "HEAD" else xml
    head = (
        f"HTTP/1.1 {fault.status_code} {reason}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body) if method != 'HEAD' else len(xml)}\r\nConnection: keep-alive\r\n\r\n"
    ).encode()
    return head + body


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (RST), not a clean FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _until_client_leaves(reader: asyncio.StreamReader) -> None:
    """Say nothing until the client closes the connection (its read timeout) or 60 s pass."""
    with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
        await asyncio.wait_for(reader.read(), 60)
