"""Every reader strategy answers any call sequence exactly as ``io.BytesIO`` over the same bytes."""

from __future__ import annotations

import math

from file_model import assert_behaves_like_bytesio, object_bytes, operations
from hypothesis import given
from hypothesis import strategies as st

from fsspec_s3reader import S3ReaderFileSystem
from fsspec_s3reader.plan import ItemRange
from fsspec_s3reader.readers.adaptive import AdaptiveS3Reader
from fsspec_s3reader.readers.dcp_optimized import DCPOptimizedS3Reader
from fsspec_s3reader.readers.ranged import RangedS3Reader
from fsspec_s3reader.readers.sequential import SequentialS3Reader
from fsspec_s3reader.testing import MemorySource

chunk_sizes = st.integers(min_value=1, max_value=64)
buffer_sizes = st.integers(min_value=0, max_value=80)
gap_sizes = st.sampled_from([0, 1, 16, 100, math.inf])


@st.composite
def data_and_item_ranges(draw: st.DrawFn) -> tuple[bytes, list[ItemRange]]:
    """An object and some non-overlapping ranges inside it, as a load plan would name."""
    data = draw(object_bytes)
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(data)), max_size=12)))
    pairs = list(zip(cuts[0::2], cuts[1::2], strict=False))
    return data, [ItemRange(start, end) for start, end in pairs]


# -- against an in-memory source -------------------------------------------------------------


@given(data=object_bytes, ops=operations, chunk_size=chunk_sizes)
def test_sequential_reader_matches_bytesio(data: bytes, ops: list, chunk_size: int) -> None:
    source = MemorySource(data, chunk_size)
    reader = SequentialS3Reader("bucket", "key", source.get_object_info, source.get_stream)
    assert_behaves_like_bytesio(reader, data, ops)


@given(data=object_bytes, ops=operations, chunk_size=chunk_sizes, buffer_size=buffer_sizes)
def test_ranged_reader_matches_bytesio(data: bytes, ops: list, chunk_size: int, buffer_size: int) -> None:
    source = MemorySource(data, chunk_size)
    reader = RangedS3Reader("bucket", "key", source.get_object_info, source.get_stream, buffer_size=buffer_size)
    assert_behaves_like_bytesio(reader, data, ops)


readaheads = st.integers(min_value=1, max_value=40)


@given(
    data=object_bytes,
    ops=operations,
    chunk_size=chunk_sizes,
    buffer_size=buffer_sizes,
    first_readahead=readaheads,
    max_readahead=readaheads,
)
def test_adaptive_reader_matches_bytesio(
    data: bytes, ops: list, chunk_size: int, buffer_size: int, first_readahead: int, max_readahead: int
) -> None:
    source = MemorySource(data, chunk_size)
    reader = AdaptiveS3Reader(
        "bucket",
        "key",
        source.get_object_info,
        source.get_stream,
        buffer_size=buffer_size,
        first_readahead=first_readahead,
        max_readahead=max_readahead,
    )
    assert_behaves_like_bytesio(reader, data, ops)


@given(plan=data_and_item_ranges(), ops=operations, chunk_size=chunk_sizes, max_gap_size=gap_sizes)
def test_dcp_optimized_reader_matches_bytesio_for_any_access(
    plan: tuple[bytes, list[ItemRange]], ops: list, chunk_size: int, max_gap_size: float
) -> None:
    data, ranges = plan
    source = MemorySource(data, chunk_size)
    reader = DCPOptimizedS3Reader(
        "bucket", "key", ranges, source.get_object_info, source.get_stream, max_gap_size=max_gap_size
    )
    assert_behaves_like_bytesio(reader, data, ops)


# -- against the moto server, over HTTP ---------------------------------------------------------


def _put(fs: S3ReaderFileSystem, bucket: str, data: bytes) -> str:
    path = f"{bucket}/object.bin"
    fs.pipe_file(path, data)
    return path


@given(data=object_bytes, ops=operations)
def test_sequential_reader_over_s3_matches_bytesio(fs: S3ReaderFileSystem, bucket: str, data: bytes, ops: list) -> None:
    with fs.open(_put(fs, bucket, data), "rb", reader="sequential") as reader:
        assert isinstance(reader, SequentialS3Reader)
        assert_behaves_like_bytesio(reader, data, ops)


@given(data=object_bytes, ops=operations, buffer_size=buffer_sizes)
def test_ranged_reader_over_s3_matches_bytesio(
    fs: S3ReaderFileSystem, bucket: str, data: bytes, ops: list, buffer_size: int
) -> None:
    with fs.open(_put(fs, bucket, data), "rb", reader="range_based", buffer_size=buffer_size) as reader:
        assert isinstance(reader, RangedS3Reader)
        assert_behaves_like_bytesio(reader, data, ops)


@given(data=object_bytes, ops=operations, buffer_size=buffer_sizes, first_readahead=readaheads)
def test_adaptive_reader_over_s3_matches_bytesio(
    fs: S3ReaderFileSystem, bucket: str, data: bytes, ops: list, buffer_size: int, first_readahead: int
) -> None:
    path = _put(fs, bucket, data)
    with fs.open(path, "rb", reader="adaptive", buffer_size=buffer_size, first_readahead=first_readahead) as reader:
        assert isinstance(reader, AdaptiveS3Reader)
        assert_behaves_like_bytesio(reader, data, ops)


@given(plan=data_and_item_ranges(), ops=operations, max_gap_size=gap_sizes)
def test_dcp_optimized_reader_over_s3_matches_bytesio(
    fs: S3ReaderFileSystem, bucket: str, plan: tuple[bytes, list[ItemRange]], ops: list, max_gap_size: float
) -> None:
    data, ranges = plan
    bucket_name, key, _ = fs.split_path(_put(fs, bucket, data))
    # Tiny parts, so that one range group arrives as many concurrent GETs.
    transport = fs.object_transport(bucket_name, key, part_size=16)
    reader = DCPOptimizedS3Reader(
        bucket_name, key, ranges, transport.get_object_info, transport.get_stream, max_gap_size=max_gap_size
    )
    with reader:
        assert_behaves_like_bytesio(reader, data, ops)
