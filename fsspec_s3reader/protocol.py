"""The seam between reader strategies and the transport that talks to S3.

Readers are built from two callables and nothing else, so a strategy can be
tested against bytes in memory and reused over any transport.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

Chunk = bytes | bytearray | memoryview
"""A piece of an object's bytes, in order, as the transport received it."""


@dataclass(frozen=True)
class ObjectInfo:
    """What a reader may know about an object before reading it.

    ``etag`` and ``version_id`` are ``None`` where the source has no such notion
    (an in-memory source, say); ``size`` is always known.
    """

    size: int
    etag: str | None = None
    version_id: str | None = None


GetObjectInfo = Callable[[], ObjectInfo]
"""Returns the object's size (and ETag/version). Cheap to call twice: sources cache it."""

GetStream = Callable[[int, int], Iterator[Chunk]]
"""``get_stream(start, end)`` yields the bytes of ``[start, end)`` in order.

The chunks together hold exactly ``end - start`` bytes; a source that cannot
deliver them raises instead of returning fewer. Closing the iterator early
(``close()``) releases the connection and anything fetched ahead.
"""


def slice_chunks(chunks: Sequence[Chunk], starts: Sequence[int], start: int, end: int) -> list[Chunk]:
    """The bytes ``[start, end)`` out of consecutive chunks, chunk ``i`` beginning at offset ``starts[i]``.

    Whole chunks are handed out as they are; only the two ends become views.
    The chunks must cover the range.
    """
    index = bisect.bisect_right(starts, start) - 1
    pieces: list[Chunk] = []
    while start < end:
        chunk_start, chunk = starts[index], chunks[index]
        chunk_end = chunk_start + len(chunk)
        if start == chunk_start and end >= chunk_end:
            pieces.append(chunk)
        else:
            pieces.append(memoryview(chunk)[start - chunk_start : min(end, chunk_end) - chunk_start])
        start = chunk_end
        index += 1
    return pieces
