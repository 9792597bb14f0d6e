"""The adaptive reader streams forward reads and switches to ranged GETs at the first jump."""

from __future__ import annotations

import pytest

from fsspec_s3reader import S3ReaderConstructor, S3ReaderFileSystem
from fsspec_s3reader.readers.adaptive import AdaptiveS3Reader
from fsspec_s3reader.testing import FlakySource, MemorySource

DATA = bytes(range(256)) * 64  # 16 KiB


def _reader(source: MemorySource, **options: int) -> AdaptiveS3Reader:
    return AdaptiveS3Reader("bucket", "key", source.get_object_info, source.get_stream, **options)


def test_forward_reads_stream_with_a_doubling_readahead() -> None:
    source = MemorySource(DATA, chunk_size=100)
    reader = _reader(source, first_readahead=1024, max_readahead=4096)
    pieces = [reader.read(100) for _ in range(len(DATA) // 100 + 1)]
    assert b"".join(pieces) == DATA
    assert reader.sequential
    lengths = [end - start for start, end in source.requests]
    assert lengths[:4] == [1024, 2048, 4096, 4096]
    # Consecutive streams, no byte asked for twice.
    assert all(a[1] == b[0] for a, b in zip(source.requests, source.requests[1:], strict=False))
    assert source.bytes_requested == len(DATA)


def test_the_next_stream_is_requested_before_the_reads_need_it() -> None:
    source = MemorySource(DATA, chunk_size=64)
    reader = _reader(source, first_readahead=1000)
    reader.read(600)  # past the middle of the first stream's 1000 bytes, but one read says little
    assert source.requests == [(0, 1000)]
    reader.read(10)  # a second read going on: now the next stream starts ahead of need
    assert source.requests == [(0, 1000), (1000, 3000)]


def test_a_backward_seek_switches_to_ranged_reads_for_good() -> None:
    source = MemorySource(DATA)
    reader = _reader(source, buffer_size=0, first_readahead=1024)
    reader.seek(4000)
    assert reader.read(10) == DATA[4000:4010]
    reader.seek(100)
    assert reader.read(50) == DATA[100:150]
    assert not reader.sequential
    assert source.requests[-1] == (100, 150)
    reader.read(50)  # forward again: still one exact GET per read
    assert source.requests[-1] == (150, 200)


def test_a_far_forward_seek_switches_to_ranged_reads() -> None:
    source = MemorySource(DATA)
    reader = _reader(source, buffer_size=0, first_readahead=1024)
    reader.read(10)
    reader.seek(10_000)  # beyond everything requested
    assert reader.read(10) == DATA[10_000:10_010]
    assert not reader.sequential
    assert source.requests[-1] == (10_000, 10_010)


def test_a_footer_then_column_chunks_fetch_little_more_than_they_read() -> None:
    """The parquet pattern: the tail first, then chunks before it."""
    source = MemorySource(DATA)
    reader = _reader(source, buffer_size=256, first_readahead=1024)
    reader.seek(-512, 2)
    assert reader.read() == DATA[-512:]
    for start, length in [(1000, 2000), (5000, 3000), (9000, 100)]:
        reader.seek(start)
        assert reader.read(length) == DATA[start : start + length]
    assert source.bytes_requested <= 512 + 2000 + 3000 + 256


def test_small_random_reads_share_a_buffer_block() -> None:
    source = MemorySource(DATA)
    reader = _reader(source, buffer_size=1024, first_readahead=64)
    reader.seek(8000)
    reader.read(8)
    reader.seek(2000)
    assert reader.read(8) == DATA[2000:2008]
    requests = len(source.requests)
    reader.seek(2500)
    assert reader.read(8) == DATA[2500:2508]
    assert len(source.requests) == requests  # served from the 1024-byte block fetched at 2000


def test_reads_at_random_offsets_stop_filling_a_buffer_no_read_uses() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    source = MemorySource(data)
    reader = _reader(source, buffer_size=4096, first_readahead=64)
    offsets = [int(i * 7919 * 13) % (len(data) - 100) for i in range(1, 13)]  # far apart, in no order
    for offset in offsets:
        reader.seek(offset)
        assert reader.read(100) == data[offset : offset + 100]
    lengths = [end - start for start, end in source.requests]
    # the first stream, then four blocks no read used; from then on each read asks for its own 100 bytes
    assert lengths[-7:] == [100] * 7
    assert 4096 in lengths[:6]


def test_a_read_a_buffer_would_have_served_turns_buffering_back_on() -> None:
    data = bytes(range(256)) * 4096
    source = MemorySource(data)
    reader = _reader(source, buffer_size=4096, first_readahead=64)
    for offset in (900_000, 100_000, 500_000, 300_000, 700_000, 200_000):
        reader.seek(offset)
        reader.read(100)
    assert source.requests[-1] == (200_000, 200_100)  # exact reads now
    for offset in range(600_000, 600_000 + 8 * 100, 100):  # small reads going forward: a buffer pays again
        reader.seek(offset)
        assert reader.read(100) == data[offset : offset + 100]
    assert source.requests[-1][1] - source.requests[-1][0] == 4096
    assert len(source.requests) <= 6 + 2 + 2  # 8 reads: two exact ones, then one 4096-byte block serves the rest


def test_bytes_passed_are_dropped_so_memory_stays_at_what_is_in_flight() -> None:
    source = MemorySource(DATA, chunk_size=100)
    reader = _reader(source, first_readahead=1024, max_readahead=1024)
    for _ in range(100):
        reader.read(100)
    kept = len(reader._kept)
    assert kept <= 200


def test_a_dropped_stream_resumes_where_it_broke() -> None:
    source = FlakySource(DATA, chunk_size=100, good_chunks=3)
    reader = _reader(source, first_readahead=2048)
    with pytest.raises(ConnectionResetError):
        reader.read(1000)
    assert reader.tell() == 0
    assert reader.read(1000) == DATA[:1000]
    assert reader.read() == DATA[1000:]
    assert source.requests[1][0] == 300  # the second stream starts after the 3 chunks that arrived


def test_readline_after_switching_stays_inside_the_buffer() -> None:
    lines = b"".join(f"line {i}\n".encode() for i in range(400))
    source = MemorySource(lines)
    reader = _reader(source, buffer_size=64, first_readahead=64)
    reader.seek(2000)
    reader.read(1)
    reader.seek(0)
    assert list(reader) == lines.splitlines(keepends=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"first_readahead": 0}, "first_readahead"),
        ({"max_readahead": -1}, "max_readahead"),
        ({"buffer_size": -1}, "buffer_size"),
    ],
)
def test_bad_sizes_are_refused_naming_the_option(options: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        S3ReaderConstructor.adaptive(**options)


def test_adaptive_is_the_filesystem_default(fs: S3ReaderFileSystem, bucket: str, storage_options: dict) -> None:
    fs.pipe_file(f"{bucket}/d", DATA)
    default_fs = S3ReaderFileSystem(skip_instance_cache=True, **storage_options)
    with default_fs.open(f"{bucket}/d", "rb") as reader:
        assert isinstance(reader, AdaptiveS3Reader)
        assert reader.read() == DATA


def test_buffer_size_none_means_the_adaptive_default_not_range_baseds() -> None:
    assert S3ReaderConstructor.adaptive(buffer_size=None).buffer_size == 64 * 1024
