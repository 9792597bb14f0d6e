"""Anticipating a parquet reader: once the footer and the first column chunks have been read, fetch the rest ahead.

pyarrow reads a parquet file through a Python file one request at a time
(its reads pass one lock), so each column chunk waits for its own round
trip. But the footer says where every chunk lies, and the first chunks read
say which columns are wanted::

    reads    [footer]   [rg0 c03]     [rg4 c03] [rg1 c03] [rg1 c14] ...
    learned  the map    c03 wanted    ...                 c14 wanted
    fetched ahead       rg1..4 c03 at once                rg0,2,3,4 c14 at once
                        (each read after that is served from memory)

A column is learned when a read asks for its first byte, before the bytes
arrive, so the column's other chunks travel beside the read that taught it:
one round trip per column of the projection, not two.

Only columns already read (here, or in another file of the folder open at
the time: ``folder_columns.py``) are fetched ahead, only chunks not read
yet, and only within ``budget`` bytes held at a time; each range is handed out as the
received chunks (views, no copy) and dropped once read to its end. A file
that is not parquet (no ``PAR1`` at its end) is never touched, and reads the
prediction does not cover go the usual way.
"""

from __future__ import annotations

import bisect
import collections
import errno
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..chunks import ChunkRun
from ..errors import IncompleteObjectError
from ..forking import ForkSafeLock
from ..parquet_footer import TRAILER, ColumnChunk, FooterError, layout_in_tail
from ..protocol import Chunk, GetStream, ObjectInfo
from .anticipation import Segment
from .base import close_stream
from .folder_columns import FolderMember, Offered, file_version, folder_of
from .options import byte_count_check

logger = logging.getLogger(__name__)

DEFAULT_PARQUET_PREFETCH_BYTES = 256 * 1024 * 1024
"""Bytes of column chunks fetched ahead and not yet read, at most, per open parquet file.

pyarrow asks for a whole projection in coalesced reads of up to 32 MiB, one
after another, and each waits for all its bytes: to keep a link's
connections busy while one read waits, several such reads must be on their
way. Measured through a link of 20 ms and 90 MB/s per connection, all 20
columns of a 242 MiB file: 0.61 s at 64 MiB, 0.50 s at 128 MiB, 0.39 s at
192 or 256 MiB (pyarrow's native client: 0.55 s). pyarrow keeps what it
pre-buffers until it decodes it, and the bytes are handed to it without a
copy, so what is fetched ahead mostly replaces memory pyarrow would hold,
rather than adding to it."""

MERGE_GAP = 8 * 1024
"""Chunks this close share one GET (pyarrow coalesces its own reads with the same hole size)."""

LARGEST_RANGE = 32 * 1024 * 1024
"""A range fetched ahead grows no longer than this (pyarrow's own largest coalesced read), so that several
travel at once; the transport cuts it into parts as the link needs."""


check_prefetch_budget = byte_count_check(0, "0 fetches nothing ahead")


def parquet_prefetch(
    get_stream: GetStream, info: ObjectInfo, budget: int, name: tuple[str, str]
) -> ParquetPrefetch | None:
    """What a reader fetching ahead for parquet holds: nothing when the budget is 0."""
    if budget <= 0:
        return None
    return ParquetPrefetch(get_stream, info.size, budget, file_version(*name, info), name)


_LAYOUTS: collections.OrderedDict[tuple[object, ...], list[ColumnChunk]] = collections.OrderedDict()
_LAYOUTS_KEPT = 256
_LAYOUTS_LOCK = ForkSafeLock()
"""Layouts read from footers, by object version: pyarrow reads a file's footer on its first open and
not again on the next opens of the same file, which then need the layout all the same."""


def _remember_layout(version: tuple[object, ...] | None, chunks: list[ColumnChunk]) -> None:
    if version is None:
        return
    with _LAYOUTS_LOCK:
        _LAYOUTS[version] = chunks
        _LAYOUTS.move_to_end(version)
        while len(_LAYOUTS) > _LAYOUTS_KEPT:
            _LAYOUTS.popitem(last=False)


