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
                       ``buffer_size`` block, until four such blocks in a row
                       served no other read: then exactly what each asks for)

Streamed bytes are dropped once reads have moved past them, so memory stays
at what is in flight. The first stream is small, so a file that turns out
to be read at random costs no more than ``range_based`` with a
``buffer_size`` block: one GET of at most 64 KiB per small read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import ClassVar

from ..chunks import ChunkRun
from ..protocol import Chunk, GetObjectInfo, GetStream
from .anticipation import speculation_end
from .base import S3Reader, close_stream
from .options import OptionCheck, byte_count_check
from .parquet_prefetch import DEFAULT_PARQUET_PREFETCH_BYTES, check_prefetch_budget, parquet_prefetch
from .ranged import RangeFetcher, check_buffer_size

logger = logging.getLogger(__name__)

DEFAULT_RANDOM_BUFFER_SIZE = 64 * 1024
"""Block fetched for a small read in random mode: a few neighbouring small reads share one GET."""

DEFAULT_FIRST_READAHEAD = 64 * 1024
"""The least the first stream asks for: as small as a random-mode block, so a file read at random pays nothing extra."""

DEFAULT_MAX_READAHEAD = 32 * 1024 * 1024
"""The most one stream asks for; each stream doubles the last until it gets here."""


check_readahead = byte_count_check(1, "a stream asks for at least one byte")


class AdaptiveS3Reader(S3Reader):
    """Streams forward reads with a growing read-ahead; serves reads after a backward or far jump with ranged GETs."""

    strategy = "adaptive"
    option_checks: ClassVar[Mapping[str, OptionCheck]] = {
        "buffer_size": check_buffer_size,
        "first_readahead": check_readahead,
        "max_readahead": check_readahead,
        "parquet_prefetch_bytes": check_prefetch_budget,
    }

    def __init__(
        self,
        bucket: str,
        key: str,
        get_object_info: GetObjectInfo,
        get_stream: GetStream,
        *,
        buffer_size: int | None = DEFAULT_RANDOM_BUFFER_SIZE,
        first_readahead: int | None = DEFAULT_FIRST_READAHEAD,
        max_readahead: int | None = DEFAULT_MAX_READAHEAD,
        parquet_prefetch_bytes: int | None = DEFAULT_PARQUET_PREFETCH_BYTES,
    ) -> None:
        super().__init__(bucket, key)
        options = self.check_options(
            buffer_size=buffer_size,
            first_readahead=first_readahead,
            max_readahead=max_readahead,
            parquet_prefetch_bytes=parquet_prefetch_bytes,
        )
        info = get_object_info()
        self._size = info.size
        self._anticipation = parquet_prefetch(get_stream, info, options["parquet_prefetch_bytes"], (bucket, key))
        self._get_stream = get_stream
        self._random = RangeFetcher(
            get_stream,
            self._size,
            options["buffer_size"],
            learn_misses=True,
            speculation_end=speculation_end(self._anticipation),
        )
        self._next_readahead = options["first_readahead"]
        self._max_readahead = max(options["max_readahead"], options["first_readahead"])
        self._sequential = True
        self._started = False
        self._forward_reads = 0
        # Received and not yet passed by the reads.
        self._kept = ChunkRun()
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
        self._kept.drop_before(start)  # reads never go back past their own start
        self._receive_to(end)
        pieces = self._kept.slice(start, end)
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
            self._kept.clear(start)
            self._requested_to = start
            return True
        return self._kept.start <= start <= self._requested_to

    def _switch_to_random(self, start: int) -> None:
        logger.debug(
            "s3://%s/%s: read at %d after streaming to %d; switching to ranged reads",
            self.bucket,
            self.key,
            start,
            self._kept.end,
        )
        self._sequential = False
        self._release_stream_state()

    def _release_stream_state(self) -> None:
        self._close_streams()
        self._kept.clear()

    def _receive_to(self, end: int) -> None:
        while self._kept.end < end:
            if not self._streams:
                self._request(needed_to=end)
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
            self._kept.append(chunk)

    def _request_ahead(self, position: int) -> None:
        """Start the next stream once reads are past the middle of the last one, so its bytes are on their way."""
        if self._requested_to >= self._size:
            return
        last_start = self._streams[-1][0] if self._streams else self._kept.end
        if position >= (last_start + self._requested_to) // 2:
            self._request(needed_to=self._requested_to)

    def _request(self, needed_to: int) -> None:
        """Stream on from where the last stream ends: through ``needed_to``, and on to the read-ahead's length.

        The bytes past ``needed_to`` are a guess, cut short where the
        anticipation says they are fetched ahead already or not wanted (a
        parquet file's other column chunks).
        """
        start = self._requested_to
        end = min(max(needed_to, start + self._next_readahead), self._size)
        if self._anticipation is not None:
            end = max(needed_to, self._anticipation.speculation_end(needed_to, end))
        if end <= start:
            return
        self._streams.append((start, end, self._get_stream(start, end)))
        self._requested_to = end
        self._next_readahead = min(self._next_readahead * 2, self._max_readahead)

    def _close_streams(self) -> None:
        for _, _, stream in self._streams:
            close_stream(stream)
        self._streams = []
        self._requested_to = self._kept.end
