"""The DCP-optimized strategy: fetch only a checkpoint file's planned byte ranges, coalesced.

A PyTorch Distributed Checkpoint load knows, before reading a byte, which
ranges of each ``.distcp`` file it needs. This reader is built from those
ranges and serves them from as few ranged GETs as the gaps allow::

    items (sorted)    [a....)  [b...)         [c......)                 [d..)
    range groups      |------ group 0: gaps <= max_gap_size ------|     |g 1|
    GET streams       get_stream(a.start, c.end)                        get_stream(d.start, d.end)
    chunks arrive     |chunk 0       |chunk 1             |chunk 2      |...
    item a            [mv(chunk 0)]                                       memoryview slices of the
    item b                     [mv(chunk 0 tail), mv(chunk 1)]            chunks, never copied into
    gap bytes                                  (skipped)                  a growing buffer
    leftover                                   ^ the rest of chunk 1 carries over to item c

Only one item is buffered at a time: its segments are dropped when the next
item starts, so memory stays at one item plus the parts in flight of the
current stream and of the streams started ahead. When a group's stream
opens, the streams of the groups after it start too, as many as fit in
``prefetch_bytes`` (and always the next one once the current group's last
item is in memory), so small groups of a partial load travel side by side
while torch deserializes. Under ``S3StorageReader`` the streams come from
the load pipeline, which has fetched every group ahead already (within the
load's memory budget): starting one early only claims it. Reads within the
current item may go anywhere (``torch.load`` seeks around inside an item);
across items they go forward.

Anything else - a read before the current item, in a gap, past the last item,
or an item asked for twice out of order - is not an error: it is served with
ranged reads (one warning per file names the offset), so a stray access costs
a request, never a wrong byte or a failed load.
"""

from __future__ import annotations

import bisect
import ctypes
import errno
import logging
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar

from ..chunks import ChunkRun
from ..errors import IncompleteObjectError
from ..plan import (
    DEFAULT_CONNECTION_THROUGHPUT,
    DEFAULT_FIRST_BYTE_LATENCY,
    ItemRange,
    RangeGroup,
    check_cost,
    check_max_gap_size,
    gap_size,
    range_groups,
)
from ..protocol import Chunk, GetObjectInfo, GetStream
from .base import S3Reader, _as_byte_view, close_stream
from .options import OptionCheck, byte_count_check
from .ranged import RangedS3Reader

logger = logging.getLogger(__name__)

DEFAULT_PREFETCH_BYTES = 32 * 1024 * 1024
"""Bytes of the groups after the current one that may be fetched ahead, per file."""


check_prefetch_bytes = byte_count_check(0, "0 fetches only the next group ahead")

UNLOCKED_COPY = 64 * 1024
"""``bytes`` pieces at least this long are copied into a caller's buffer with the GIL released."""


