"""The columns that parquet readers open at the same time in one folder have learned, told to each other.

A dataset scan (``pyarrow.dataset``, dask, a loop over a list of files)
opens the parquet files of one folder and reads the same columns of each.
What one file's reader learns from pyarrow's reads (``c03`` and ``c14`` are
wanted) then foretells what the other files will be asked for, so each reader
open in that folder hears it and, once it knows its own file's layout,
fetches those columns ahead without waiting for its own first reads::

    f0  [footer] [c03] [c14]            learns c03, then c14: tells the folder
    f4           [footer] -> c03 and c14 fetched at once, beside each other

Only readers open at the same time share: when the last one of a folder
closes (or is collected), what they learned is forgotten, and the next read
of that folder learns from its own reads again.
"""

from __future__ import annotations

import weakref

from ..forking import ForkSafeLock

_LOCK = ForkSafeLock()


class _Folder:
    """The readers open in one folder, and the columns they have learned."""

    def __init__(self) -> None:
        self.columns: set[str] = set()
        self.members: weakref.WeakSet[FolderMember] = weakref.WeakSet()


_FOLDERS: dict[tuple[str, str], _Folder] = {}


class FolderMember:
    """One open reader's place in its folder: what it tells the others, and what it has heard from them."""

    def __init__(self, folder: tuple[str, str]) -> None:
        self._key = folder
        with _LOCK:
            shared = _FOLDERS.get(folder)
            if shared is None or not shared.members:  # nobody open there: nothing learned is kept
                shared = _FOLDERS[folder] = _Folder()
            shared.members.add(self)
            self._folder = shared
            self._heard = set(shared.columns)

    def tell(self, columns: set[str]) -> None:
        """Columns this reader was asked for: every other reader open in the folder hears of them."""
        with _LOCK:
            self._folder.columns |= columns
            for member in self._folder.members:
                if member is not self:
                    member._heard |= columns

    def heard(self) -> set[str]:
        """The columns the others have told since the last call (all they knew, the first time)."""
        with _LOCK:
            heard, self._heard = self._heard, set()
        return heard

    def leave(self) -> None:
        with _LOCK:
            self._folder.members.discard(self)
            if not self._folder.members and _FOLDERS.get(self._key) is self._folder:
                del _FOLDERS[self._key]