def _known_layout(version: tuple[object, ...] | None) -> list[ColumnChunk] | None:
    if version is None:
        return None
    with _LAYOUTS_LOCK:
        return _LAYOUTS.get(version)


def _merged(chunks: list[ColumnChunk], indices: list[int]) -> list[_Range]:
    """The chunks at ``indices`` (ascending), neighbours merged into one range each, up to ``LARGEST_RANGE``."""
    merged: list[_Range] = []
    for index in indices:
        chunk = chunks[index]
        last = merged[-1] if merged else None
        if last and chunk.start - last.end <= MERGE_GAP and chunk.end - last.start <= LARGEST_RANGE:
            last.end = chunk.end
        else:
            merged.append(_Range(chunk.start, chunk.end))
    return merged


def _ranges_of(chunks: list[ColumnChunk], columns: set[str]) -> list[tuple[int, int]]:
    """The ranges fetched ahead for ``columns`` of a file whose chunks are ``chunks``."""
    wanted = [index for index, chunk in enumerate(chunks) if chunk.column in columns]
    return [(foreseen.start, foreseen.end) for foreseen in _merged(chunks, wanted)]


@dataclass
class _Range:
    """Chunks fetched ahead as one stream: ``[start, end)``, what of it has arrived, and where its unread bytes begin.

    Reads take a range's bytes in any order (pyarrow's threads do): the bytes
    before ``unread_from`` were handed out, or moved to a range of their own
    when a read took bytes after them first (``ParquetPrefetch._take``).
    """

    start: int
    end: int
    stream: Iterator[Chunk] | None = None
    received: ChunkRun = field(init=False)
    unread_from: int = field(init=False)

    def __post_init__(self) -> None:
        self.received = ChunkRun(self.start)
        self.unread_from = self.start

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def held(self) -> int:
        """Bytes of a started range not handed out yet: on their way, or received and waiting for their read."""
        return self.end - self.unread_from if self.stream is not None else 0


def _unread_from(foreseen: _Range) -> int:
    """The order of the foreseen ranges: of their unread bytes (a range's read part may lie after another's start)."""
    return foreseen.unread_from


def _arrived(start: int, pieces: list[Chunk]) -> _Range:
    """A range whose bytes have all arrived (pieces of another one): its stream is spent."""
    received = ChunkRun(start, pieces)
    arrived = _Range(start, received.end, iter(()))
    arrived.received = received
    return arrived