class DCPOptimizedS3Reader(S3Reader):
    """Serves one checkpoint file's planned items from coalesced ranged GETs.

    Built by :class:`~fsspec_s3reader.constructor.DCPOptimizedConstructor` from
    the ranges that ``S3StorageReader.prepare_local_plan`` injected.
    """

    strategy = "dcp_optimized"
    option_checks: ClassVar[Mapping[str, OptionCheck]] = {
        "max_gap_size": check_max_gap_size,
        "first_byte_latency": check_cost,
        "connection_throughput": check_cost,
        "prefetch_bytes": check_prefetch_bytes,
    }

    def __init__(
        self,
        bucket: str,
        key: str,
        ranges: Iterable[ItemRange],
        get_object_info: GetObjectInfo,
        get_stream: GetStream,
        *,
        max_gap_size: float | None = None,
        first_byte_latency: float = DEFAULT_FIRST_BYTE_LATENCY,
        connection_throughput: float = DEFAULT_CONNECTION_THROUGHPUT,
        prefetch_bytes: int = DEFAULT_PREFETCH_BYTES,
    ) -> None:
        super().__init__(bucket, key)
        options = self.check_options(
            max_gap_size=max_gap_size,
            first_byte_latency=first_byte_latency,
            connection_throughput=connection_throughput,
            prefetch_bytes=prefetch_bytes,
        )
        self._prefetch_bytes = options["prefetch_bytes"]
        self._get_object_info = get_object_info
        self._get_stream = get_stream
        gap = gap_size(options["max_gap_size"], options["first_byte_latency"], options["connection_throughput"])
        self._groups = range_groups(ranges, gap)
        self._items = [item for group in self._groups for item in group.items]
        self._item_starts = [item.start for item in self._items]
        self._group_of_item = [g for g, group in enumerate(self._groups) for _ in group.items]

        # The stream of the current group, and the bytes received but not yet used.
        self._stream: Iterator[Chunk] | None = None
        self._stream_group = -1
        # Streams of the groups after the current one, in order, started early
        # so that their bytes travel while torch deserializes.
        self._prefetched: deque[tuple[int, Iterator[Chunk]]] = deque()
        self._leftover = memoryview(b"")
        self._leftover_start = 0  # absolute offset of self._leftover[0]

        # The one buffered item: its index and its bytes as memoryview segments.
        self._current = -1
        self._item_bytes = ChunkRun()

        self._fallback: RangedS3Reader | None = None

    @property
    def item_ranges(self) -> tuple[ItemRange, ...]:
        return tuple(self._items)

    @property
    def range_groups(self) -> tuple[RangeGroup, ...]:
        return tuple(self._groups)

    # -- the strategy hooks ------------------------------------------------------------

    def _object_size(self) -> int:
        return self._get_object_info().size

    def _available(self, start: int, wanted: int) -> int:
        index = self._item_containing(start)
        if index is not None and start + wanted <= self._items[index].end:
            return wanted  # inside one planned item: no size lookup needed
        return super()._available(start, wanted)

    def _pieces(self, start: int, length: int) -> Iterable[Chunk]:
        end = start + length
        pieces: list[Chunk] = []
        while start < end:
            index = self._item_containing(start)
            if index is not None and index >= self._current:
                if index != self._current:
                    self._load_item(index)
                served_to = min(end, self._items[index].end)
                pieces.extend(self._item_bytes.slice(start, served_to))
            else:
                served_to = self._stray_end(start, end)
                pieces.append(self._read_stray(start, served_to))
            start = served_to
        return pieces

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the current item, copying the long pieces with the GIL released.

        ``torch.load`` reads each tensor's bytes with one ``readinto`` into a
        storage it has just allocated; the copy then also takes the page
        faults of that fresh memory. Done under the GIL it holds the event
        loop up, which is receiving the next parts meanwhile, for as long;
        ``ctypes.memmove`` releases the GIL while it copies a ``bytes`` piece.
        """
        self._check_open()
        view = _as_byte_view(buffer)
        length = self._available(self._position, len(view)) if len(view) else 0
        if length == 0:
            return 0
        target = ctypes.c_char.from_buffer(view)  # holds the buffer while its address is used
        address = ctypes.addressof(target)
        filled = 0
        for piece in self._serve(self._position, length):
            piece_length = len(piece)
            if filled + piece_length > length:
                break  # a strategy bug: _check_length below says so, and nothing past the buffer is written
            if type(piece) is bytes and piece_length >= UNLOCKED_COPY:
                ctypes.memmove(address + filled, piece, piece_length)
            else:
                view[filled : filled + piece_length] = piece
            filled += piece_length
        del target
        self._check_length(filled, length)
        self._position += length
        self._delivered(length)
        return length

    def _release(self) -> None:
        self._close_stream()
        self._close_prefetched()
        self._item_bytes.clear()
        if self._fallback is not None:
            self._fallback.close()
            self._fallback = None

    # -- planned items -----------------------------------------------------------------

    def _item_containing(self, offset: int) -> int | None:
        index = bisect.bisect_right(self._item_starts, offset) - 1
        if index >= 0 and offset < self._items[index].end:
            return index
        return None

    def _load_item(self, index: int) -> None:
        """Make item ``index`` the buffered one, reading its bytes off its group's stream."""
        item = self._items[index]
        group = self._group_of_item[index]
        if group != self._stream_group or self._leftover_start > item.start:
            self._open_group_stream(group)
        self._current = -1  # until the item is whole, no item is buffered
        self._item_bytes.clear(item.start)  # the previous item's bytes are released here
        position = self._leftover_start
        view = self._leftover
        try:
            while position < item.end:
                if not view:
                    view = memoryview(self._next_chunk(item))
                    continue
                # Drop bytes before the item (a gap, or an item nobody read), keep what lies inside it.
                if position < item.start:
                    skip = min(item.start - position, len(view))
                    view = view[skip:]
                    position += skip
                    continue
                take = min(item.end - position, len(view))
                self._item_bytes.append(view[:take])
                view = view[take:]
                position += take
        except BaseException:
            # The stream failed partway: drop it, so a retry reopens the group.
            self._close_stream()
            self._item_bytes.clear()
            raise
        self._leftover = view
        self._leftover_start = position
        self._current = index
        if item is self._groups[group].items[-1] and not self._prefetched and group + 1 < len(self._groups):
            # Whatever the budget, the next group travels while this item is deserialized.
            self._start_prefetch(group + 1)

    def _prefetch_after(self, group: int) -> None:
        """Start the streams of the groups after ``group`` while their bytes fit in ``prefetch_bytes``."""
        following = self._prefetched[-1][0] + 1 if self._prefetched else group + 1
        budget = sum(self._groups[g].end - self._groups[g].start for g, _ in self._prefetched)
        while following < len(self._groups):
            spec = self._groups[following]
            budget += spec.end - spec.start
            if budget > self._prefetch_bytes:
                return
            self._start_prefetch(following)
            following += 1

    def _start_prefetch(self, group: int) -> None:
        spec = self._groups[group]
        self._prefetched.append((group, self._get_stream(spec.start, spec.end)))

    def _open_group_stream(self, group: int) -> None:
        self._close_stream()
        spec = self._groups[group]
        if self._prefetched and self._prefetched[0][0] == group:
            self._stream = self._prefetched.popleft()[1]
        else:
            self._close_prefetched()  # a jump: what was fetched ahead is not what comes next
            self._stream = self._get_stream(spec.start, spec.end)
        self._stream_group = group
        self._leftover = memoryview(b"")
        self._leftover_start = spec.start
        self._prefetch_after(group)

    def _next_chunk(self, item: ItemRange) -> Chunk:
        assert self._stream is not None
        chunk = next(self._stream, None)
        if chunk is None:
            raise IncompleteObjectError(
                errno.EIO,
                f"s3://{self.bucket}/{self.key} ended before the planned item [{item.start}, {item.end})",
            )
        return chunk

    def _close_stream(self) -> None:
        close_stream(self._stream)
        self._stream = None
        self._stream_group = -1
        self._leftover = memoryview(b"")

    def _close_prefetched(self) -> None:
        while self._prefetched:
            close_stream(self._prefetched.popleft()[1])

    # -- stray access ------------------------------------------------------------------

    def _stray_end(self, start: int, end: int) -> int:
        """Where a stray read stops: at the next item still ahead of us, or at the read's end."""
        following = bisect.bisect_right(self._item_starts, start)
        if following < len(self._items) and following >= self._current:
            return min(end, self._items[following].start)
        return end

    def _read_stray(self, start: int, end: int) -> bytes:
        if self._fallback is None:
            logger.warning(
                "s3://%s/%s: read at offset %d lies outside the load plan's ranges or behind the current item; "
                "serving it and any later stray reads of this file with ranged GETs",
                self.bucket,
                self.key,
                start,
            )
            self._fallback = RangedS3Reader(self.bucket, self.key, self._get_object_info, self._get_stream)
        self._fallback.seek(start)
        return self._fallback.read(end - start)
