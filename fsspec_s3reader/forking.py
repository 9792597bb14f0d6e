"""A lock that a forked child finds free.

``fork`` copies a lock as it is at that moment: held, if another thread of the
parent was inside it then, and nothing in the child would ever release it. A
``DataLoader`` with fork workers forks a process whose other threads (the
event loop's, pyarrow's) may be anywhere. The module-level registries of this
package guard themselves with a ``ForkSafeLock``, which every forked child
replaces with a fresh one before anything in it runs.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any


class ForkSafeLock:
    """``threading.Lock`` for ``with`` blocks, renewed (free) in every forked child."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _LOCKS.add(self)

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc_info: Any) -> None:
        self._lock.release()

    def _renew(self) -> None:
        self._lock = threading.Lock()


_LOCKS: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()


def _renew_in_child() -> None:
    for lock in list(_LOCKS):
        lock._renew()


os.register_at_fork(after_in_child=_renew_in_child)
