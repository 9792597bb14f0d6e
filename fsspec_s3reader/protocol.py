"""The seam between reader strategies and the transport that talks to S3.

Readers are built from two callables and nothing else, so a strategy can be
tested against bytes in memory and reused over any transport.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

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


class GetStream(Protocol):
    """``get_stream(start, end)`` yields the bytes of ``[start, end)`` in order.

    The chunks together hold exactly ``end - start`` bytes; a source that cannot
    deliver them raises instead of returning fewer. Closing the iterator early
    (``close()``) releases the connection and anything fetched ahead.

    ``ahead=True`` says that no read waits for the stream yet (a parquet
    column chunk foreseen from the footer, say): a source over a network may
    then fetch it in fewer, longer requests, since many such streams travel at
    once and fill the link between them. A source over memory ignores it.
    """

    def __call__(self, start: int, end: int, /, *, ahead: bool = False) -> Iterator[Chunk]: ...
