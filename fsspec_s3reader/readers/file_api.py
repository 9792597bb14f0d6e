"""What fsspec's tools expect of an open file beyond ``io``'s API, so that caches chain over ``s3reader://``.

``blockcache::`` (fsspec's ``CachingFileSystem``) opens the file on the
target filesystem, reads its ``size`` and ``blocksize``, installs an
``MMapCache`` over a sparse local file as ``file.cache`` (its misses fetched
with the filesystem's ``cat_ranges``, or with ``file._fetch_range`` when it
decompresses), wraps ``file.close`` with a hook that records the blocks
cached, which reads ``file.path``, and then sets ``file.closed = True``.
``simplecache::`` and ``filecache::`` download whole files and read an open
file by ``blocksize`` only to decompress it. fsspec's own files
(``AbstractBufferedFile``) also carry ``mode``, ``loc`` and ``details``,
which other tools read. This base gives a reader those attributes; no
fsspec import is needed, only its names.
"""

from __future__ import annotations

import io
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

DEFAULT_BLOCKSIZE = 5 * 2**20
"""fsspec's own default file block size; the filesystem sets its ``default_block_size`` (s3fs: 50 MiB) instead."""


class ByteCache(Protocol):
    """What a reader needs of an fsspec cache (``fsspec.caching.BaseCache``) installed as ``file.cache``."""

    def _fetch(self, start: int | None, stop: int | None) -> bytes: ...


def _reopened_at(reopen: Callable[[], Any], position: int) -> Any:
    """Unpickling a reader: open the object again and go back to where the reader was."""
    reader = reopen()
    reader.seek(position)
    return reader


class FsspecFileAPI(io.BufferedIOBase):
    """The attributes of an fsspec file: ``mode``, ``blocksize``, ``path``, ``loc``, ``details``, ``cache``.

    ``blocksize`` is not how the reader fetches (its strategy decides that):
    it is the block a cache layered on the file fetches at a time. ``cache``
    is ``None`` until a tool installs one; from then on every read is served
    through it (see ``S3Reader._serve``), which is what makes such a cache
    worth having. ``closed`` may be set to ``True``, as fsspec's caches do
    after their close hook, and closes the file.
    """

    mode: ClassVar[str] = "rb"
    _bucket: str
    _key: str
    _position: int

    def __init__(self) -> None:
        super().__init__()
        self._blocksize = DEFAULT_BLOCKSIZE
        self._cache: ByteCache | None = None
        self._reopen: Callable[[], Any] | None = None
        """Opens the same object again (set by the filesystem): fsspec's files pickle by reopening."""

    def __reduce__(self) -> tuple[Any, ...]:
        if self.closed:
            raise ValueError(f"cannot pickle a closed reader of s3://{self._bucket}/{self._key}")
        if self._reopen is None:
            raise TypeError(
                f"cannot pickle this reader of s3://{self._bucket}/{self._key}: it was not opened through a "
                "filesystem; pickle the filesystem and the path instead"
            )
        return _reopened_at, (self._reopen, self._position)

    @property
    @abstractmethod
    def size(self) -> int:
        """The object's size in bytes."""

    @property
    def blocksize(self) -> int:
        return self._blocksize

    @blocksize.setter
    def blocksize(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"blocksize must be an int number of bytes, got {value!r}")
        if value < 1:
            raise ValueError(f"blocksize must be >= 1 byte, got {value}")
        self._blocksize = value

    @property
    def path(self) -> str:
        """``bucket/key``, as s3fs spells an open file's path (no scheme)."""
        return f"{self._bucket}/{self._key}"

    @property
    def loc(self) -> int:
        """The position, under the name fsspec's files give it."""
        return self._position

    @property
    def details(self) -> dict[str, Any]:
        """What ``fs.info`` would say of the object, as far as the reader knows it."""
        return {"name": self.path, "size": self.size, "type": "file"}

    def info(self) -> dict[str, Any]:
        return self.details

    @property
    def cache(self) -> ByteCache | None:
        return self._cache

    @cache.setter
    def cache(self, cache: ByteCache | None) -> None:
        if cache is not None and not callable(getattr(cache, "_fetch", None)):
            raise TypeError(
                f"a file's cache must be an fsspec cache (with _fetch(start, stop)), got {type(cache).__name__}"
            )
        self._cache = cache

    @property
    def closed(self) -> bool:
        return bool(super().closed)

    @closed.setter
    def closed(self, value: bool) -> None:
        if value:
            self.close()
        elif self.closed:
            raise ValueError(f"s3://{self.path} is closed and cannot be reopened by setting closed; open it again")
