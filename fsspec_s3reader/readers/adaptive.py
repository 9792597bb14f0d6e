"""The adaptive strategy: stream while reads go forward, switch to ranged reads at the first jump.

Most files are read in one of two ways: front to back (a CSV, a whole
object, a log) or by jumping around (a parquet footer, then its column
chunks). This reader starts by streaming and watches the reads::

    reads           [r0][r1] [r2][r3]..........                 (forward: keep streaming)
    streams         [64K)[128K)[ 256K )[    512K    )[ ... up to max_readahead
                              ^ from the second read on, the next stream starts
                                when reads pass the middle of the last one, so
                                bytes are in flight before they are needed
    a read before what is kept, or beyond what was requested
                    -> random mode for good: each read is a ranged GET of
                       what it asks for (reads under ``buffer_size`` fetch a
                       ``buffer_size`` block), as ``range_based`` does

Streamed bytes are dropped once reads have moved past them, so memory stays
at what is in flight. The first stream is small, so a file that turns out
to be read at random costs no more than ``range_based`` with a
``buffer_size`` block: one GET of at most 64 KiB per small read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from ..protocol import Chunk, GetObjectInfo, GetStream, slice_chunks
from .base import S3Reader, close_stream
from .ranged import RangeFetcher, validate_buffer_size

logger = logging.getLogger(__name__)

DEFAULT_RANDOM_BUFFER_SIZE = 64 * 1024
"""Block fetched for a small read in random mode: a few neighbouring small reads share one GET."""

DEFAULT_FIRST_READAHEAD = 64 * 1024
"""The least the first stream asks for: as small as a random-mode block, so a file read at random pays nothing extra."""

DEFAULT_MAX_READAHEAD = 32 * 1024 * 1024
"""The most one stream asks for; each stream doubles the last until it gets here."""


def validate_adaptive_options(buffer_size: int | None, first_readahead: int, max_readahead: int) -> int:
    """Refuse sizes the adaptive reader cannot work with, naming the option; return the buffer size to use.

    ``buffer_size=None`` means this strategy's default (64 KiB), not ``range_based``'s.
    """
    buffer_size = validate_buffer_size(DEFAULT_RANDOM_BUFFER_SIZE if buffer_size is None else buffer_size)
    for name, value in (("first_readahead", first_readahead), ("max_readahead", max_readahead)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int number of bytes, got {value!r}")
        if value <= 0:
            raise ValueError(f"{name} must be a positive number of bytes, got {value}")
    return buffer_size


class AdaptiveS3Reader(S3Reader):
    """Streams forward reads with a growing read-ahead; serves reads after a backward or far jump with ranged GETs."""

    strategy = "adaptive"

    def __init__(
        self,
        bucket: str,
        key: str,
        get_object_info: GetObjectInfo,
        get_stream: GetStream,
        *,
        buffer_size: int | None = DEFAULT_RANDOM_BUFFER_SIZE,
        first_readahead: int = DEFAULT_FIRST_READAHEAD,
        max_readahead: int = DEFAULT_MAX_READAHEAD,
    ) -> None:
        super().__init__(bucket, key)
        self._size = get_object_info().size
        self._get_stream = get_stream
        self._random = RangeFetcher(
            get_stream, self._size, validate_adaptive_options(buffer_size, first_readahead, max_readahead)
        )
        self._next_readahead = first_readahead
        self._max_readahead = max(max_readahead, first_readahead)
        self._sequential = True
        self._started = False
        self._forward_reads = 0
        # Received and not yet passed by the reads: chunk i begins at offset _chunk_starts[i].
        self._chunks: list[Chunk] = []
        self._chunk_starts: list[int] = []
        self._received_to = 0
        # Requested and not yet received, in order: (start, end, stream).
        self._streams: list[tuple[int, int, Iterator[Chunk]]] = []
        self._requested_to = 0

    @property
    def sequential(self) -> bool:
        """True while the reader streams; False once it has switched to ranged reads."""
        return self._sequential

    def _object_size(self) -> int:
        return self._size

    def _pieces(self, start: int, length: int) -> list[Chunk]:
        end = start + length
        if self._sequential and not self._continues_forward(start):
            self._switch_to_random(start)
        if not self._sequential:
            return self._random.fetch(start, end)
        self._drop_before(start)
        self._receive_to(end)
        pieces = slice_chunks(self._chunks, self._chunk_starts, start, end)
        self._forward_reads += 1
        if self._forward_reads > 1:  # one read says nothing of the next; a second one going on does
            self._request_ahead(end)
        return pieces

    def _readline_step(self) -> int:
        step = super()._readline_step()
        return step if self._sequential else self._random.readline_step(self._position, step)

    def _release(self) -> None:
        self._release_stream_state()
        self._random.release()

    # -- streaming --------------------------------------------------------------------

    def _continues_forward(self, start: int) -> bool:
        """Whether a read at ``start`` fits the stream: within what is kept or already requested."""
        if not self._started:
            self._started = True
            self._received_to = self._requested_to = start
            return True
        kept_from = self._chunk_starts[0] if self._chunks else self._received_to
        return kept_from <= start <= self._requested_to

    def _switch_to_random(self, start: int) -> None:
        logger.debug(
            "s3://%s/%s: read at %d after streaming to %d; switching to ranged reads",
            self.bucket,
            self.key,
            start,
            self._received_to,
        )
        self._sequential = False
        self._release_stream_state()

    def _release_stream_state(self) -> None:
        self._close_streams()
        self._chunks = []
        self._chunk_starts = []

    def _drop_before(self, start: int) -> None:
        """Forget chunks that end before ``start``: reads never go back past their own start."""
        keep_from = 0
        while keep_from < len(self._chunks) and self._chunk_starts[keep_from] + len(self._chunks[keep_from]) <= start:
            keep_from += 1
        if keep_from:
            del self._chunks[:keep_from]
            del self._chunk_starts[:keep_from]

    def _receive_to(self, end: int) -> None:
        while self._received_to < end:
            if not self._streams:
                self._request(max(end - self._requested_to, self._next_readahead))
            stream = self._streams[0][2]
            try:
                chunk = next(stream, None)
            except BaseException:
                # A broken stream: drop it and whatever was requested after it;
                # the next read requests again from what arrived.
                self._close_streams()
                raise
            if chunk is None:
                close_stream(stream)
                self._streams.pop(0)
                continue
            if chunk:
                self._chunks.append(chunk)
                self._chunk_starts.append(self._received_to)
                self._received_to += len(chunk)

    def _request_ahead(self, position: int) -> None:
        """Start the next stream once reads are past the middle of the last one, so its bytes are on their way."""
        if self._requested_to >= self._size:
            return
        last_start = self._streams[-1][0] if self._streams else self._received_to
        if position >= (last_start + self._requested_to) // 2:
            self._request(self._next_readahead)

    def _request(self, length: int) -> None:
        start = self._requested_to
        end = min(start + length, self._size)
        self._streams.append((start, end, self._get_stream(start, end)))
        self._requested_to = end
        self._next_readahead = min(self._next_readahead * 2, self._max_readahead)

    def _close_streams(self) -> None:
        for _, _, stream in self._streams:
            close_stream(stream)
        self._streams = []
        self._requested_to = self._received_to
