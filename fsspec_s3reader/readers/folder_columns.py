"""What the parquet readers open at the same time in one folder share: the columns learned, and the next files' chunks.

A dataset scan (``pyarrow.dataset``, dask, a loop over a list of files)
opens the parquet files of one folder and reads the same columns of each.
What one file's reader learns from pyarrow's reads (``c03`` and ``c14`` are
wanted) then foretells what the other files will be asked for:

- each reader open in that folder gets them: the reader that learned a column
  fetches that column's chunks for every other open reader (of another file)
  that knows its file's layout and reads data, at once (an open that reads
  only the footer gets nothing; pyarrow reads a file's columns one after another,
  so a reader that waited to learn the second column from its own reads
  would ask for it a round trip later); one that does not know its layout
  yet hears of them, and fetches them itself once it does;
- the files the scan opens next (the filesystem names them from its listing,
  ``announce_next_files``, and their footers, fetched ahead, say where their
  chunks lie) have those columns fetched before they open: as many files as
  the scan has open at once (two at least, ``SCAN_WIDTH``), so a scan of four
  files at a time has the next four on their way while it reads these. The
  reader that opens one of them takes what was fetched for it::

    f0..f3  [footer] [c03] [c14]     learn c03, then c14: tell the folder
    f4..f7  c03 and c14 fetched      while f0..f3 are read; opened, they read from memory

Only readers open at the same time share: when the last one of a folder
closes (or is collected), what they learned is forgotten and what was
fetched for files not opened is dropped, and the next read of that folder
learns from its own reads again. What a folder fetches for its next files
stays within one reader's budget, and files the scan passed over (a file
before the first one open) have theirs dropped.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ..forking import ForkSafeLock
from ..parquet_footer import ColumnChunk
from ..protocol import Chunk, GetStream, ObjectInfo
from .base import close_stream

logger = logging.getLogger(__name__)

_LOCK = ForkSafeLock()

SCAN_WIDTH = 2
"""Readers open at once in a folder from which it is read as a scan, and its next files are fetched for."""


PlanRanges = Callable[[list[ColumnChunk], set[str]], list[tuple[int, int]]]
"""The ranges of a file (its chunks given) that hold the chunks of some columns, as they are fetched ahead."""


def folder_of(bucket: str, key: str) -> tuple[str, str]:
    """The folder a key lies in, as the readers of one folder are grouped."""
    return bucket, key.rpartition("/")[0]


def file_version(bucket: str, key: str, info: ObjectInfo) -> tuple[object, ...] | None:
    """What names one version of an object: its place, size, ETag and version; None when S3 told no ETag nor version."""
    return (bucket, key, info.size, info.etag, info.version_id) if info.etag or info.version_id else None


class NextFile(Protocol):
    """A file of the folder a scan has not opened yet and is likely to open soon."""

    @property
    def key(self) -> str: ...

    @property
    def version(self) -> tuple[object, ...] | None:
        """As ``file_version`` names it: what is fetched for it goes only to a reader of this version."""

    def layout(self) -> list[ColumnChunk] | None:
        """Its column chunks, once its footer has arrived; None until then (or if it is not parquet)."""

    def get_stream(self, start: int, end: int, /, *, ahead: bool = False) -> Iterator[Chunk]: ...


@dataclass
class Offered:
    """Bytes ``[start, end)`` of a file not opened yet, on their way for the reader that will open it."""

    start: int
    end: int
    stream: Iterator[Chunk]


@dataclass
class _Offer:
    version: tuple[object, ...] | None
    columns: set[str] = field(default_factory=set)  # fetched, or passed over for the budget: not offered again
    ranges: list[Offered] = field(default_factory=list)


class _Folder:
    """The readers open in one folder, the columns they have learned, and what is fetched for the next files."""

    def __init__(self) -> None:
        self.columns: set[str] = set()
        self.members: weakref.WeakSet[FolderMember] = weakref.WeakSet()
        self.next_files: dict[str, NextFile] = {}
        self.offers: dict[str, _Offer] = {}

    def forget(self) -> list[Iterator[Chunk]]:
        """Forget the next files and what was fetched for them; the streams, to close."""
        streams = [offered.stream for offer in self.offers.values() for offered in offer.ranges]
        self.offers.clear()
        self.next_files.clear()
        return streams

    def offered_bytes(self) -> int:
        return sum(offered.end - offered.start for offer in self.offers.values() for offered in offer.ranges)

    def pass_over(self) -> list[Iterator[Chunk]]:
        """Forget the next files now open or before the first one open (the scan went past those); streams to close.

        What was fetched for a file now open stays until its reader takes it.
        """
        keys = [member.key for member in self.members]
        first = min(keys, default=None)
        passed = [key for key in self.next_files if first is None or key < first or key in keys]
        for key in passed:
            del self.next_files[key]
        return [
            offered.stream
            for key in [key for key in self.offers if first is None or key < first]
            for offered in self.offers.pop(key).ranges
        ]


_FOLDERS: dict[tuple[str, str], _Folder] = {}
_PID = [os.getpid()]


def _folders() -> dict[tuple[str, str], _Folder]:
    """This process's folders, under the lock: a forked child's copy of its parent's streams would never deliver."""
    if _PID[0] != os.getpid():
        _PID[0] = os.getpid()
        _FOLDERS.clear()
    return _FOLDERS


