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

Every view is cut from a *region*, a ``ctypes`` array over whole pages of
the map, and any view of a view (a slice, pyarrow's buffer, numpy's array)
keeps its region alive; a weak reference tells when the last one is gone.
A page no live region covers is free, and stays in place a while: when no
region of an arena is left, its map goes to the receive pool, and the next
file's bodies land on pages already in memory (a page faulting in costs as
much CPU as receiving it). Free pages, and the pages a map brought from the
pool, are given back to the system after ``WARM_FOR_AT_MOST`` seconds unless
a region covers them again; free pages go back at once while those of every
arena together exceed ``KEEP_WARM_AT_MOST`` bytes (a reader streaming
through a large file drops what it has read). After the wait they go back
lazily where the system can (``MADV_FREE``, as allocators do: the kernel
takes them when it needs memory, until then they count in the resident
size, and a write finds them in place without a fault); beyond the cap, at
once (``MADV_DONTNEED``), so that a long read's resident size stays bounded.

A region may die in any thread, in the middle of anything (a collection
runs where it allocates): its death is only queued, and whoever holds the
arena's lock, or takes it next, frees its pages. One limit follows from
CPython collecting cycles: a finalizer (``__del__``) of a cycle that holds
a view runs after the view's region was found dead, and may see its pages
given back (and, once the kernel took them, zeros) after they have been
free ``WARM_FOR_AT_MOST`` seconds.

A region's length is rounded up to one of eight steps per power of two (at
most an eighth longer), so that ``ctypes`` makes few array types.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import mmap
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence

from .protocol import Chunk

logger = logging.getLogger(__name__)

PAGE = mmap.PAGESIZE

IN_PLACE = hasattr(mmap, "MADV_DONTNEED") and sys.platform.startswith("linux")
"""Where pages can be given back one by one; elsewhere every body gets a buffer of its own."""