class ParquetPrefetch:
    """Learns a parquet file's layout and projection from the reads it sees; serves the reads it foresaw."""

    def __init__(
        self,
        get_stream: GetStream,
        size: int,
        budget: int,
        version: tuple[object, ...] | None = None,
        name: tuple[str, str] | None = None,
    ) -> None:
        self._get_stream = get_stream
        self._size = size
        self._budget = budget
        self._version = version  # the object's name, size, ETag and version: the layout is this version's
        self._tail = ChunkRun(size)  # the file's last bytes as reads revealed them, until the footer is known
        self._chunks = _known_layout(version)
        self._starts = [chunk.start for chunk in self._chunks or []]
        self._off = budget <= 0
        self._columns: set[str] = set()
        self._done: set[int] = set()  # chunks read, or foreseen: never foreseen (again)
        self._ranges: list[_Range] = []  # foreseen, in the order of their unread bytes; started ones have a stream
        self._read_to = 0  # where the last read ended: the next ones usually go on from there
        self._peak_held = 0
        # the readers open in the same folder: the columns they learn are this file's next reads too
        self._folder = FolderMember(folder_of(*name), name[1]) if name is not None and not self._off else None
        self._adopt_offered()
        self._share_layout()

    def serve(self, start: int, end: int) -> list[Segment] | None:
        """``[start, end)`` cut where the started foreseen ranges in it begin and end; None when none of it is.

        A foreseen segment's bytes come from its range (``take()``, which
        waits for them if they are still on their way); the others the reader
        fetches itself, first, so that they travel while the foreseen ones
        arrive. A range read to its end is dropped, freeing its place in the
        budget. A foreseen range the budget has not let start yet is no longer
        ahead once a read asks for it: the read fetches its part as reads are
        fetched (in parts that fit the link), and the prefetch never holds more
        than its budget.
        """
        self._read_to = end
        if self._folder is not None and self._chunks and start < self._chunks[-1].end:
            self._folder.reads_columns()  # a read of column chunks, not of the footer: the folder fetches for it
        self._adopt_heard()
        segments: list[Segment] = []
        at = start
        for foreseen in list(self._ranges):
            first, stop = max(at, foreseen.unread_from), min(end, foreseen.end)
            if first >= stop:
                continue
            if foreseen.stream is None:
                self._cut_out(foreseen, first, stop)
                continue
            if first > at:
                segments.append(Segment(at, first))
            segments.append(Segment(first, stop, functools.partial(self._take, foreseen, first, stop)))
            at = stop
            if at >= end:
                break
        if not segments:
            return None
        if at < end:
            segments.append(Segment(at, end))
        return segments

    def _cut_out(self, foreseen: _Range, start: int, end: int) -> None:
        """A range not started loses ``[start, end)`` to a read; what lies on either side stays foreseen."""
        index = self._ranges.index(foreseen)
        sides = [_Range(foreseen.start, start), _Range(end, foreseen.end)]
        self._ranges[index : index + 1] = [side for side in sides if side.length > 0]

    def _take(self, foreseen: _Range, start: int, stop: int) -> list[Chunk]:
        """Hand out ``[start, stop)`` of a started range; its bytes before ``start`` not read yet stay held.

        pyarrow's threads read a projection's ranges in any order: a read of
        a range's second half may come before the read of its first. The
        first half then becomes a range of its own, already received, so
        that its read finds it rather than fetching it again.
        """
        self._receive(foreseen, stop)
        pieces = foreseen.received.slice(start, stop)
        if start > foreseen.unread_from:  # the skipped bytes go just before this range's rest, in the order kept
            skipped = _arrived(foreseen.unread_from, foreseen.received.slice(foreseen.unread_from, start))
            self._ranges.insert(self._ranges.index(foreseen), skipped)
        foreseen.unread_from = stop  # still before every later range's unread bytes: nothing to sort
        if stop == foreseen.end:
            self._ranges.remove(foreseen)
            close_stream(foreseen.stream)
            self._fill()
        else:
            foreseen.received.drop_before(stop)
        return pieces

    def expect(self, start: int, end: int) -> None:
        """Learn the columns a read asks for before its bytes arrive: their other chunks then travel beside it."""
        if self._off or self._chunks is None:
            return
        # A chunk is asked for by a read of its first byte: the footer read that ends in the last
        # chunk's tail says nothing of that chunk's column. One read or foreseen before teaches
        # nothing new either (a chunk the folder fetched for this file is served as foreseen).
        asked = [i for i in self._overlapping(start, end) if start <= self._chunks[i].start and i not in self._done]
        self._done.update(asked)
        wanted = {self._chunks[i].column for i in asked} - self._columns
        if wanted:
            if self._folder is not None:
                wanted = self._folder.tell(wanted, _ranges_of, self._budget)
                self._adopt_given()
            self._want(wanted)
            self._offer_to_next_files()

    def observe(self, start: int, end: int, pieces: list[Chunk]) -> None:
        """Learn from a read served the usual way: until the layout is known, the footer at the file's end."""
        if not self._off and self._chunks is None:
            self._learn_layout(start, end, pieces)
            self._adopt_heard()

    def speculation_end(self, start: int, limit: int) -> int:
        """Where a reader's own fetch of bytes no read asked for yet, from ``start``, stops (``limit`` at most).

        Before the first byte foreseen here: it is fetched ahead already, or
        will be. And once the layout is known, at the end of the column chunk
        (or the gap between chunks) that the byte before ``start`` lies in:
        the rest of a chunk is likely read next (by a reader that reads it
        page by page), but the next chunk only if its column is wanted, which
        is this prefetch's to know and fetch.
        """
        for foreseen in self._ranges:
            if foreseen.unread_from < limit and start < foreseen.end:
                limit = max(start, foreseen.unread_from)
                break
        if self._chunks is not None and 0 < start < limit:
            limit = max(start, min(limit, self._unit_end(start - 1)))
        return limit

    def _unit_end(self, offset: int) -> int:
        """The end of the column chunk that holds ``offset``, or of the gap it lies in (the file's end after the
        last chunk)."""
        assert self._chunks is not None
        index = bisect.bisect_right(self._starts, offset)  # the chunks before ``index`` start at or before it
        if index and offset < self._chunks[index - 1].end:
            return self._chunks[index - 1].end
        return self._starts[index] if index < len(self._starts) else self._size

    @property
    def peak_held(self) -> int:
        return self._peak_held

    def release(self) -> None:
        for foreseen in self._ranges:
            close_stream(foreseen.stream)
        self._ranges = []
        self._tail.clear()
        if self._folder is not None:
            self._folder.leave()
            self._folder = None

    def _adopt_heard(self) -> None:
        """Fetch ahead the columns the folder's other readers learned, once this file's layout is known."""
        if self._folder is None or self._off or self._chunks is None:
            return
        self._adopt_given()
        heard = self._folder.heard() - self._columns
        if heard:
            self._want(heard)
        self._offer_to_next_files()

    def _adopt_offered(self) -> None:
        """Take what the folder fetched for this file before it opened (a scan's next file): it is held as foreseen."""
        if self._folder is None:
            return
        offered = self._folder.take_offered(self._version)
        if offered and self._chunks is None:  # its layout was forgotten since: nothing says what the bytes are
            for piece in offered:
                close_stream(piece.stream)
            return
        self._hold_as_foreseen(offered)

    def _adopt_given(self) -> None:
        """Hold as foreseen what another reader of the folder fetched for this file as it learned a column."""
        assert self._folder is not None
        given, columns = self._folder.take_given()
        self._columns |= columns
        self._hold_as_foreseen(given)

    def _hold_as_foreseen(self, fetched: list[Offered]) -> None:
        """Ranges fetched for this file by the folder, held as foreseen ranges of its own.

        One whose chunk this reader has read, or planned, meanwhile (it
        learned the column itself a moment earlier) is dropped.
        """
        if not fetched:
            return
        for piece in fetched:
            covered = [i for i in self._overlapping(piece.start, piece.end) if piece.start <= self._starts[i]]
            if any(i in self._done for i in covered):
                close_stream(piece.stream)
                continue
            self._done.update(covered)
            self._ranges.append(_Range(piece.start, piece.end, piece.stream))
        self._ranges.sort(key=_unread_from)
        self._peak_held = max(self._peak_held, self._held())

    def _share_layout(self) -> None:
        """Once the layout is known, the folder's other readers fetch for this file what they learn."""
        if self._folder is not None and self._chunks is not None:
            self._folder.know_layout(self._chunks, self._get_stream)

    def _offer_to_next_files(self) -> None:
        """Fetch the folder's columns for the files the scan opens next, once their footers have arrived."""
        if self._folder is None:
            return
        for next_file, columns in self._folder.files_to_offer():
            layout = next_file.layout()
            if layout is None:
                continue
            _remember_layout(next_file.version, layout)  # for the reader that opens it, which reads no footer
            self._folder.offer(next_file, columns, _ranges_of(layout, columns), self._budget)

    def _want(self, columns: set[str]) -> None:
        """Columns newly known to be read: their chunks not read yet are planned and fetched ahead."""
        self._columns |= columns
        self._foresee(columns)
        self._fill()

    # -- the layout ------------------------------------------------------------------------

    def _learn_layout(self, start: int, end: int, pieces: list[Chunk]) -> None:
        """Keep the bytes reads revealed at the file's end; once they hold the footer, read the layout from it."""
        tail = self._tail
        if end == self._size and start < tail.start:
            self._tail = ChunkRun(start, pieces)
        elif tail and end == tail.start:  # the footer's earlier bytes, read after its last ones
            self._tail = ChunkRun(start, [*pieces, *tail.slice(tail.start, tail.end)])
        else:
            return
        if len(self._tail) < TRAILER:
            return
        try:
            tail = self._tail
            chunks = layout_in_tail(tail.start, b"".join(tail.slice(tail.start, self._size)), self._size)
        except FooterError as exc:
            logger.debug("not reading ahead: %s", exc)
            self._off = True  # not parquet, or a footer this parser cannot read: stay out of the way
        else:
            if chunks is None:
                return  # the rest of the footer is still to come
            self._chunks = chunks
            self._starts = [chunk.start for chunk in chunks]
            _remember_layout(self._version, chunks)
            self._share_layout()
        self._tail = ChunkRun(self._size)

    def _overlapping(self, start: int, end: int) -> list[int]:
        """The indices of the chunks that ``[start, end)`` touches (chunks are sorted and do not overlap)."""
        assert self._chunks is not None
        index = max(0, bisect.bisect_right(self._starts, start) - 1)
        found = []
        while index < len(self._chunks) and self._chunks[index].start < end:
            if start < self._chunks[index].end:
                found.append(index)
            index += 1
        return found

    # -- fetching ahead ----------------------------------------------------------------------

    def _foresee(self, columns: set[str]) -> None:
        """Plan the chunks of ``columns`` not read yet, neighbours merged into one range each."""
        assert self._chunks is not None
        wanted = [i for i, chunk in enumerate(self._chunks) if chunk.column in columns and i not in self._done]
        self._done.update(wanted)
        fitting = [foreseen for foreseen in _merged(self._chunks, wanted) if foreseen.length <= self._budget]
        self._ranges = sorted([*self._ranges, *fitting], key=_unread_from)

    def _fill(self) -> None:
        """Start the foreseen ranges while what they hold stays within the budget: first those after the last read.

        pyarrow's reads go up the file from where they are, but not always
        from its start: its threads may take the first row group's read last.
        A range behind the reads would hold its place in the budget until
        then, while the reads ahead of it wait on the link.
        """
        held = self._held()
        waiting = sorted((r for r in self._ranges if r.stream is None), key=lambda r: r.start < self._read_to)
        for foreseen in waiting:
            if held + foreseen.length > self._budget:
                break
            foreseen.stream = self._get_stream(foreseen.start, foreseen.end, ahead=True)
            held += foreseen.length
        self._peak_held = max(self._peak_held, held)

    def _held(self) -> int:
        """Bytes of the started ranges not handed out yet (``_Range.held``): what the budget bounds."""
        return sum(foreseen.held for foreseen in self._ranges)

    def _receive(self, foreseen: _Range, stop: int) -> None:
        assert foreseen.stream is not None
        try:
            while foreseen.received.end < stop:
                chunk = next(foreseen.stream, None)
                if chunk is None:
                    raise IncompleteObjectError(
                        errno.EIO, f"a stream of [{foreseen.start}, {foreseen.end}) ended at {foreseen.received.end}"
                    )
                foreseen.received.append(chunk)
        except BaseException:
            # A broken stream is forgotten: the read that needed it fails as any read would;
            # the next read goes the usual way.
            close_stream(foreseen.stream)
            self._ranges.remove(foreseen)
            raise
