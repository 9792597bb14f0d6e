"""A run of received chunks with their offsets: the one bookkeeping every reader and the transport share.

Bytes arrive as the pieces the HTTP client received; copying them into one
growing buffer would cost a copy per byte. A ``ChunkRun`` keeps them as they
came, knows where each begins, and hands out any span as the chunks
themselves (views only at the two ends)::

    offsets     start                                             end
    chunks      [chunk 0      ][chunk 1 ][chunk 2               ]
    slice(a, b)        a[....view][chunk 1 ][view....)b
    drop_before(c)                  c -> chunk 0 forgotten, start moves to chunk 1
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

from .protocol import Chunk


def joined(chunks: Sequence[Chunk]) -> bytes:
    """The chunks as one ``bytes``: a lone ``bytes`` chunk itself (no copy), anything else joined."""
    if len(chunks) == 1 and type(chunks[0]) is bytes:
        return chunks[0]
    return b"".join(chunks)


class ChunkRun:
    """Consecutive chunks of one object's bytes, covering ``[start, end)`` with no gap."""

    def __init__(self, start: int = 0, chunks: Iterable[Chunk] = ()) -> None:
        self._chunks: list[Chunk] = []
        self._starts: list[int] = []
        self._start = self._end = start
        for chunk in chunks:
            self.append(chunk)

    @property
    def start(self) -> int:
        """The offset of the first byte kept (``end`` when nothing is kept)."""
        return self._start

    @property
    def end(self) -> int:
        """The offset just past the last byte received."""
        return self._end

    def __len__(self) -> int:
        """The bytes kept."""
        return self._end - self._start

    def append(self, chunk: Chunk) -> None:
        """Keep ``chunk`` as the bytes that follow ``end``; an empty chunk is ignored."""
        if len(chunk):
            self._chunks.append(chunk)
            self._starts.append(self._end)
            self._end += len(chunk)

    def slice(self, start: int, end: int) -> list[Chunk]:
        """The bytes ``[start, end)`` as chunks: whole ones as they are, the two ends as views.

        The span must lie within ``[self.start, self.end)``.
        """
        if start < self._start or end > self._end:
            raise ValueError(f"[{start}, {end}) is not within the bytes kept, [{self._start}, {self._end})")
        index = bisect.bisect_right(self._starts, start) - 1
        pieces: list[Chunk] = []
        while start < end:
            chunk_start, chunk = self._starts[index], self._chunks[index]
            chunk_end = chunk_start + len(chunk)
            if start == chunk_start and end >= chunk_end:
                pieces.append(chunk)
            else:
                pieces.append(memoryview(chunk)[start - chunk_start : min(end, chunk_end) - chunk_start])
            start = chunk_end
            index += 1
        return pieces

    def drop_before(self, offset: int) -> None:
        """Forget the chunks that end at or before ``offset``: reads will not come back for them."""
        if offset >= self._end:
            keep_from = len(self._chunks)
        else:  # keep the chunk that holds ``offset`` and everything after it
            keep_from = max(0, bisect.bisect_right(self._starts, offset) - 1)
        if keep_from:
            del self._chunks[:keep_from]
            del self._starts[:keep_from]
            self._start = self._starts[0] if self._starts else self._end

    def clear(self, start: int | None = None) -> None:
        """Forget every chunk; the run starts again, empty, at ``start`` (default: where it ended)."""
        self._chunks = []
        self._starts = []
        self._start = self._end = self._end if start is None else start
