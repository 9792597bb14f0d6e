"""One HTTP/1.1 request forwarded to a server on a connection of its own: the step the test and benchmark proxies share.

Standard library only, like the proxies that use it (``link.py`` aside,
which relays bytes without parsing them).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True)
class ForwardedResponse:
    """The server's answer, its ``Connection`` header set for the proxy's client."""

    head: bytes
    """Status line and headers, ending in the blank line."""
    body: bytes
    close_after: bool
    """The body's length was not given: the client's connection must close after it."""
    headers: dict[str, str]
    """The server's headers, by lower-case name."""


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """A message's first line (request or status line), and its headers by lower-case name."""
    first, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return first, headers


async def forward(host: str, port: int, method: str, head: bytes, body: bytes) -> ForwardedResponse:
    """Send one request to ``host:port`` on a new connection (closed after it) and read the whole answer.

    The client may keep its own connection to the proxy open; the answer's
    ``Connection`` header says whether it can.
    """
    up_reader, up_writer = await asyncio.open_connection(host, port)
    try:
        request_line, _, rest = head.partition(b"\r\n")
        kept = [line for line in rest.split(b"\r\n") if line and not line.lower().startswith(b"connection:")]
        up_writer.write(b"\r\n".join([request_line, *kept, b"Connection: close", b"", b""]) + body)
        await up_writer.drain()
        response_head = await up_reader.readuntil(b"\r\n\r\n")
        status_line, headers = parse_head(response_head)
        status = int(status_line.split(" ", 2)[1])
        length = headers.get("content-length")
        if method == "HEAD" or status in (204, 304):
            response_body = b""
        elif length is not None:
            response_body = await up_reader.readexactly(int(length))
        else:
            response_body = await up_reader.read()
        lines = [
            line
            for line in response_head.split(b"\r\n")
            if line and not line.lower().startswith((b"connection:", b"keep-alive:"))
        ]
        close_after = length is None and method != "HEAD"
        lines.append(b"Connection: close" if close_after else b"Connection: keep-alive")
        return ForwardedResponse(b"\r\n".join([*lines, b"", b""]), response_body, close_after, headers)
    finally:
        up_writer.close()
