"""Reading a response: its ``Content-Range``, and its body, received into one buffer or as the client's pieces.

Shared by every request of the transport, whatever sent it (botocore or the
lean path): a body is anything with ``async read(n)`` and ``close()``; the
lean path's also receives straight into a buffer (``receive_into``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from ..protocol import Chunk
from ..retry import BodyEndedEarlyError
from .receive_buffers import RECEIVE_BUFFERS


def parse_content_range(content_range: str | None) -> tuple[int, int, int | None] | None:
    """``Content-Range: bytes 0-99/12345`` as ``(0, 100, 12345)`` (end exclusive; total None for ``*``)."""
    if not content_range or not content_range.startswith("bytes ") or "/" not in content_range:
        return None
    span, _, total = content_range[len("bytes ") :].partition("/")
    first, _, last = span.partition("-")
    if not (first.isdigit() and last.isdigit()):
        return None
    return int(first), int(last) + 1, int(total) if total.isdigit() else None


async def read_body_into(
    chunks: list[Chunk],
    body: Any,
    length: int,
    timeout: float | None,
    destination: Callable[[], memoryview | None] = lambda: None,
) -> None:
    """Append a response body's ``length`` bytes to ``chunks``: one buffer, or the pieces the HTTP client received.

    A body that can ``receive_into`` a buffer fills one of ``length`` bytes
    (the ``destination``'s, the body's place in its object's arena, or else
    one from ``RECEIVE_BUFFERS``), the socket writing into it directly; it lands in
    ``chunks`` as a read-only view, also when the connection broke after some
    bytes, so that the caller knows where to resume.

    Any other body's ``read(n)`` hands back what the connection has
    buffered, up to ``n`` bytes, as the client's own ``bytes`` objects;
    reading the whole body at once would copy every piece into a new buffer
    of the part's size. Each piece lands in ``chunks`` as soon as it arrives,
    so that when the connection breaks the caller knows exactly where to
    resume.
    """
    receive_into = getattr(body, "receive_into", None)
    if receive_into is not None:
        await _receive_whole(chunks, receive_into, destination() or RECEIVE_BUFFERS.take(length), timeout)
    elif timeout is None:
        await _read_pieces(chunks, body.read, length, lambda: None)
    elif sys.version_info >= (3, 11):
        # One deadline for the whole body, pushed back as bytes arrive. Moving
        # it costs a timer; so it moves only once a quarter of the timeout has
        # passed, and lies 1.25 timeouts after the last move: a body that goes
        # silent fails between 1 and 1.25 timeouts later, never sooner.
        # (asyncio.wait_for around every read would cost a task per piece,
        # ~30 us, thousands of times per part.)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout_at(loop.time() + 1.25 * timeout) as deadline:
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


async def _receive_whole(
    chunks: list[Chunk], receive_into: Callable[..., Awaitable[int]], buffer: memoryview, timeout: float | None
) -> None:
    length = len(buffer)
    filled = 0
    try:
        while filled < length:
            count = await receive_into(buffer[filled:], idle_timeout=timeout)
            if not count:
                raise _ended_early(length - filled, length)
            filled += count
    finally:
        if filled:
            chunks.append(buffer[:filled].toreadonly())


async def _read_pieces(
    chunks: list[Chunk], read: Callable[[int], Awaitable[bytes]], length: int, progress: Callable[[], None]
) -> None:
    remaining = length
    while remaining > 0:
        piece = await read(remaining)
        if not piece:
            raise _ended_early(remaining, length)
        chunks.append(piece)
        remaining -= len(piece)
        progress()


def _ended_early(missing: int, length: int) -> BodyEndedEarlyError:
    return BodyEndedEarlyError(f"the response body ended {missing} bytes short of its {length}")