def _close(streams: Iterable[Iterator[Chunk]]) -> None:
    for stream in streams:
        close_stream(stream)


def _fetch_within(key: str, get_stream: GetStream, ranges: list[tuple[int, int]], room: int) -> list[Offered]:
    """``ranges`` of ``key`` fetched ahead, in order, as long as their bytes fit in ``room``."""
    fetched: list[Offered] = []
    for start, end in ranges:
        if end - start > room:
            break
        try:
            stream = get_stream(start, end, ahead=True)
        except RuntimeError as exc:  # no loop to send on (a closed filesystem, interpreter shutdown)
            logger.debug("not fetching ahead for %s: %s", key, exc)
            break
        fetched.append(Offered(start, end, stream))
        room -= end - start
    return fetched


def announce_next_files(folder: tuple[str, str], files: Iterable[NextFile]) -> None:
    """The files of ``folder`` a scan will open next (listing order): fetched for once its readers know the columns.

    Nothing is kept for a folder with no reader open: nobody there has a
    projection to foretell them by.
    """
    with _LOCK:
        shared = _folders().get(folder)
        if shared is None or not shared.members:
            return
        for next_file in files:
            shared.next_files.setdefault(next_file.key, next_file)
        passed = shared.pass_over()
    _close(passed)


class FolderMember:
    """One open reader's place in its folder: what it tells the others, what it has heard, what it was given."""

    def __init__(self, folder: tuple[str, str], key: str) -> None:
        self.key = key
        self._place = folder
        # Once its reader knows the file's layout, the others fetch the columns they learn for it (``tell``).
        self._layout: list[ColumnChunk] | None = None
        self._get_stream: GetStream | None = None
        self._covered: set[str] = set()  # columns its reader fetches itself, or was given
        self._reads_columns = False  # it has read a column chunk: not an open that reads only the footer
        self._given: list[Offered] = []
        self._given_columns: set[str] = set()
        stale: list[Iterator[Chunk]] = []
        with _LOCK:
            folders = _folders()
            shared = folders.get(folder)
            if shared is None or not shared.members:  # nobody open there: nothing learned is kept
                if shared is not None:  # its readers were collected without closing
                    stale = shared.forget()
                shared = folders[folder] = _Folder()
            shared.members.add(self)
            self._folder = shared
            self._heard = set(shared.columns)
            stale += shared.pass_over()
        _close(stale)

    def know_layout(self, layout: list[ColumnChunk], get_stream: GetStream) -> None:
        """Its reader knows the file's chunks: once it reads one, the others fetch what they learn for it."""
        with _LOCK:
            self._layout, self._get_stream = layout, get_stream

    def reads_columns(self) -> None:
        """Its reader has read a column chunk: it reads data, so the others fetch what they learn for it.

        An open that reads only the footer (pyarrow's first open of a file
        whose schema it wants) gets nothing fetched for it.
        """
        if not self._reads_columns:
            with _LOCK:
                self._reads_columns = True

    def tell(self, columns: set[str], plan: PlanRanges, budget: int) -> set[str]:
        """Columns this reader was asked for; returns those it is to fetch itself (no other reader did for it).

        Every other reader open in the folder, on another file, gets them:
        fetched for it here, at once, when it knows its layout and has read a
        column chunk (``plan`` says which ranges of its file hold them; at
        most ``budget`` bytes each time), so that its next reads find them on
        their way rather than asking for them one after another; otherwise it
        hears of them, and fetches them itself at its next read.
        """
        with _LOCK:
            mine = columns - self._covered
            self._covered |= columns
            self._folder.columns |= columns
            for member in self._folder.members:
                if member is not self and member.key != self.key:  # another open of this file reads for itself
                    member._receive(columns, plan, budget)
        return mine

    def _receive(self, columns: set[str], plan: PlanRanges, budget: int) -> None:
        """Another reader learned ``columns``: fetch this one's chunks of those it lacks, or let it hear of them."""
        missing = columns - self._covered
        if not missing:
            return
        if self._layout is None or self._get_stream is None or not self._reads_columns:
            self._heard |= missing
            return
        self._covered |= missing
        self._given_columns |= missing
        held = sum(piece.end - piece.start for piece in self._given)
        # ranges past the budget are left to its reader, which fetches them as it reads them
        self._given += _fetch_within(self.key, self._get_stream, plan(self._layout, missing), budget - held)

    def take_given(self) -> tuple[list[Offered], set[str]]:
        """What the other readers fetched for this one since the last call, and the columns that covers."""
        with _LOCK:
            given, self._given = self._given, []
            columns, self._given_columns = self._given_columns, set()
        return given, columns

    def heard(self) -> set[str]:
        """The columns the others have told since the last call (all they knew, the first time): to fetch itself."""
        with _LOCK:
            heard, self._heard = self._heard - self._covered, set()
            self._covered |= heard
        return heard

    def take_offered(self, version: tuple[object, ...] | None) -> list[Offered]:
        """What the folder fetched for this reader's file before it opened, if for this version."""
        with _LOCK:
            offer = self._folder.offers.pop(self.key, None)
        if offer is None:
            return []
        if version is None or offer.version != version:  # the file changed since its listing
            _close(offered.stream for offered in offer.ranges)
            return []
        return offer.ranges

    def files_to_offer(self) -> list[tuple[NextFile, set[str]]]:
        """The files the scan opens next, as many as it has open, with the folder's columns not fetched for them yet.

        Only for a scan: one reader open alone (a file read on its own, or a
        loop that closes each file before it opens the next) has nothing
        fetched for the files after it, which may never be read, and whose
        chunks its close would drop.
        """
        with _LOCK:
            shared = self._folder
            if not shared.columns or not shared.next_files or len(shared.members) < SCAN_WIDTH:
                return []
            wanted = []
            for key in sorted(shared.next_files)[: len(shared.members)]:
                offer = shared.offers.get(key)
                missing = shared.columns - (offer.columns if offer is not None else set())
                if missing:
                    wanted.append((shared.next_files[key], missing))
            return wanted

    def offer(self, next_file: NextFile, columns: set[str], ranges: list[tuple[int, int]], budget: int) -> None:
        """Fetch ``ranges`` of ``next_file`` (its chunks of ``columns``) for the reader that will open it.

        The folder holds at most ``budget`` bytes so fetched; ranges past it
        are left to that reader. When another reader has offered some of these
        columns meanwhile, this call does nothing.
        """
        with _LOCK:
            shared = self._folder
            if shared.next_files.get(next_file.key) is not next_file:
                return  # opened, or passed over, since
            offer = shared.offers.setdefault(next_file.key, _Offer(next_file.version))
            if offer.columns & columns:
                return
            offer.columns |= columns
            offer.ranges += _fetch_within(next_file.key, next_file.get_stream, ranges, budget - shared.offered_bytes())

    def leave(self) -> None:
        for piece in self.take_given()[0]:
            close_stream(piece.stream)
        with _LOCK:
            shared = self._folder
            shared.members.discard(self)
            if shared.members:
                dropped = shared.pass_over()
            else:
                if _folders().get(self._place) is shared:
                    del _FOLDERS[self._place]
                dropped = shared.forget()
        _close(dropped)
