"""The fsspec file API beyond io's: what blockcache::, simplecache:: and filecache:: use, over every strategy.

``blockcache::`` installs its own cache on the opened file and reads through
it; the other two download the file and, to decompress, read it by
``blocksize``. Every read is compared with the bytes stored, and the
filesystem's counters show that a cached block is not fetched again.
"""

from __future__ import annotations

import gzip
import random
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.caching import MMapCache

from fsspec_s3reader import S3ReaderFileSystem
from fsspec_s3reader.readers.ranged import RangedS3Reader
from fsspec_s3reader.testing import MemorySource
from fsspec_s3reader.transport import DEFAULT_FIRST_GET_SIZE

DATA = random.Random(11).randbytes(300_000)
BLOCK = 32 * 1024
STRATEGIES = ["adaptive", "sequential", "range_based"]
CHAINS = ["blockcache", "simplecache", "filecache"]


def _random_reads(data_size: int, seed: int, count: int = 25) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.randrange(data_size), rng.randrange(1, 40_000)) for _ in range(count)]


def _caching_fs(chain: str, storage_options: dict, strategy: str, cache_dir: Path, **extra: Any) -> Any:
    return fsspec.filesystem(
        chain,
        target_protocol="s3reader",
        target_options={**storage_options, "reader": strategy, "skip_instance_cache": True},
        cache_storage=str(cache_dir),
        skip_instance_cache=True,
        **extra,
    )


@pytest.fixture
def stored(fs: S3ReaderFileSystem, bucket: str) -> str:
    path = f"{bucket}/data.bin"
    fs.pipe_file(path, DATA)
    return path


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("chain", CHAINS)
def test_each_cache_chain_returns_exactly_the_stored_bytes(
    storage_options: dict, stored: str, tmp_path: Path, chain: str, strategy: str
) -> None:
    with fsspec.open(
        f"{chain}::s3reader://{stored}",
        "rb",
        s3reader={**storage_options, "reader": strategy, "skip_instance_cache": True},
        **{chain: {"cache_storage": str(tmp_path)}},
    ) as f:
        for offset, length in _random_reads(len(DATA), seed=len(chain) + len(strategy)):
            f.seek(offset)
            assert f.read(length) == DATA[offset : offset + length]
        f.seek(0)
        assert f.read() == DATA


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_blockcache_reads_through_its_own_cache_on_the_reader(
    storage_options: dict, stored: str, tmp_path: Path, strategy: str
) -> None:
    cfs = _caching_fs("blockcache", storage_options, strategy, tmp_path)
    with cfs.open(stored, "rb", block_size=BLOCK) as f:
        assert isinstance(f.cache, MMapCache) and f.blocksize == BLOCK
        f.seek(100_000)
        assert f.read(10_000) == DATA[100_000:110_000]
        gets = cfs.fs.stats.get_requests
        f.seek(100_500)
        assert f.read(5_000) == DATA[100_500:105_500]
        assert cfs.fs.stats.get_requests == gets  # served from the cached blocks
        assert f.cache.hit_count >= 1


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_blockcache_serves_a_second_open_from_disk_without_a_new_get(
    storage_options: dict, stored: str, tmp_path: Path, strategy: str
) -> None:
    cfs = _caching_fs("blockcache", storage_options, strategy, tmp_path)
    with cfs.open(stored, "rb", block_size=BLOCK) as f:
        f.seek(200_000)
        assert f.read(50_000) == DATA[200_000:250_000]
    gets = cfs.fs.stats.get_requests
    assert gets >= 1
    again = _caching_fs("blockcache", storage_options, strategy, tmp_path)  # a new process, say: the same disk cache
    with again.open(stored, "rb", block_size=BLOCK) as f:
        f.seek(210_000)
        assert f.read(30_000) == DATA[210_000:240_000]
    stats = again.fs.stats
    assert stats.get_requests == 1  # the open's first GET (it learns the size and pins the version) ...
    assert stats.bytes_fetched == DEFAULT_FIRST_GET_SIZE  # ... and no block: those come from the disk cache


