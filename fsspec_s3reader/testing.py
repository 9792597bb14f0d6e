"""Objects in memory behind the reader protocol, for testing a strategy without S3.

A reader is built from ``get_object_info`` and ``get_stream`` alone, so a
strategy of your own can be checked against :class:`MemorySource` (and its
recorded requests) and compared with ``io.BytesIO`` over the same bytes::

    source = MemorySource(data, chunk_size=7)
    reader = MyReader("bucket", "key", source.get_object_info, source.get_stream)
    assert reader.read() == data
    assert source.requests == [(0, len(data))]
"""

from __future__ import annotations

from collections.abc import Iterator

from .protocol import ObjectInfo


class MemorySource:
    """``get_object_info`` and ``get_stream`` over bytes, delivering ``chunk_size`` pieces.

    Every range asked for is recorded in ``requests`` (those asked for
    ``ahead`` of a read in ``requests_ahead`` too), and every size lookup
    counted in ``info_calls``, so a test can say what a strategy fetched.
    """

    def __init__(self, data: bytes, chunk_size: int = 7) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1 byte, got {chunk_size}")
        self.data = data
        self.chunk_size = chunk_size
        self.requests: list[tuple[int, int]] = []
        self.requests_ahead: list[tuple[int, int]] = []
        """The ranges of ``requests`` that were asked for ``ahead`` of any read."""
        self.info_calls = 0

    def get_object_info(self) -> ObjectInfo:
        self.info_calls += 1
        return ObjectInfo(size=len(self.data), etag='"memory"')

    def get_stream(self, start: int, end: int, /, *, ahead: bool = False) -> Iterator[bytes]:
        if not 0 <= start <= end <= len(self.data):
            raise ValueError(f"range [{start}, {end}) outside an object of {len(self.data)} bytes")
        self.requests.append((start, end))
        if ahead:
            self.requests_ahead.append((start, end))
        return self._chunks(start, end)

    def _chunks(self, start: int, end: int) -> Iterator[bytes]:
        for offset in range(start, end, self.chunk_size):
            yield self.data[offset : min(offset + self.chunk_size, end)]

    @property
    def bytes_requested(self) -> int:
        return sum(end - start for start, end in self.requests)


class FlakySource(MemorySource):
    """A ``MemorySource`` whose first stream breaks after ``good_chunks`` chunks, as a dropped connection would."""

    def __init__(self, data: bytes, chunk_size: int = 7, good_chunks: int = 2) -> None:
        super().__init__(data, chunk_size)
        self.good_chunks = good_chunks
        self.failures_left = 1

    def _chunks(self, start: int, end: int) -> Iterator[bytes]:
        for count, chunk in enumerate(super()._chunks(start, end)):
            if count == self.good_chunks and self.failures_left:
                self.failures_left -= 1
                raise ConnectionResetError("connection reset by peer")
            yield chunk
