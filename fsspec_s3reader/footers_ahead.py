"""Footers fetched ahead: a scan of a listed folder opens its parquet files one after another, footer first.

``pyarrow.dataset`` and dask list a folder, then open its files a few at a
time, and each open's first request asks for the file's footer: a round trip
per file before pyarrow can ask for a single column chunk. The listing has
already said which files come next, so when a reader opens one, its own
footer is sent for first, then the footers of the next few files of its
folder, side by side, each kept where the next opens look for an object's
last bytes (the filesystem's memory of recent tails). An open that finds its
footer on its way waits for it rather than asking again.

Only files of a folder this filesystem listed (and whose names say parquet)
are fetched ahead, at most ``FOOTERS_AHEAD`` past the one opened, each
once; a footer nobody opens costs one GET of ``first_get_size`` bytes and is
forgotten with the rest of the recent tails.

The same next files, as ``ListedParquetFile``, are named to the readers open
in the folder: once a footer has arrived and they know the projection, they
fetch that file's chunks of it before it opens (``readers/folder_columns.py``).
"""

from __future__ import annotations

import bisect
import concurrent.futures
import functools
import logging
import operator
import os
from collections.abc import Callable, Iterator, Sequence

from .forking import ForkSafeLock
from .parquet_footer import ColumnChunk, FooterError, layout_in_tail
from .protocol import Chunk, GetStream, ObjectInfo

logger = logging.getLogger(__name__)

FOOTERS_AHEAD = 8
"""How many of the next files of a listed folder have their footers fetched when one opens: a scan's readahead
(pyarrow's dataset opens four files at a time) and the next few, for 8 GETs of 64 KiB at most per open."""

FetchTail = Callable[[str, ObjectInfo], "concurrent.futures.Future[None]"]
"""Start the GET of a path's last bytes (the listing's size and ETag given) and return without waiting."""


class FootersAhead:
    """The footers on their way, by path; safe across threads, and forgotten in a forked child."""

    def __init__(self, fetch_tail: FetchTail) -> None:
        self._fetch_tail = fetch_tail
        self._lock = ForkSafeLock()
        self._on_the_way: dict[str, concurrent.futures.Future[None]] = {}
        self._pid = os.getpid()

    def fetch_from(
        self,
        path: str,
        siblings: Sequence[tuple[str, ObjectInfo]],
        known: Callable[[str], bool],
        *,
        one_server_queue: bool = False,
    ) -> Sequence[tuple[str, ObjectInfo]]:
        """``path`` opens: fetch its own footer first, then those of the next ``FOOTERS_AHEAD`` of its ``siblings``.

        ``siblings`` are sorted by name (the opened file among them, or it
        has no footer fetched here). The opened file's footer is the one its
        reader asks for at once, so it is sent before the others. A server
        that works through requests side by side on one queue (a near one,
        on the same host) would serve it no sooner than the others:
        ``one_server_queue`` sends the others once it has arrived (the open
        waits for it all the same). The last file of a folder has no next
        files, and its open sends nothing. ``known(name)`` says the filesystem holds
        that footer already; those and the ones on their way are not fetched
        again. A folder of many files costs a search per open, not a pass over
        the listing. Returns the next files, ``path`` not among them.
        """
        at = bisect.bisect_left(siblings, path, key=operator.itemgetter(0))
        listed = int(at < len(siblings) and siblings[at][0] == path)
        following = siblings[at + listed : at + listed + FOOTERS_AHEAD]
        if not following:
            return following  # no scan to anticipate: the open's first read asks for what it wants, no more
        self._fetch(siblings[at : at + listed], known)
        if one_server_queue:
            self.wait_for(path)
        self._fetch(following, known)
        return following

    def _fetch(self, files: Sequence[tuple[str, ObjectInfo]], known: Callable[[str], bool]) -> None:
        for name, info in files:
            with self._lock:
                self._forget_after_fork()
                if name in self._on_the_way or known(name):
                    continue
                try:
                    future = self._fetch_tail(name, info)
                except RuntimeError as exc:  # no loop to send on (interpreter shutting down, a closed filesystem)
                    logger.debug("not fetching the footer of %s ahead: %s", name, exc)
                    return
                self._on_the_way[name] = future
            future.add_done_callback(functools.partial(self._arrived, name))

    def wait_for(self, path: str) -> None:
        """Return once ``path``'s footer, if it is on its way, has arrived (or failed: the open then asks itself)."""
        with self._lock:
            self._forget_after_fork()
            future = self._on_the_way.get(path)
        if future is not None:
            concurrent.futures.wait([future])

    def _arrived(self, path: str, future: concurrent.futures.Future[None]) -> None:
        with self._lock:
            if self._on_the_way.get(path) is future:
                del self._on_the_way[path]
        if not future.cancelled() and future.exception() is not None:
            logger.debug("the footer of %s fetched ahead did not arrive: %s", path, future.exception())

    def _forget_after_fork(self) -> None:
        """A parent's futures belong to its event loop, which a forked child does not run: they never complete here."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._on_the_way = {}


class ListedParquetFile:
    """A parquet file of a listed folder, not opened yet: where its chunks lie once its footer is in, and a way to them.

    ``tail()``: the file's last bytes the filesystem holds (a footer fetched
    ahead), as ``(start, data)``, or None while they are on their way.
    ``open_transport()``: the file's ``get_stream``, made at the first range
    fetched for it.
    """

    def __init__(
        self,
        key: str,
        version: tuple[object, ...] | None,
        size: int,
        tail: Callable[[], tuple[int, bytes] | None],
        open_transport: Callable[[], GetStream],
    ) -> None:
        self.key = key
        self.version = version
        self._size = size
        self._tail = tail
        self._open_transport = open_transport
        self._get_stream: GetStream | None = None
        self._layout: list[ColumnChunk] | None = None
        self._unreadable = False

    def layout(self) -> list[ColumnChunk] | None:
        if self._layout is None and not self._unreadable:
            tail = self._tail()
            if tail is not None:
                try:
                    self._layout = layout_in_tail(*tail, self._size)
                except FooterError as exc:
                    logger.debug("%s: no chunks to fetch ahead, %s", self.key, exc)
                # a footer longer than the tail: its reader will fetch the rest when it opens
                self._unreadable = self._layout is None
        return self._layout

    def get_stream(self, start: int, end: int, /, *, ahead: bool = False) -> Iterator[Chunk]:
        if self._get_stream is None:
            self._get_stream = self._open_transport()
        return self._get_stream(start, end, ahead=ahead)
