"""The range-based strategy fetches what reads ask for: small reads fill a buffer, large ones bypass it."""

from __future__ import annotations

import pytest

from fsspec_s3reader import S3ReaderFileSystem
from fsspec_s3reader.readers.ranged import DEFAULT_BUFFER_SIZE, RangedS3Reader
from fsspec_s3reader.testing import MemorySource
from fsspec_s3reader.transport import DEFAULT_FIRST_GET_SIZE

DATA = bytes(range(256)) * 4  # 1 KiB


def ranged(buffer_size: int | None, data: bytes = DATA) -> tuple[RangedS3Reader, MemorySource]:
    source = MemorySource(data, chunk_size=64)
    return RangedS3Reader("bucket", "key", source.get_object_info, source.get_stream, buffer_size=buffer_size), source


def test_default_buffer_size_is_8_mib() -> None:
    reader, _ = ranged(None)
    assert reader.buffer_size == DEFAULT_BUFFER_SIZE == 8 * 1024 * 1024


def test_opening_fetches_nothing() -> None:
    _, source = ranged(100)
    assert source.requests == []


def test_small_read_fills_the_buffer_and_neighbours_cost_nothing() -> None:
    reader, source = ranged(100)
    assert reader.read(4) == DATA[0:4]
    assert reader.read(10) == DATA[4:14]
    reader.seek(50)
    assert reader.read(50) == DATA[50:100]
    assert source.requests == [(0, 100)]


def test_large_read_bypasses_the_buffer() -> None:
    reader, source = ranged(100)
    reader.read(4)
    reader.seek(200)
    assert reader.read(300) == DATA[200:500]
    assert source.requests == [(0, 100), (200, 500)]
    reader.seek(10)
    assert reader.read(5) == DATA[10:15]  # the buffer survived the large read
    assert len(source.requests) == 2


def test_forward_read_overlapping_the_buffer_reuses_it() -> None:
    reader, source = ranged(100)
    reader.read(4)
    reader.seek(90)
    assert reader.read(20) == DATA[90:110]
    assert source.requests == [(0, 100), (100, 200)]


def test_large_read_overlapping_the_buffer_fetches_only_the_rest() -> None:
    reader, source = ranged(100)
    reader.read(4)
    reader.seek(50)
    assert reader.read(400) == DATA[50:450]
    assert source.requests == [(0, 100), (100, 450)]


def test_buffer_stops_at_the_end_of_the_object() -> None:
    reader, source = ranged(100)
    reader.seek(-10, 2)
    assert reader.read(4) == DATA[-10:-6]
    assert source.requests == [(len(DATA) - 10, len(DATA))]


def test_buffer_size_zero_fetches_exactly_each_read() -> None:
    reader, source = ranged(0)
    reader.read(3)
    reader.read(3)
    reader.seek(0)
    reader.read(1)
    assert source.requests == [(0, 3), (3, 6), (0, 1)]


def test_readinto_fills_the_callers_buffer() -> None:
    reader, _ = ranged(0)
    target = bytearray(10)
    assert reader.readinto(memoryview(target)[2:8]) == 6
    assert target == b"\0\0" + DATA[0:6] + b"\0\0"


def test_a_4_byte_slice_of_100_mib_fetches_one_buffer_not_the_object(fs: S3ReaderFileSystem, bucket: str) -> None:
    size = 100 * 1024 * 1024
    fs.pipe_file(f"{bucket}/big.bin", bytes(range(256)) * (size // 256))
    fs.reset_stats()
    with fs.open(f"{bucket}/big.bin", "rb", reader="range_based") as reader:
        reader.seek(60 * 1024 * 1024 + 3)
        assert reader.read(4) == bytes([3, 4, 5, 6])
    stats = fs.stats
    assert stats.bytes_fetched <= DEFAULT_FIRST_GET_SIZE + DEFAULT_BUFFER_SIZE
    assert stats.get_requests == 2  # the first GET at open (it tells the size), then one buffer


@pytest.mark.parametrize("buffer_size", [0, 1024])
def test_buffer_size_travels_through_storage_options(
    storage_options: dict, bucket: str, fs: S3ReaderFileSystem, buffer_size: int
) -> None:
    data = DATA * 100  # beyond the first GET's 64 KiB
    fs.pipe_file(f"{bucket}/k", data)
    reader_fs = S3ReaderFileSystem(
        reader="range_based", buffer_size=buffer_size, skip_instance_cache=True, **storage_options
    )
    with reader_fs.open(f"{bucket}/k", "rb") as reader:
        assert isinstance(reader, RangedS3Reader)
        assert reader.buffer_size == buffer_size
        reader.seek(100_000)
        assert reader.read(1) == data[100_000:100_001]
    assert reader_fs.stats.bytes_fetched == DEFAULT_FIRST_GET_SIZE + (1 if buffer_size == 0 else buffer_size)
