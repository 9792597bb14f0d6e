"""An object's bytes received at their own offsets in one address space, so that any span of them is one view.

pyarrow takes one buffer per read; a read whose bytes arrived as several
GETs (a read cut into parts, or two column-chunk ranges fetched ahead) had
to be joined into a new one (5-10 ms per 31 MiB read, in pyarrow's one
reading thread). An ``ObjectArena`` is a map of the object's size (address
space: no memory until written); each GET of the object is received into
the arena at its offsets, so the pieces of a read lie side by side already
and ``one_view`` hands them out as one view::

    object    0                                                       size
    arena     [.....][part a.........][part b.......][.....][range c....]
    a read                   [.................]  -> one view, no copy

Every view is cut from a *region*, a ``ctypes`` array over some of the
arena's pages, and any view of a view (a slice, pyarrow's buffer, numpy's
array) keeps its region alive. A page that no live region covers is free.
Free pages stay in place for a while: once the last view of the arena is
gone and its file closed, the whole map goes to the receive pool, and the
next file's bodies land on pages already in memory (a page faulting in
costs as much CPU as receiving it). They are given back to the system
(``MADV_DONTNEED``; they read as zeros until written again) after
``WARM_FOR_AT_MOST`` seconds, or at once while the free pages of every
arena together exceed ``KEEP_WARM_AT_MOST`` bytes (a reader streaming
through a large file drops what it has read), as the pool does with its
unused buffers.

A region spans whole pages, its length rounded up to one of a few sizes (at
most an eighth longer), so that ``ctypes`` makes few array types.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence

from .protocol import Chunk

PAGE = mmap.PAGESIZE

IN_PLACE = hasattr(mmap, "MADV_DONTNEED") and sys.platform.startswith("linux")
"""Where pages can be given back one by one; elsewhere every body gets a buffer of its own."""

SMALLEST = 1024 * 1024
"""Objects smaller than this get no arena: joining their reads costs little, and their maps would be many."""

KEEP_WARM_AT_MOST = 256 * 1024 * 1024
"""Bytes of free pages the arenas of the process keep together; beyond them, free pages go back at once."""

WARM_FOR_AT_MOST = 1.0
"""Seconds an arena keeps a free page."""

_warm_lock = threading.Lock()
_warm_bytes = [0]
"""Bytes of free pages all arenas keep."""


def _count_warm(change: int) -> int:
    with _warm_lock:
        _warm_bytes[0] += change
        return _warm_bytes[0]


def region_length(length: int) -> int:
    """``length`` rounded up to whole pages and then to one of eight steps per power of two."""
    pages = -(-length // PAGE)
    step = 1 << max(0, pages.bit_length() - 4)  # eight to sixteen steps between one power of two and the next
    return -(-pages // step) * step * PAGE


class ObjectArena:
    """The bytes of one object of ``size`` bytes, byte ``i`` at offset ``i``; thread-safe.

    ``receive(start, end)`` is where a GET of ``[start, end)`` writes;
    ``view(start, end)`` reads back bytes a caller knows to be there (it
    holds views of them, so they are neither missing nor given back).
    ``take_map(length)`` gives its map.
    """

    def __init__(self, size: int, take_map: Callable[[int], mmap.mmap]) -> None:
        self.size = size
        self._take_map = take_map
        self._map: mmap.mmap | None = None  # held while a region lives: then the pool may hand it out again
        # A region may die in any thread, also in one that holds the lock (a collection run inside it): its
        # death is queued, and whoever holds the lock, or takes it next, frees its pages.
        self._lock = threading.Lock()
        self._dead: deque[int] = deque()
        self._regions: dict[int, tuple[int, int, weakref.ref[ctypes.Array[ctypes.c_char]]]] = {}
        self._next_token = 0
        self._warm: list[tuple[int, int]] = []  # free pages kept, as they were freed
        self._warm_since: float | None = None  # when the first of them was freed
        self._warm_bytes = 0
        self.pages_given_back = 0
        """Pages returned to the system (for tests)."""
        _ARENAS.add(self)

    def receive(self, start: int, end: int) -> memoryview:
        """A writable view of ``[start, end)``, for a GET's body to be received into."""
        return self._view(start, end)

    def view(self, start: int, end: int) -> memoryview:
        """A read-only view of ``[start, end)``, which the caller knows has been received and is held."""
        return self._view(start, end).toreadonly()

    def regions_alive(self) -> int:
        with self._lock:
            return len(self._regions)

    def _view(self, start: int, end: int) -> memoryview:
        if not 0 <= start <= end <= self.size:
            raise ValueError(f"[{start}, {end}) is not within an object of {self.size} bytes")
        low = start - start % PAGE
        length = region_length(end - low)
        with self._lock:  # the map is taken, and a region of it counted, at once: it is never let go in between
            if self._map is None:
                self._map = self._take_map(region_length(self.size))
            low = max(0, min(low, len(self._map) - length))  # near the end: the region reaches back instead
            region = (ctypes.c_char * length).from_buffer(self._map, low)
            region.arena = self  # type: ignore[attr-defined]  # what ``one_view`` recognises its views by
            token = self._next_token
            self._next_token += 1
            self._regions[token] = (low, low + length, weakref.ref(region, functools.partial(self._died, token)))
        self._free_dead()
        return memoryview(region).cast("B")[start - low : end - low]

    def _died(self, token: int, _: object) -> None:
        self._dead.append(token)
        self._free_dead()

    def _free_dead(self) -> None:
        while self._dead and self._lock.acquire(blocking=False):
            try:
                while self._dead:
                    self._free(self._dead.popleft())
            finally:
                self._lock.release()

    def _free(self, token: int) -> None:
        """A region's last view is gone: its pages no other live region covers are free (under the lock)."""
        low, high, _ = self._regions.pop(token)
        if not self._regions:  # the map, its pages in place, goes back to the pool, which keeps it a while
            self._map = None
            self._forget_warm()
            return
        free = self._uncovered(low, high)
        freed = sum(end - start for start, end in free)
        if not freed:
            return
        self._warm.extend(free)
        self._warm_bytes += freed
        if _count_warm(freed) > KEEP_WARM_AT_MOST:
            self._give_back_warm()
        elif self._warm_since is None:
            self._warm_since = time.monotonic()
            _SWEEPER.watch(self)

    def give_back_if_stale(self, now: float) -> bool:
        """Give back the free pages once kept ``WARM_FOR_AT_MOST``; True while some still wait for that."""
        with self._lock:
            if self._warm_since is None:
                return False
            if now - self._warm_since < WARM_FOR_AT_MOST:
                return True
            self._give_back_warm()
            return False

    def _give_back_warm(self) -> None:
        """Give back the free pages kept (those a region has covered again since stay: under the lock)."""
        for start, end in self._warm:
            for free_start, free_end in self._uncovered(start, end):
                self._give_back(free_start, free_end)
        self._forget_warm()

    def _forget_warm(self) -> None:
        self._warm = []
        self._warm_since = None
        _count_warm(-self._warm_bytes)
        self._warm_bytes = 0

    def _uncovered(self, low: int, high: int) -> list[tuple[int, int]]:
        """The page spans of ``[low, high)`` that no live region covers."""
        covered = sorted((start, end) for start, end, _ in self._regions.values() if start < high and low < end)
        free: list[tuple[int, int]] = []
        at = low
        for start, end in covered:
            if start > at:
                free.append((at, min(start, high)))
            at = max(at, end)
            if at >= high:
                break
        if at < high:
            free.append((at, high))
        return free

    def _give_back(self, start: int, end: int) -> None:
        assert self._map is not None  # free pages are of a map some region still holds
        self._map.madvise(mmap.MADV_DONTNEED, start, end - start)
        self.pages_given_back += (end - start) // PAGE

    def _renew_lock(self) -> None:
        self._lock = threading.Lock()