def _lazy_free() -> int | None:
    """``MADV_FREE`` where the kernel takes it (Python may name it where a kernel older than 4.5 refuses it)."""
    advice = getattr(mmap, "MADV_FREE", None)
    if advice is None:
        return None
    probe = mmap.mmap(-1, PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        probe.madvise(advice)
    except OSError:
        return None
    finally:
        probe.close()
    return int(advice)


LAZY_FREE = _lazy_free() if IN_PLACE else None
"""Pages freed lazily, as allocators free theirs: the kernel takes them when it needs memory (until then they
count in the resident size), and a write before that finds them in place, without a fault. None where unknown."""

_AT_ONCE = getattr(mmap, "MADV_DONTNEED", 0)

SMALLEST = 1024 * 1024
"""Objects smaller than this get no arena: joining their reads costs little, and their maps would be many."""

KEEP_WARM_AT_MOST = 256 * 1024 * 1024
"""Bytes of free pages the arenas of the process keep together; beyond them, free pages go back at once."""

WARM_FOR_AT_MOST = 1.0
"""Seconds a free page (or one a map brought from the pool) stays in place uncovered."""


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
        self._lock = threading.Lock()
        self._dead: deque[int] = deque()  # regions found dead, their pages not yet freed
        self._regions: dict[int, tuple[int, int, weakref.ref[ctypes.Array[ctypes.c_char]]]] = {}
        self._next_token = 0
        self._warm: list[tuple[float, int, int, bool]] = []
        """Pages in place that no region may cover: (since, start, end, freed here, not brought from the pool)."""
        self.warm_freed = 0
        """Bytes of pages freed here and kept in place (what counts against ``KEEP_WARM_AT_MOST``)."""
        self.pages_given_back = 0
        """Pages returned to the system (for tests)."""
        _SWEEPER.add(self)

    def receive(self, start: int, end: int) -> memoryview:
        """A writable view of ``[start, end)``, for a GET's body to be received into."""
        return self._view(start, end)

    def view(self, start: int, end: int) -> memoryview:
        """A read-only view of ``[start, end)``, which the caller knows has been received and is held."""
        return self._view(start, end).toreadonly()

    def regions_alive(self) -> int:
        self._drain()
        return len(self._regions)

    def give_back_stale(self, now: float) -> None:
        """Give back the pages kept in place ``WARM_FOR_AT_MOST`` seconds that no region covers (the sweeper's)."""
        with self._lock:
            self._give_back_warm(lambda since, _: now - since >= WARM_FOR_AT_MOST, LAZY_FREE or _AT_ONCE)
        self._drain()

    def _view(self, start: int, end: int) -> memoryview:
        if not 0 <= start <= end <= self.size:
            raise ValueError(f"[{start}, {end}) is not within an object of {self.size} bytes")
        _SWEEPER.ensure_running()
        low = start - start % PAGE
        length = region_length(end - low)
        with self._lock:  # the map is taken, and a region of it counted, at once: it is never let go in between
            if self._map is None:
                self._map = self._take_map(region_length(self.size))
                self._warm.append((time.monotonic(), 0, len(self._map), False))  # pages an earlier object wrote
            low = max(0, min(low, len(self._map) - length))  # near the end: the region reaches back instead
            if self._warm:  # pages this region covers are no longer free (nor counted so)
                self._keep_warm(_outside(self._warm, low, low + length))
            region = (ctypes.c_char * length).from_buffer(self._map, low)
            region.arena = self  # type: ignore[attr-defined]  # what ``one_view`` recognises its views by
            token = self._next_token
            self._next_token += 1
            self._regions[token] = (low, low + length, weakref.ref(region, functools.partial(self._died, token)))
        self._drain()
        return memoryview(region).cast("B")[start - low : end - low]

    def _died(self, token: int, _: object) -> None:
        self._dead.append(token)
        self._drain()

    def _drain(self) -> None:
        """Free the pages of the regions found dead, unless another holds the lock (it drains when it lets go)."""
        while self._dead and self._lock.acquire(blocking=False):
            try:
                while self._dead:
                    self._free(self._dead.popleft())
            finally:
                self._lock.release()

    def _free(self, token: int) -> None:
        """A region's last view is gone: its pages no other live region covers are free (under the lock)."""
        low, high, _ = self._regions.pop(token)
        if not self._regions:  # the map, its pages in place, goes to the pool, which keeps it a while
            self._map = None
            self._keep_warm([])
            return
        free = self._uncovered(low, high)
        if not free:
            return
        now = time.monotonic()
        self._warm.extend((now, start, end, True) for start, end in free)
        self.warm_freed += sum(end - start for start, end in free)
        if sum(arena.warm_freed for arena in _SWEEPER.arenas()) > KEEP_WARM_AT_MOST:
            self._give_back_warm(lambda _, freed_here: freed_here, _AT_ONCE)

    def _give_back_warm(self, due: Callable[[float, bool], bool], advice: int) -> None:
        """Give back (``advice``) the kept pages ``due(since, freed_here)`` names, those covered again excepted."""
        kept = []
        for since, start, end, freed_here in self._warm:
            if not due(since, freed_here):
                kept.append((since, start, end, freed_here))
                continue
            assert self._map is not None  # kept pages are of a map some region holds
            for free_start, free_end in self._uncovered(start, end):
                self._map.madvise(advice, free_start, free_end - free_start)
                self.pages_given_back += (free_end - free_start) // PAGE
        self._keep_warm(kept)

    def _keep_warm(self, spans: list[tuple[float, int, int, bool]]) -> None:
        """Keep ``spans`` as the free pages in place, and count those freed here (under the lock)."""
        self._warm = spans
        self.warm_freed = sum(end - start for _, start, end, freed_here in spans if freed_here)

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

    def _renew_lock(self) -> None:
        self._lock = threading.Lock()


def _outside(spans: list[tuple[float, int, int, bool]], low: int, high: int) -> list[tuple[float, int, int, bool]]:
    """``spans`` less what lies in ``[low, high)``."""
    kept = []
    for since, start, end, freed_here in spans:
        if end <= low or high <= start:
            kept.append((since, start, end, freed_here))
            continue
        if start < low:
            kept.append((since, start, low, freed_here))
        if high < end:
            kept.append((since, high, end, freed_here))
    return kept


class _Sweeper:
    """The arenas of the process, and one daemon thread that gives back their stale pages while any exists.

    Nothing here is called from a region's death (its callback only queues
    it), so its lock is never waited for where a collection may have run.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # by a number of their own; a dict's copy is one step that no other thread interrupts, a WeakSet's is not
        self._arenas: dict[int, weakref.ref[ObjectArena]] = {}
        self._added = 0
        self._thread: threading.Thread | None = None

    def add(self, arena: ObjectArena) -> None:
        with self._lock:  # with the thread's check that none is left: it never ends just after an arena came
            key = self._added
            self._added += 1
            self._arenas[key] = weakref.ref(arena, lambda _: self._arenas.pop(key, None))

    def arenas(self) -> list[ObjectArena]:
        return [arena for ref in list(self._arenas.values()) if (arena := ref()) is not None]

    def ensure_running(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name="fsspec_s3reader-arena-sweeper", daemon=True)
            try:
                thread.start()
            except RuntimeError as exc:  # no thread to be had (at interpreter exit): pages go back as maps close
                logger.debug("no sweeper for the arenas' free pages: %s", exc)
                return
            self._thread = thread

    def _run(self) -> None:
        while True:
            time.sleep(WARM_FOR_AT_MOST / 2)
            self._sweep()  # in a call of its own: no name here keeps an arena alive
            with self._lock:
                if not self._arenas:
                    self._thread = None
                    return

    def _sweep(self) -> None:
        for arena in self.arenas():
            arena.give_back_stale(time.monotonic())

    def start_over_after_fork(self) -> None:
        """In a forked child: the thread did not come along; the next arena's use starts another."""
        self._lock = threading.Lock()
        self._thread = None
        for arena in self.arenas():
            arena._renew_lock()


_SWEEPER = _Sweeper()

os.register_at_fork(after_in_child=_SWEEPER.start_over_after_fork)


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
