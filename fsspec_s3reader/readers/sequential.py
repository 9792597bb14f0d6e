"""The sequential strategy: stream the whole object once, keep it, serve any access from memory.

Pick it for full reads and for files read over and over (a CSV, a checkpoint's
``.metadata``). It costs memory equal to the object's size and fetches the
whole object even if you read one byte of it.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator

from ..errors import IncompleteObjectError
from ..protocol import Chunk, GetObjectInfo, GetStream
from .base import S3Reader, close_stream


class SequentialS3Reader(S3Reader):
    """Streams the object front to back into one buffer, only as far as reads need.

    The object's size is looked up when the reader is built, so a missing
    object fails at ``open`` as it does for a local file. Bytes arrive on the
    first read and are kept until ``close``: seeking back costs nothing.
    """

    strategy = "sequential"

    def __init__(self, bucket: str, key: str, get_object_info: GetObjectInfo, get_stream: GetStream) -> None:
        super().__init__(bucket, key)
        self._size = get_object_info().size
        self._get_stream = get_stream
        self._buffer: bytearray | None = None
        self._filled = 0
        self._stream: Iterator[Chunk] | None = None

    def _object_size(self) -> int:
        return self._size

    def _pieces(self, start: int, length: int) -> Iterable[Chunk]:
        end = start + length
        self._fill_to(end)
        assert self._buffer is not None
        return (memoryview(self._buffer)[start:end],)

    def _fill_to(self, end: int) -> None:
        if self._filled >= end:
            return
        if self._buffer is None:
            self._buffer = bytearray(self._size)
            self._stream = self._get_stream(0, self._size)
        assert self._stream is not None
        while self._filled < end:
            chunk = next(self._stream, None)
            if chunk is None:
                raise IncompleteObjectError(
                    errno.EIO, f"s3://{self.bucket}/{self.key} ended at byte {self._filled} of {self._size}"
                )
            self._buffer[self._filled : self._filled + len(chunk)] = chunk
            self._filled += len(chunk)

    def _release(self) -> None:
        close_stream(self._stream)
        self._stream = None
        self._buffer = None
