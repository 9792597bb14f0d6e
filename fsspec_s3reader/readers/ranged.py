"""The range-based strategy: fetch only the bytes that reads ask for, one ranged GET per miss.

Pick it for random access into large objects (parquet footers and column
chunks, a slice of a big binary). Small reads fill a buffer of ``buffer_size``
bytes so that neighbouring small reads cost no request; large reads go
straight from the network to the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

from ..protocol import Chunk, GetObjectInfo, GetStream
from .anticipation import speculation_end
from .base import S3Reader
from .options import OptionCheck, byte_count_check
from .parquet_prefetch import DEFAULT_PARQUET_PREFETCH_BYTES, check_prefetch_budget, parquet_prefetch

DEFAULT_BUFFER_SIZE = 8 * 1024 * 1024


check_buffer_size = byte_count_check(0, "0 disables buffering")


UNUSED_FILLS_BEFORE_EXACT = 4
"""Buffer fills in a row that served no read before a learning fetcher stops filling one."""


class RangeFetcher:
    """Ranged GETs for reads anywhere in one object, small ones served through a buffer.

    How a read of ``[start, end)`` is served::

        buffer:        [buffer_start ........ buffer_end)
        read:                     [start ................... end)
                                  |-- from buffer --|-- rest --|
        rest < buffer_size:  one GET of buffer_size bytes from buffer_end,
                             which becomes the new buffer
        rest >= buffer_size: one GET of exactly the rest, not buffered

    ``buffer_size=0`` turns the buffer off: every read is one GET of exactly
    the bytes asked for. Shared by the range-based strategy and by the
    adaptive one once it has seen random access.

    With ``learn_misses`` (the adaptive strategy), a buffer that serves no
    read ``UNUSED_FILLS_BEFORE_EXACT`` fills in a row stops being filled:
    reads at random offsets then each fetch exactly their bytes. The first
    read that a buffer would have served (one that starts within
    ``buffer_size`` after the last read's start) turns it back on.
    """

    def __init__(
        self,
        get_stream: GetStream,
        size: int,
        buffer_size: int,
        *,
        learn_misses: bool = False,
        speculation_end: Callable[[int, int], int] | None = None,
    ) -> None:
        self._get_stream = get_stream
        self._size = size
        self.buffer_size = buffer_size
        self._speculation_end = speculation_end  # the anticipation's say on a buffer's bytes past the read
        self._buffer = b""
        self._buffer_start = 0
        self._learn_misses = learn_misses
        self._unused_fills = 0  # fills in a row whose bytes served no later read
        self._buffer_used = True
        self._exact = False  # reads are random: each fetches exactly its bytes
        self._last_start = -1

    def fetch(self, start: int, end: int) -> list[Chunk]:
        """The bytes ``[start, end)`` (within the object), from the buffer and from new GETs."""
        pieces: list[Chunk] = []
        if self._learn_misses:
            self._learn(start)
        buffer_end = self._buffer_start + len(self._buffer)
        if self._buffer_start <= start < buffer_end:
            served_to = min(end, buffer_end)
            pieces.append(memoryview(self._buffer)[start - self._buffer_start : served_to - self._buffer_start])
            start = served_to
            self._buffer_used, self._unused_fills = True, 0
        rest = end - start
        if rest == 0:
            return pieces
        fill_end = self._fill_end(start, end) if rest < self.buffer_size and not self._exact else end
        if fill_end > end:
            self._unused_fills = 0 if self._buffer_used else self._unused_fills + 1
            self._buffer_used = False
            if self._unused_fills >= UNUSED_FILLS_BEFORE_EXACT:
                self._exact, self._buffer = True, b""
                pieces.extend(self._get_stream(start, end))
                return pieces
            self._buffer = b"".join(self._get_stream(start, fill_end))
            self._buffer_start = start
            pieces.append(memoryview(self._buffer)[:rest])
        else:
            pieces.extend(self._get_stream(start, end))
        return pieces

    def _fill_end(self, start: int, end: int) -> int:
        """Where a buffer filled for a read of ``[start, end)`` ends: ``buffer_size`` on, unless the anticipation
        knows better."""
        limit = min(start + self.buffer_size, self._size)
        return self._speculation_end(end, limit) if self._speculation_end is not None else limit

    def _learn(self, start: int) -> None:
        if self._exact and 0 <= start - self._last_start < self.buffer_size:
            self._exact, self._unused_fills, self._buffer_used = False, 0, True  # a buffer would have served it
        self._last_start = start

    def readline_step(self, position: int, step: int) -> int:
        """How far ``readline`` may look ahead from ``position`` without leaving the buffer it lands in.

        readline seeks back after the newline, and that must land in the
        buffer, not before a new one.
        """
        buffer_end = self._buffer_start + len(self._buffer)
        if self._buffer_start <= position < buffer_end:
            return min(step, buffer_end - position)
        if self.buffer_size <= 1 or self._exact:
            return step  # no buffer to stay inside: look ahead in full steps
        return min(step, self.buffer_size - 1)  # small enough to fill a new buffer

    def release(self) -> None:
        self._buffer = b""


class RangedS3Reader(S3Reader):
    """Serves each read with a ranged GET, buffering small reads (see :class:`RangeFetcher`)."""

    strategy = "range_based"
    option_checks: ClassVar[Mapping[str, OptionCheck]] = {
        "buffer_size": check_buffer_size,
        "parquet_prefetch_bytes": check_prefetch_budget,
    }

    def __init__(
        self,
        bucket: str,
        key: str,
        get_object_info: GetObjectInfo,
        get_stream: GetStream,
        *,
        buffer_size: int | None = DEFAULT_BUFFER_SIZE,
        parquet_prefetch_bytes: int | None = DEFAULT_PARQUET_PREFETCH_BYTES,
    ) -> None:
        super().__init__(bucket, key)
        options = self.check_options(buffer_size=buffer_size, parquet_prefetch_bytes=parquet_prefetch_bytes)
        info = get_object_info()
        self._size = info.size
        self._anticipation = parquet_prefetch(get_stream, info, options["parquet_prefetch_bytes"], (bucket, key))
        self._fetcher = RangeFetcher(
            get_stream, self._size, options["buffer_size"], speculation_end=speculation_end(self._anticipation)
        )

    @property
    def buffer_size(self) -> int:
        return self._fetcher.buffer_size

    def _object_size(self) -> int:
        return self._size

    def _pieces(self, start: int, length: int) -> list[Chunk]:
        return self._fetcher.fetch(start, start + length)

    def _readline_step(self) -> int:
        return self._fetcher.readline_step(self._position, super()._readline_step())

    def _release(self) -> None:
        self._fetcher.release()