class _Sweeper:
    """One daemon thread that gives back, after a while, the free pages of closed arenas that views still hold."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: weakref.WeakSet[ObjectArena] = weakref.WeakSet()
        self._running = False

    def watch(self, arena: ObjectArena) -> None:
        with self._lock:
            self._watched.add(arena)
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._run, name="fsspec_s3reader-arena-sweeper", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(WARM_FOR_AT_MOST / 2)
            with self._lock:
                watched = list(self._watched)
            waiting = [arena for arena in watched if arena.give_back_if_stale(time.monotonic())]
            with self._lock:
                for arena in watched:
                    if arena not in waiting:
                        self._watched.discard(arena)
                if not self._watched:
                    self._running = False
                    return

    def start_over_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._running = False  # the thread did not come along
        for arena in list(self._watched):
            self._watched.discard(arena)
            self.watch(arena)


_ARENAS: weakref.WeakSet[ObjectArena] = weakref.WeakSet()
_SWEEPER = _Sweeper()


def _start_over_after_fork() -> None:
    for arena in list(_ARENAS):
        arena._renew_lock()
    _SWEEPER.start_over_after_fork()


os.register_at_fork(after_in_child=_start_over_after_fork)


def one_view(pieces: Sequence[Chunk], start: int) -> memoryview | None:
    """The consecutive ``pieces`` of an object's bytes from ``start`` as one view, when all lie in one arena.

    Each piece in an arena sits at its own offsets, so pieces that follow
    one another there are already one span of memory. None when any piece
    came another way (then the caller joins them).
    """
    arena = None
    length = 0
    for piece in pieces:
        if type(piece) is not memoryview:
            return None
        owner = getattr(piece.obj, "arena", None)
        if owner is None or (arena is not None and owner is not arena):
            return None
        arena = owner
        length += piece.nbytes
    if not isinstance(arena, ObjectArena):
        return None
    return arena.view(start, start + length)