def test_blockcache_marks_a_file_read_to_the_end_as_complete_and_opens_it_locally(
    storage_options: dict, stored: str, tmp_path: Path
) -> None:
    cfs = _caching_fs("blockcache", storage_options, "adaptive", tmp_path)
    with cfs.open(stored, "rb", block_size=BLOCK) as f:
        assert f.read() == DATA
    assert f.closed
    again = _caching_fs("blockcache", storage_options, "adaptive", tmp_path)
    with again.open(stored, "rb") as f:
        assert f.read() == DATA
    assert again.fs.stats.get_requests == again.fs.stats.head_requests == 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_simplecache_decompresses_by_reading_the_reader_in_blocks(
    storage_options: dict, fs: S3ReaderFileSystem, bucket: str, tmp_path: Path, strategy: str
) -> None:
    fs.pipe_file(f"{bucket}/data.gz", gzip.compress(DATA))
    cfs = _caching_fs("simplecache", storage_options, strategy, tmp_path, compression="gzip")
    with cfs.open(f"{bucket}/data.gz", "rb") as f:
        assert f.read() == DATA


def test_an_opened_file_has_the_block_size_asked_for_or_the_filesystems_default(
    fs: S3ReaderFileSystem, stored: str
) -> None:
    with fs.open(stored, "rb", block_size=BLOCK) as f:
        assert f.blocksize == BLOCK
    with fs.open(stored, "rb") as f:
        assert f.blocksize == fs.default_block_size


def test_an_opened_file_carries_fsspecs_file_attributes(fs: S3ReaderFileSystem, stored: str) -> None:
    with fs.open(stored, "rb") as f:
        f.seek(123)
        assert (f.path, f.mode, f.loc, f.size) == (stored, "rb", 123, len(DATA))
        assert f.details == f.info() == {"name": stored, "size": len(DATA), "type": "file"}
        assert f.cache is None


@pytest.fixture
def reader() -> RangedS3Reader:
    source = MemorySource(DATA)
    return RangedS3Reader("bucket", "key", source.get_object_info, source.get_stream, buffer_size=0)


def test_reads_go_through_an_installed_cache_which_fetches_with_fetch_range(tmp_path: Path) -> None:
    source = MemorySource(DATA)
    reader = RangedS3Reader("bucket", "key", source.get_object_info, source.get_stream, buffer_size=0)
    reader.cache = MMapCache(BLOCK, reader._fetch_range, reader.size, str(tmp_path / "blocks"), set())
    for offset, length in _random_reads(len(DATA), seed=3, count=40):
        reader.seek(offset)
        assert reader.read(length) == DATA[offset : offset + length]
        buffer = bytearray(length)
        reader.seek(offset)
        assert buffer[: reader.readinto(buffer)] == DATA[offset : offset + length]
    starts = [start for start, _ in source.requests]
    assert all(start % BLOCK == 0 for start in starts)  # whole blocks only, each once
    assert len(starts) == len(set(starts))


def test_fetch_range_bypasses_the_cache_and_stops_at_the_objects_end(reader: RangedS3Reader) -> None:
    class Refusing:
        def _fetch(self, start: int | None, stop: int | None) -> bytes:
            raise AssertionError("_fetch_range must not read through the cache it feeds")

    reader.cache = Refusing()
    assert reader._fetch_range(10, 20) == DATA[10:20]
    assert reader._fetch_range(len(DATA) - 5, len(DATA) + 100) == DATA[-5:]
    assert reader._fetch_range(len(DATA) + 1, len(DATA) + 10) == b""


def test_a_cache_must_be_an_fsspec_cache(reader: RangedS3Reader) -> None:
    with pytest.raises(TypeError, match="must be an fsspec cache"):
        reader.cache = b"not a cache"  # type: ignore[assignment]


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), ("64k", TypeError), (True, TypeError)])
def test_a_bad_blocksize_is_refused_naming_it(reader: RangedS3Reader, value: object, error: type) -> None:
    with pytest.raises(error, match="blocksize"):
        reader.blocksize = value  # type: ignore[assignment]


def test_setting_closed_closes_and_a_closed_file_cannot_be_reopened_that_way(reader: RangedS3Reader) -> None:
    reader.closed = False  # open already: nothing to do
    assert not reader.closed
    reader.closed = True
    assert reader.closed
    with pytest.raises(ValueError, match="closed file"):
        reader.read(1)
    with pytest.raises(ValueError, match="cannot be reopened"):
        reader.closed = False
