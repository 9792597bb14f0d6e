"""What other threads will release at exit, so that the interpreter's exit can wait a moment for them.

pyarrow's dataset scanner (and pandas or dask reading a folder through it)
holds, in its own C++ threads, the files it opened and its wrapper of the
filesystem (a ``PyFileSystem`` around an ``FSSpecHandler``), and releases
the last of them just after the scan has returned. A script that ends right
after a scan races those releases: if the interpreter has begun to finalize
when pyarrow's thread takes the GIL to close a file or drop the wrapper, the
thread is stopped inside C++ code that cannot unwind, and the process aborts
("terminate called without an active exception", exit status 134) after all
its work is done. A script that only scans 8 parquet files with
``pyarrow.dataset`` and exits aborted in 14 of 20 runs on one local server,
5 of 30 on another (with s3fs as the filesystem too: apache/arrow issues
34314 and 39162 report the same).

So what another thread may release is noted: a reader that another thread
than the main one opens or reads (pyarrow's do; a program's own file, opened
and read where it runs, does not), and pyarrow's wrapper of a filesystem of
ours (found as it opens a file through it). At exit, while some of those are
still held, the interpreter waits: until all are released, or until none has
been for ``QUIET`` seconds (nobody is releasing them, then: the program keeps
them itself, and the main thread drops them as it finalizes, safely), and
never longer than ``AT_MOST``. After a scan, pyarrow's thread releases them
within a few milliseconds; ``QUIET`` leaves room for it to be scheduled late
on a busy machine.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
import weakref
from typing import Any

QUIET = 0.2
"""Seconds without a release after which the exit stops waiting for what is still held."""
AT_MOST = 2.0
"""Seconds the exit waits at most, however things come and go."""
_FRAMES_UP = 6
"""How far up the stack an open looks for pyarrow's wrapper that called it (``FSSpecHandler.open_input_file``)."""


class HeldElsewhere:
    """Readers open that other threads use, and wrappers other threads will drop; weakly held.

    No lock: each step is one operation on a set or a dict, which the GIL
    makes atomic, and a lock taken here could be taken again by the same
    thread when a collection inside it drops a wrapper (its callback runs
    then and there).
    """

    def __init__(self) -> None:
        self._readers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._wrappers: dict[int, weakref.ref[Any]] = {}
        self._last_release = 0.0

    def add(self, reader: object) -> None:
        """A reader another thread uses: waited for until ``closed``."""
        self._readers.add(reader)

    def closed(self, reader: object) -> None:
        self._readers.discard(reader)
        self._last_release = time.monotonic()

    def add_wrapper(self, wrapper: object) -> None:
        """An object another thread will drop (pyarrow's ``FSSpecHandler``): waited for until collected."""
        key = id(wrapper)
        if key not in self._wrappers:
            self._wrappers[key] = weakref.ref(wrapper, lambda _: self._dropped(key))

    def _dropped(self, key: int) -> None:
        self._wrappers.pop(key, None)
        self._last_release = time.monotonic()

    def count(self) -> int:
        return len(self._readers) + len(self._wrappers)

    def wait_until_released(self, quiet: float = QUIET, at_most: float = AT_MOST) -> int:
        """Wait while something is held and other things are still being released; how many stay held."""
        started = time.monotonic()
        while True:
            held = self.count()
            now = time.monotonic()
            if not held or now - started >= at_most or now - max(self._last_release, started) >= quiet:
                return held
            time.sleep(0.001)

    def forget_after_fork(self) -> None:
        """In a forked child: the threads that would release what the parent noted do not run here."""
        self._readers = weakref.WeakSet()
        self._wrappers = {}


HELD_ELSEWHERE = HeldElsewhere()
"""This process's readers and wrappers other threads hold; the interpreter's exit waits on them."""

atexit.register(HELD_ELSEWHERE.wait_until_released)
os.register_at_fork(after_in_child=HELD_ELSEWHERE.forget_after_fork)


def note_pyarrow_wrapper(filesystem: object) -> None:
    """An open of ``filesystem``: if pyarrow's wrapper of it (``FSSpecHandler``) called it, the exit waits for it.

    The wrapper is the ``self`` of a calling frame that runs pyarrow's code
    and whose ``fs`` is this filesystem; an open from anywhere else finds
    none. Only such a frame's locals are looked at: reading another frame's
    would leave a copy of them on it, holding its objects (the caller's own
    variables among them) until that frame ends.
    """
    frame = sys._getframe(1)
    for _ in range(_FRAMES_UP):
        frame_or_none = frame.f_back
        if frame_or_none is None:
            return
        frame = frame_or_none
        if "pyarrow" not in frame.f_code.co_filename:
            continue
        caller = frame.f_locals.get("self")
        if getattr(caller, "fs", None) is filesystem and type(caller).__module__.startswith("pyarrow"):
            HELD_ELSEWHERE.add_wrapper(caller)
            return
