"""The sequential strategy streams the object once and serves any access from memory."""

from __future__ import annotations

import pytest

from fsspec_s3reader import S3ReaderFileSystem
from fsspec_s3reader.readers.sequential import SequentialS3Reader
from fsspec_s3reader.testing import MemorySource

DATA = bytes(range(256)) * 8


def sequential(data: bytes = DATA) -> tuple[SequentialS3Reader, MemorySource]:
    source = MemorySource(data, chunk_size=100)
    return SequentialS3Reader("bucket", "key", source.get_object_info, source.get_stream), source


def test_size_is_known_at_open_and_nothing_is_fetched() -> None:
    reader, source = sequential()
    assert reader.size == len(DATA)
    assert source.info_calls == 1
    assert source.requests == []


def test_one_stream_serves_every_access_pattern() -> None:
    reader, source = sequential()
    assert reader.read(10) == DATA[:10]
    reader.seek(-5, 2)
    assert reader.read() == DATA[-5:]
    reader.seek(3)
    assert reader.read(7) == DATA[3:10]
    assert source.requests == [(0, len(DATA))]


def test_only_as_much_of_the_stream_is_consumed_as_reads_need() -> None:
    source = MemorySource(DATA, chunk_size=100)
    consumed: list[int] = []

    def counting_stream(start: int, end: int):  # type: ignore[no-untyped-def]
        for chunk in source.get_stream(start, end):
            consumed.append(len(chunk))
            yield chunk

    reader = SequentialS3Reader("bucket", "key", source.get_object_info, counting_stream)
    reader.read(150)
    assert sum(consumed) == 200


def test_empty_object_reads_empty() -> None:
    reader, source = sequential(b"")
    assert reader.read() == b""
    assert reader.read(5) == b""
    assert source.requests == []


def test_whole_object_over_s3_in_concurrent_parts(storage_options: dict, bucket: str, fs: S3ReaderFileSystem) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    fs.pipe_file(f"{bucket}/k", data)
    parts_fs = S3ReaderFileSystem(part_size=100_000, skip_instance_cache=True, **storage_options)
    with parts_fs.open(f"{bucket}/k", "rb") as reader:
        assert reader.read() == data
    stats = parts_fs.stats
    assert stats.get_requests == 1 + 10  # the first 64 KiB at open, then ceil((1 MiB - 64 KiB) / 100 kB)
    assert stats.head_requests == 0
    assert stats.bytes_fetched == len(data)


def test_a_failed_stream_is_replaced_from_where_it_broke() -> None:
    from fsspec_s3reader.testing import FlakySource

    source = FlakySource(DATA, chunk_size=100, good_chunks=3)
    reader = SequentialS3Reader("bucket", "key", source.get_object_info, source.get_stream)
    with pytest.raises(ConnectionResetError):
        reader.read(1000)
    assert reader.tell() == 0
    assert reader.read(1000) == DATA[:1000]
    assert reader.read() == DATA[1000:]
    assert source.requests == [(0, len(DATA)), (300, len(DATA))]  # the second stream resumes, not restarts
