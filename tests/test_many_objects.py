"""Many objects at once: cat, cat_file, cat_ranges, get and their async forms go through the transport."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fsspec.asyn import sync
from hypothesis import given
from hypothesis import strategies as st

from fsspec_s3reader import S3ReaderFileSystem

SMALL = [bytes([i]) * (1000 + i) for i in range(30)]
BIG = bytes(range(256)) * 1000  # 250 KiB


@pytest.fixture
def small_objects(fs: S3ReaderFileSystem, bucket: str) -> list[str]:
    paths = [f"{bucket}/small/{i:02d}" for i in range(len(SMALL))]
    for path, data in zip(paths, SMALL, strict=True):
        fs.pipe_file(path, data)
    return paths


def test_cat_of_a_list_is_one_get_per_object_and_no_head(fs: S3ReaderFileSystem, small_objects: list[str]) -> None:
    fs.reset_stats()
    assert fs.cat(small_objects) == dict(zip(small_objects, SMALL, strict=True))
    stats = fs.stats
    assert (stats.get_requests, stats.head_requests, stats.other_requests) == (len(SMALL), 0, 0)
    assert stats.bytes_fetched == stats.bytes_delivered == sum(map(len, SMALL))


def test_the_requests_in_flight_are_bounded(storage_options: dict, fs: S3ReaderFileSystem, bucket: str) -> None:
    bounded = S3ReaderFileSystem(max_requests_in_flight=3, skip_instance_cache=True, **storage_options)
    paths = [f"{bucket}/b/{i}" for i in range(20)]
    for path in paths:
        fs.pipe_file(path, b"x" * 5000)
    assert len(bounded.cat(paths)) == 20
    limiter = bounded.object_calls.limiter  # type: ignore[attr-defined]
    assert 1 <= limiter.peak <= 3
    assert limiter.in_flight == 0


@pytest.mark.parametrize("bad", [0, -1, 2.5, "8", True])
def test_a_bad_bound_is_refused_naming_it(storage_options: dict, bad: object) -> None:
    with pytest.raises((TypeError, ValueError), match="max_requests_in_flight"):
        S3ReaderFileSystem(max_requests_in_flight=bad, skip_instance_cache=True, **storage_options)


offsets = st.one_of(st.none(), st.integers(min_value=-300_000, max_value=300_000))


@given(start=offsets, end=offsets)
def test_cat_file_slices_as_python_does(
    fs: S3ReaderFileSystem, bucket: str, start: int | None, end: int | None
) -> None:
    path = f"{bucket}/big"
    if not fs.exists(path):
        fs.pipe_file(path, BIG)
    assert fs.cat_file(path, start=start, end=end) == BIG[start:end]


def test_cat_file_takes_start_and_end_by_position_as_fsspec_documents(fs: S3ReaderFileSystem, bucket: str) -> None:
    path = f"{bucket}/big"
    fs.pipe_file(path, BIG)
    assert fs.cat_file(path, 1000, 5000) == BIG[1000:5000]
    assert fs.cat_file(path, -10) == BIG[-10:]
    assert fs.cat_file(path, 1000, end=2000) == BIG[1000:2000]
    with pytest.raises(TypeError, match="by name"):
        fs.cat_file(path, 1, 2, 3)


def test_a_long_span_comes_as_parallel_parts_from_one_version(
    storage_options: dict, fs: S3ReaderFileSystem, bucket: str
) -> None:
    parts = S3ReaderFileSystem(part_size=64 * 1024, skip_instance_cache=True, **storage_options)
    fs.pipe_file(f"{bucket}/big", BIG)
    parts.reset_stats()
    assert parts.cat_file(f"{bucket}/big") == BIG
    assert parts.stats.get_requests == 4  # 250 KiB in 64 KiB parts, the first of which told the size
    assert parts.stats.head_requests == 0


def test_cat_ranges_reads_each_range(fs: S3ReaderFileSystem, bucket: str) -> None:
    fs.pipe_file(f"{bucket}/big", BIG)
    starts, ends = [0, 1000, 250_000, -10], [10, 5000, 260_000, None]
    got = fs.cat_ranges([f"{bucket}/big"] * 4, starts, ends)
    assert got == [BIG[s:e] for s, e in zip(starts, ends, strict=True)]


def test_the_async_form_zarr_calls_is_counted_as_delivered(fs: S3ReaderFileSystem, bucket: str) -> None:
    fs.pipe_file(f"{bucket}/chunk", BIG)
    fs.reset_stats()

    async def read_chunks() -> list[bytes]:
        return await asyncio.gather(
            *(fs._cat_file(f"{bucket}/chunk", start=i * 1000, end=i * 1000 + 100) for i in range(5))
        )

    assert sync(fs.loop, read_chunks) == [BIG[i * 1000 : i * 1000 + 100] for i in range(5)]
    assert fs.stats.bytes_delivered == 500
    assert fs.stats.get_requests == 5


def test_empty_objects_read_as_empty(fs: S3ReaderFileSystem, bucket: str, tmp_path: Path) -> None:
    fs.pipe_file(f"{bucket}/empty", b"")
    assert fs.cat_file(f"{bucket}/empty") == b""
    assert fs.cat_file(f"{bucket}/empty", start=-5) == b""
    fs.get(f"{bucket}/empty", str(tmp_path / "empty"))
    assert (tmp_path / "empty").read_bytes() == b""
    with fs.open(f"{bucket}/empty", "rb") as reader:
        assert reader.read() == b""


def test_missing_objects_are_file_not_found(fs: S3ReaderFileSystem, bucket: str) -> None:
    with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/absent"):
        fs.cat_file(f"{bucket}/absent")
    result = fs.cat([f"{bucket}/absent"], on_error="return")
    assert isinstance(result[f"{bucket}/absent"], FileNotFoundError)


def test_get_downloads_in_parallel_parts(
    storage_options: dict, fs: S3ReaderFileSystem, bucket: str, tmp_path: Path
) -> None:
    parts = S3ReaderFileSystem(part_size=64 * 1024, skip_instance_cache=True, **storage_options)
    fs.pipe_file(f"{bucket}/dir/big", BIG)
    fs.pipe_file(f"{bucket}/dir/small", SMALL[3])
    parts.reset_stats()
    parts.get(f"{bucket}/dir/", str(tmp_path / "out"), recursive=True)
    assert (tmp_path / "out" / "big").read_bytes() == BIG
    assert (tmp_path / "out" / "small").read_bytes() == SMALL[3]
    assert parts.stats.get_requests == 4 + 1
    assert parts.stats.bytes_delivered == len(BIG) + len(SMALL[3])


def test_open_and_read_a_small_object_is_one_get(fs: S3ReaderFileSystem, small_objects: list[str]) -> None:
    fs.reset_stats()
    for path, data in zip(small_objects, SMALL, strict=True):
        with fs.open(path, "rb") as reader:
            assert reader.read() == data
    assert (fs.stats.get_requests, fs.stats.head_requests) == (len(SMALL), 0)


def test_zarr_reads_through_the_transport(storage_options: dict, bucket: str) -> None:
    zarr = pytest.importorskip("zarr", minversion="3")
    np = pytest.importorskip("numpy")
    data = np.arange(20_000, dtype="float64").reshape(20, 1000)
    url = f"s3reader://{bucket}/array.zarr"
    written = zarr.create_array(
        store=url, shape=data.shape, chunks=(5, 250), dtype="float64", storage_options=storage_options
    )
    written[:] = data
    read = zarr.open_array(store=url, mode="r", storage_options=storage_options)
    assert np.array_equal(read[:], data)
    stats = read.store.fs.stats
    assert stats.head_requests == 0
    assert stats.get_requests >= 16  # every chunk, counted as ours
    assert stats.bytes_delivered == stats.bytes_fetched > 0
