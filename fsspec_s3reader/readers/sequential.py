"""The sequential strategy: stream the whole object once, keep it, serve any access from memory.

Pick it for full reads and for files read over and over (a CSV, a checkpoint's
``.metadata``). It costs memory equal to the object's size and fetches the
object from its start, even if you read one byte near its end.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator

from ..chunks import ChunkRun
from ..errors import IncompleteObjectError
from ..protocol import Chunk, GetObjectInfo, GetStream
from .base import S3Reader, close_stream


class SequentialS3Reader(S3Reader):
    """Streams the object front to back, only as far as reads need, and keeps what arrived.

    The object's size is looked up when the reader is built, so a missing
    object fails at ``open`` as it does for a local file. The received chunks
    are kept as they are (no copy into one big buffer) until ``close``:
    seeking back costs nothing, and a whole-object ``read()`` copies once.
    """

    strategy = "sequential"

    def __init__(self, bucket: str, key: str, get_object_info: GetObjectInfo, get_stream: GetStream) -> None:
        super().__init__(bucket, key)
        self._size = get_object_info().size
        self._get_stream = get_stream
        self._kept = ChunkRun()
        self._stream: Iterator[Chunk] | None = None

    def _object_size(self) -> int:
        return self._size

    def _pieces(self, start: int, length: int) -> Iterable[Chunk]:
        self._fill_to(start + length)
        return self._kept.slice(start, start + length)

    def _fill_to(self, end: int) -> None:
        if self._kept.end >= end:
            return
        if self._stream is None:
            # From where the bytes kept so far end: 0 at first, later after a failed stream.
            self._stream = self._get_stream(self._kept.end, self._size)
        while self._kept.end < end:
            try:
                chunk = next(self._stream, None)
            except BaseException:
                # This stream is dead; the next read starts a new one where this left off.
                close_stream(self._stream)
                self._stream = None
                raise
            if chunk is None:
                raise IncompleteObjectError(
                    errno.EIO, f"s3://{self.bucket}/{self.key} ended at byte {self._kept.end} of {self._size}"
                )
            self._kept.append(chunk)

    def _release(self) -> None:
        close_stream(self._stream)
        self._stream = None
        self._kept.clear()
