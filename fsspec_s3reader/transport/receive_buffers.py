"""The buffers that GET bodies are received into, used again once nothing refers to them any more.

A body lands in one buffer of its length (``bodies.read_body_into``). A new
buffer is memory the kernel has not handed to the process yet: each of its
4 KiB pages faults when first written, which here costs about 0.4 ms per MB,
as much CPU as receiving the bytes (a parquet read of 25 MB faulted 6,400
times, pyarrow's native client about 20: its allocator keeps the pages it
freed and writes the next read into them). So buffers of at least
``SMALLEST`` bytes come from here: a buffer whose last view was dropped
(the reader consumed the part, pyarrow freed the column chunk) is handed out
again for a body it holds (down to half its length), its pages already in place.

The pool keeps at most ``KEEP_IDLE_AT_MOST`` bytes of unused buffers, and
none unused for over ``IDLE_FOR_AT_MOST`` seconds: after a load the memory
goes back within about a second, as an allocator's decay would return it.
A body gets the smallest unused buffer that holds it (up to twice its
length), so the parts of the next read, cut somewhat differently, still
land in memory the last read warmed; a body none holds gets a new buffer in
place of unused ones (as many bytes of them are dropped), so the pool holds
little more than the most that was in use at once.

A parquet file's bodies land in its arena instead (``in_place.py``): an
anonymous map of the object's size, kept here as well once no view of it is
left, so that the next file's bodies land on pages already in place
(``take_map``). A map counts at its length, as a buffer does, until it has
sat unused ``IDLE_FOR_AT_MOST``: then its pages are freed lazily and it is
kept a while longer (``LAZY_MAPS_KEPT_FOR``), counted apart.

Whether a buffer is still in use is its reference count: every view of a
``bytearray`` (``memoryview``, its slices, a numpy or pyarrow buffer made
from one) keeps the ``bytearray`` referenced, so a count back to the pool's
own means no view is left. That is CPython's; elsewhere every body gets a
new buffer, as it would without the pool.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ..in_place import LAZY_FREE

SMALLEST = 256 * 1024
"""Bodies shorter than this get a buffer of their own: malloc serves them from its heap, whose pages stay."""
GRAIN_SHARE = 8
"""A new buffer is rounded up to a whole number of grains, a grain being a power of two at most an eighth of
the body: it can then serve a body of a slightly different length later, and wastes less than an eighth."""
KEEP_IDLE_AT_MOST = 256 * 1024 * 1024
"""Bytes of unused buffers kept for the next bodies (as much as one file's fetch-ahead budget holds by default)."""
IDLE_FOR_AT_MOST = 1.0
"""Seconds a buffer stays unused before it is dropped (a map: before its pages are freed lazily)."""
LAZY_MAPS_KEPT_FOR = 30.0
"""Seconds an unused map whose pages were freed lazily (``in_place.LAZY_FREE``) is kept: the next file's bodies
still land on them. Such maps are kept up to ``LAZY_MAPS_SHARE`` times ``keep_idle_at_most`` bytes of their
own, the most recent first."""
LAZY_MAPS_SHARE = 4
"""A file's map may still be held (its reader not yet collected) as the next file takes one: with room for one
map only, the next read after that found its pages gone (all 20 columns through the link: three of seven reads
at 0.71-0.75 s against 0.56-0.59 s)."""

_B = TypeVar("_B", bytearray, mmap.mmap)

_COUNTS_REFERENCES = platform.python_implementation() == "CPython"


class _Kept:
    """A buffer of the pool, and since when it has been unused (None while a view of it lives)."""

    __slots__ = ("buffer", "idle_since", "lazily_freed")

    def __init__(self, buffer: bytearray | mmap.mmap) -> None:
        self.buffer = buffer
        self.idle_since: float | None = None
        self.lazily_freed = False  # a map whose pages the kernel may take: no longer counted against the cap

    def in_use(self) -> bool:
        return sys.getrefcount(self.buffer) > _FREE_REFERENCES


def _free_references() -> int:
    """The count a buffer shows when only its ``_Kept`` holds it, measured as ``in_use`` measures it."""
    probe = _Kept(bytearray(1))  # a map shows the same count: the measure is of the object, whatever its type
    return sys.getrefcount(probe.buffer)


_FREE_REFERENCES = _free_references()


def _grain(length: int) -> int:
    """The largest power of two that is at most an eighth of ``length`` (``GRAIN_SHARE``)."""
    return 1 << max(0, length.bit_length() - GRAIN_SHARE.bit_length())


class ReceiveBuffers:
    """Buffers for received bodies, handed out again once unused; thread-safe."""

    def __init__(
        self,
        *,
        keep_idle_at_most: int = KEEP_IDLE_AT_MOST,
        idle_for_at_most: float = IDLE_FOR_AT_MOST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keep_idle_at_most = keep_idle_at_most
        self._idle_for_at_most = idle_for_at_most
        self._clock = clock
        self._lock = threading.Lock()
        self._kept: list[_Kept] = []
        self._sweep_loop: asyncio.AbstractEventLoop | None = None
        self.reused = 0  # bodies received into a buffer handed out before (for tests and benchmarks)

    def take(self, length: int) -> memoryview:
        """A writable view of ``length`` bytes (their content undefined) for a body to be received into."""
        if length < SMALLEST or not _COUNTS_REFERENCES:
            return memoryview(bytearray(length))
        grain = _grain(length)
        buffer = self._take_kept(length, bytearray, -(-length // grain) * grain, bytearray)
        # a view made while the pool's reference is not the only one: no other body can get the buffer meanwhile
        return memoryview(buffer)[:length]

    def take_map(self, length: int) -> mmap.mmap:
        """An anonymous, private map of ``length`` bytes (a page multiple) for an arena; its content undefined."""
        if not _COUNTS_REFERENCES:
            return new_map(length)
        return self._take_kept(length, mmap.mmap, length, new_map)

    def _take_kept(self, length: int, kind: type[_B], capacity: int, make: Callable[[int], _B]) -> _B:
        """An unused ``kind`` that holds ``length`` bytes, or a new one of ``capacity`` made in place of unused ones."""
        with self._lock:
            self._notice_unused(self._clock())
            kept = self._fitting(length, kind)
            if kept is None:
                self._make_room(capacity)
                kept = _Kept(make(capacity))
                self._kept.append(kept)
            else:
                kept.idle_since = None
                kept.lazily_freed = False
                self.reused += 1
            taken = kept.buffer
        self._sweep_later()
        assert isinstance(taken, kind)
        return taken

    def kept_idle(self) -> int:
        """Bytes of buffers unused now, kept for the next bodies."""
        with self._lock:
            self._notice_unused(self._clock())
            return sum(len(kept.buffer) for kept in self._kept if kept.idle_since is not None)

    def kept(self) -> int:
        """Bytes of every buffer the pool holds, in use or not."""
        with self._lock:
            return sum(len(kept.buffer) for kept in self._kept)

    def _fitting(self, length: int, kind: type) -> _Kept | None:
        """The smallest unused buffer of ``kind`` that holds ``length`` bytes, if at most twice as long.

        Its pages are in memory already: serving a shorter body costs no more
        memory than leaving it unused, and the parts of one read vary in
        length from one read to the next (they are cut as the reads come).
        """
        fitting = [
            kept
            for kept in self._kept
            if kept.idle_since is not None and type(kept.buffer) is kind and length <= len(kept.buffer) <= 2 * length
        ]
        return min(fitting, key=lambda kept: len(kept.buffer), default=None)

    def _notice_unused(self, now: float) -> None:
        """Mark the buffers no view refers to any more; drop those unused too long, then the oldest beyond the cap.

        A map is not dropped then but its pages freed lazily, and it is kept
        a while longer (``LAZY_MAPS_KEPT_FOR``, ``LAZY_MAPS_SHARE``): a scan
        that reads a parquet file every few seconds has its bodies land on
        pages the kernel has not taken back, as an allocator's would.
        """
        for kept in self._kept:
            if kept.idle_since is None and not kept.in_use():
                kept.idle_since = now
        idle = sorted(
            (kept for kept in self._kept if kept.idle_since is not None),
            key=lambda kept: kept.idle_since or now,
            reverse=True,
        )
        dropped: set[_Kept] = set()
        idle_bytes = lazy_bytes = 0
        over_cap = False
        for kept in idle:  # the most recently used first
            assert kept.idle_since is not None
            if not kept.lazily_freed:
                idle_bytes += len(kept.buffer)
                over_cap = over_cap or idle_bytes > self._keep_idle_at_most  # and every older one after it
                if now - kept.idle_since <= self._idle_for_at_most and not over_cap:
                    continue
                idle_bytes -= len(kept.buffer)
                if not isinstance(kept.buffer, mmap.mmap) or LAZY_FREE is None:
                    dropped.add(kept)
                    continue
            lazy_bytes += len(kept.buffer)
            if now - kept.idle_since > LAZY_MAPS_KEPT_FOR or lazy_bytes > LAZY_MAPS_SHARE * self._keep_idle_at_most:
                dropped.add(kept)
            elif not kept.lazily_freed:
                assert isinstance(kept.buffer, mmap.mmap) and LAZY_FREE is not None
                kept.buffer.madvise(LAZY_FREE)
                kept.lazily_freed = True
        self._drop(dropped)

    def _make_room(self, capacity: int) -> None:
        """Before a new buffer of ``capacity`` bytes: drop as many bytes of unused ones, the longest unused first.

        So the pool holds little more than the most that was in use at once:
        a DCP load, whose parts vary in length, would otherwise keep up to
        ``KEEP_IDLE_AT_MOST`` of unfitting buffers beside the ones it uses
        (its peak beyond the state dict measured 677 MiB; so, 566-570 MiB;
        without the pool, 537 MiB).
        """
        idle = sorted(
            (kept for kept in self._kept if kept.idle_since is not None and not kept.lazily_freed),
            key=lambda kept: kept.idle_since or 0,
        )
        dropped: set[_Kept] = set()
        for kept in idle:
            if capacity <= 0:
                break
            dropped.add(kept)
            capacity -= len(kept.buffer)
        self._drop(dropped)

    def _drop(self, dropped: set[_Kept]) -> None:
        if dropped:
            self._kept = [kept for kept in self._kept if kept not in dropped]

    def _sweep_later(self) -> None:
        """Look again once buffers may have sat unused too long, on the running loop (the transport's)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        with self._lock:
            if self._sweep_loop is not None and not self._sweep_loop.is_closed():
                return
            self._sweep_loop = loop
        loop.call_later(self._idle_for_at_most, self._sweep)

    def _sweep(self) -> None:
        with self._lock:
            self._notice_unused(self._clock())
            loop = self._sweep_loop
            if not self._kept or loop is None or loop.is_closed():
                self._sweep_loop = None
                return
        loop.call_later(self._idle_for_at_most, self._sweep)

    def start_over_after_fork(self) -> None:
        """In a forked child: the parent's lock may have been held at the fork, and its loop is not this one."""
        self._lock = threading.Lock()
        self._sweep_loop = None


_MAP_NORESERVE = getattr(
    mmap, "MAP_NORESERVE", 0x4000 if sys.platform == "linux" and platform.machine() in ("x86_64", "aarch64") else 0
)
"""Linux's flag (Python 3.11's ``mmap`` does not name it; its value differs between architectures): the
map's length is address space, not memory."""


def new_map(length: int) -> mmap.mmap:
    """A private anonymous map: its pages take memory as they are first written."""
    return mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE)


RECEIVE_BUFFERS = ReceiveBuffers()
"""The process's buffers for received bodies."""

os.register_at_fork(after_in_child=RECEIVE_BUFFERS.start_over_after_fork)
