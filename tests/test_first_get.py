"""``first_get_size``: an object's size learned from a GET of its first bytes, which are kept for the reads."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fault_proxy import Fault, FaultProxy
from file_model import assert_behaves_like_bytesio, object_bytes, operations
from fsspec.asyn import sync as fsspec_sync
from hypothesis import given
from hypothesis import strategies as st

from fsspec_s3reader import ObjectChangedError, S3ReaderFileSystem, filesystem

DATA = bytes(range(256)) * 1024  # 256 KiB


def _fs(storage_options: dict[str, Any], first_get_size: int, **options: Any) -> S3ReaderFileSystem:
    return S3ReaderFileSystem(skip_instance_cache=True, first_get_size=first_get_size, **storage_options, **options)


def test_a_small_object_is_opened_and_read_with_one_get(storage_options: dict, bucket: str) -> None:
    fs = _fs(storage_options, 64 * 1024)
    fs.pipe_file(f"{bucket}/small", b"hello, world")
    fs.reset_stats()
    for reader in ("adaptive", "sequential", "range_based"):
        with fs.open(f"{bucket}/small", "rb", reader=reader) as f:
            assert f.read() == b"hello, world"
    stats = fs.stats
    assert (stats.get_requests, stats.head_requests) == (3, 0)
    assert stats.bytes_fetched == 3 * len(b"hello, world")


def test_the_first_bytes_are_not_fetched_twice(storage_options: dict, bucket: str) -> None:
    fs = _fs(storage_options, 1000, reader="sequential", part_size=64 * 1024)
    fs.pipe_file(f"{bucket}/big", DATA)
    fs.reset_stats()
    with fs.open(f"{bucket}/big", "rb") as f:
        assert f.read() == DATA
    assert fs.stats.head_requests == 0
    assert fs.stats.bytes_fetched == len(DATA)


def test_an_empty_object_is_asked_with_a_head(storage_options: dict, bucket: str) -> None:
    fs = _fs(storage_options, 64 * 1024)
    fs.pipe_file(f"{bucket}/empty", b"")
    fs.reset_stats()
    with fs.open(f"{bucket}/empty", "rb") as f:
        assert f.read() == b""
    assert fs.stats.head_requests == 1


def test_a_missing_object_fails_at_open(storage_options: dict, bucket: str) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        _fs(storage_options, 64 * 1024).open(f"{bucket}/missing", "rb")


@pytest.mark.parametrize("value", [-1, 1.5, True, "64K"])
def test_a_bad_first_get_size_is_refused_naming_it(storage_options: dict, value: object) -> None:
    with pytest.raises(ValueError, match="first_get_size"):
        _fs(storage_options, value)  # type: ignore[arg-type]


@given(
    data=object_bytes,
    ops=operations,
    first_get_size=st.sampled_from([1, 7, 64, 1000]),
    reader=st.sampled_from([{"reader": "adaptive", "first_readahead": 16}, {"reader": "sequential"}, {}]),
)
def test_readers_over_a_first_get_match_bytesio(
    storage_options: dict, bucket: str, data: bytes, ops: list, first_get_size: int, reader: dict
) -> None:
    fs = _fs(storage_options, first_get_size, part_size=32, **reader)
    fs.pipe_file(f"{bucket}/object.bin", data)
    with fs.open(f"{bucket}/object.bin", "rb") as f:
        assert_behaves_like_bytesio(f, data, ops)


@given(data=object_bytes, ops=operations, first_get_size=st.sampled_from([1, 7, 64, 1000]))
def test_range_based_over_a_first_get_matches_bytesio(
    storage_options: dict, bucket: str, data: bytes, ops: list, first_get_size: int
) -> None:
    fs = _fs(storage_options, first_get_size, reader="range_based", buffer_size=20, part_size=32)
    fs.pipe_file(f"{bucket}/object.bin", data)
    with fs.open(f"{bucket}/object.bin", "rb") as f:
        assert_behaves_like_bytesio(f, data, ops)


def test_a_file_opened_after_its_listing_sends_nothing_until_its_first_read(storage_options: dict, bucket: str) -> None:
    fs = _fs(storage_options, 64 * 1024)
    fs.pipe_file(f"{bucket}/listed/data.parquet", DATA)  # read from the end when its size is unknown
    fs.ls(f"{bucket}/listed")
    fs.reset_stats()
    f = fs.open(f"{bucket}/listed/data.parquet", "rb", reader="range_based", buffer_size=0)
    assert (fs.stats.get_requests, fs.stats.head_requests) == (0, 0)
    assert f.size == len(DATA)
    f.seek(-1000, 2)
    assert f.read() == DATA[-1000:]
    f.seek(10)
    assert f.read(100) == DATA[10:110]
    f.close()
    assert (fs.stats.get_requests, fs.stats.head_requests) == (2, 0)
    assert fs.stats.bytes_fetched == 1100  # each read asked for its own bytes: no first GET of 64 KiB


def test_a_file_that_changed_length_since_its_listing_raises_naming_the_cache(
    storage_options: dict, bucket: str
) -> None:
    fs = _fs(storage_options, 64 * 1024)
    fs.pipe_file(f"{bucket}/listed/grown", DATA)
    fs.find(f"{bucket}/listed", detail=True)
    _fs(storage_options, 64 * 1024).pipe_file(f"{bucket}/listed/grown", DATA + b"more")  # behind the listing's back
    with fs.open(f"{bucket}/listed/grown", "rb") as f, pytest.raises(ObjectChangedError, match="invalidate_cache"):
        f.read()
    fs.invalidate_cache()
    with fs.open(f"{bucket}/listed/grown", "rb") as f:
        assert f.read() == DATA + b"more"


def test_a_file_rewritten_with_the_same_length_since_its_listing_is_read_whole_from_one_version(
    storage_options: dict, bucket: str
) -> None:
    fs = _fs(storage_options, 64 * 1024, reader="sequential", part_size=64 * 1024)
    fs.pipe_file(f"{bucket}/listed/same", DATA)
    fs.ls(f"{bucket}/listed")
    _fs(storage_options, 64 * 1024).pipe_file(f"{bucket}/listed/same", DATA[::-1])
    with fs.open(f"{bucket}/listed/same", "rb") as f:
        assert f.read() == DATA[::-1]


def test_the_info_pandas_and_pyarrow_ask_three_times_in_a_row_is_one_head(storage_options: dict, bucket: str) -> None:
    fs = _fs(storage_options, 64 * 1024)
    fs.pipe_file(f"{bucket}/described", DATA)
    fs.reset_stats()
    assert fs.info(f"{bucket}/described")["size"] == len(DATA)  # pandas
    assert fs.isfile(f"{bucket}/described")  # pyarrow's fsspec handler, before each open
    with fs.open(f"{bucket}/described", "rb", reader="range_based", buffer_size=0) as f:
        assert (fs.stats.get_requests, fs.stats.head_requests) == (0, 1)
        assert f.read(10) == DATA[:10]
    assert fs.isfile(f"{bucket}/described")
    with fs.open(f"{bucket}/described", "rb") as f:
        assert f.read() == DATA
    assert (fs.stats.get_requests, fs.stats.head_requests) == (2, 1)
    fs.info(f"{bucket}/described", refresh=True)  # refresh asks S3 anyway
    assert fs.stats.head_requests == 2


def test_an_info_answer_serves_again_only_for_a_moment_and_only_with_listings_cached(
    storage_options: dict, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = _fs(storage_options, 64 * 1024)
    fs.pipe_file(f"{bucket}/moment", DATA)
    fs.info(f"{bucket}/moment")
    _fs(storage_options, 64 * 1024).pipe_file(f"{bucket}/moment", DATA + DATA)  # written by another client
    assert fs.size(f"{bucket}/moment") == len(DATA)  # within the moment: the answer of a moment ago
    monkeypatch.setattr(filesystem, "_DESCRIBED_FOR_SECONDS", 0.0)
    assert fs.size(f"{bucket}/moment") == 2 * len(DATA)  # the moment passed: S3 is asked
    uncached = _fs(storage_options, 64 * 1024, use_listings_cache=False)
    uncached.info(f"{bucket}/moment")
    uncached.reset_stats()
    uncached.info(f"{bucket}/moment")
    assert uncached.stats.head_requests == 1


@pytest.mark.timeout(60)
def test_parts_sent_before_the_pin_that_another_version_answers_raise_object_changed(
    storage_options: dict, proxied_options: dict, fault_proxy: FaultProxy, bucket: str
) -> None:
    writer = _fs(storage_options, 64 * 1024)
    writer.pipe_file(f"{bucket}/listed/racing", DATA)
    fs = _fs(proxied_options, 64 * 1024, reader="sequential", part_size=64 * 1024, max_parts_in_flight=4)
    fs.ls(f"{bucket}/listed")  # the size is known: the first read's parts all go at once, none pinned yet
    first_answered, overwritten = threading.Event(), threading.Event()

    def hold_until_overwritten(path: str) -> None:
        first_answered.wait(timeout=30)
        overwritten.wait(timeout=30)

    fault_proxy.add(Fault.run(hold_until_overwritten), method="GET", path_contains="racing", from_nth=2)
    outcome: list[BaseException | bytes] = []

    def read() -> None:
        try:
            with fs.open(f"{bucket}/listed/racing", "rb") as f:
                outcome.append(f.read())
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.monotonic() + 30
    while len(fault_proxy.requests_of("GET")) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # the first part's answer (the old version) has pinned its ETag
    first_answered.set()
    writer.pipe_file(f"{bucket}/listed/racing", DATA[::-1])  # the same length, another version
    overwritten.set()
    reader.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], ObjectChangedError), outcome
    assert "racing" in str(outcome[0])


def test_a_file_written_after_its_info_opens_with_its_new_length(storage_options: dict, bucket: str) -> None:
    fs = _fs(storage_options, 64 * 1024)
    fs.pipe_file(f"{bucket}/rewritten", DATA)
    assert fs.exists(f"{bucket}/rewritten")  # an info: its size would stand in for the next open's request
    fs.pipe_file(f"{bucket}/rewritten", DATA + DATA)  # a write forgets it, as it forgets s3fs's listings
    with fs.open(f"{bucket}/rewritten", "rb") as f:
        assert f.read() == DATA + DATA
    fs.ls(bucket)
    with fs.open(f"{bucket}/rewritten", "wb") as f:  # a file written through the filesystem, too
        f.write(b"short")
    with fs.open(f"{bucket}/rewritten", "rb") as f:
        assert f.read() == b"short"


def test_isdir_after_an_info_of_a_folder_asks_nothing_more(
    storage_options: dict, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = _fs(storage_options, 64 * 1024)
    fs.pipe_file(f"{bucket}/folder/part-0.parquet", DATA)
    fs.invalidate_cache()
    fs.reset_stats()
    assert fs.info(f"{bucket}/folder")["type"] == "directory"  # pyarrow's dataset asks this first
    assert fs.info(f"{bucket}/folder/part-0.parquet")["type"] == "file"
    asked = fs.stats
    monkeypatch.setattr(filesystem, "sync", _no_trip_through_the_loop)  # answered on this thread
    assert fs.isdir(f"{bucket}/folder")  # then this, before listing the folder
    assert not fs.isdir(f"{bucket}/folder/part-0.parquet")
    monkeypatch.undo()
    assert fs.stats == asked
    fs.invalidate_cache()
    assert fs.isdir(f"{bucket}/folder")  # forgotten: S3 is asked again
    assert fs.stats.other_requests > asked.other_requests
    fs.info(f"{bucket}/folder")
    fs.rm(f"{bucket}/folder/part-0.parquet")  # a delete forgets the folders above the file too
    assert not fs.isdir(f"{bucket}/folder")


def test_isfile_answers_from_a_listing_or_an_info_on_the_callers_thread_as_the_event_loop_would(
    storage_options: dict, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = _fs(storage_options, 64 * 1024)
    for name in ("scan/part-0.parquet", "scan/sub/part-1.parquet", "alone"):
        fs.pipe_file(f"{bucket}/{name}", DATA)
    names = ("scan/part-0.parquet", "scan/sub", "scan/missing", "alone", "scan")
    fs.invalidate_cache()
    through_the_loop = {name: bool(fsspec_sync(fs.loop, fs._isfile, f"{bucket}/{name}")) for name in names}
    assert through_the_loop == {
        "scan/part-0.parquet": True,
        "scan/sub": False,
        "scan/missing": False,
        "alone": True,
        "scan": False,
    }
    fs.invalidate_cache()  # those answers forgotten: what follows is all that is kept
    fs.ls(f"{bucket}/scan")  # a dataset's listing: part-0.parquet and sub answered from it
    fs.info(f"{bucket}/alone")  # pandas' info of one file: answered from it
    fs.info(f"{bucket}/scan")  # pyarrow's info of a dataset's folder: answered from it
    asked = fs.stats
    monkeypatch.setattr(filesystem, "sync", _no_trip_through_the_loop)
    for name in ("scan/part-0.parquet", "scan/sub", "alone", "scan"):
        assert fs.isfile(f"{bucket}/{name}") == through_the_loop[name], name
    assert fs.stats == asked  # nothing sent
    # what it does not keep goes the usual way: a name the listing does not hold, or after a forget
    with pytest.raises(AssertionError, match="through the event loop"):
        fs.isfile(f"{bucket}/scan/missing")
    fs.invalidate_cache()
    with pytest.raises(AssertionError, match="through the event loop"):
        fs.isfile(f"{bucket}/scan/part-0.parquet")
    monkeypatch.undo()
    assert fs.isfile(f"{bucket}/scan/part-0.parquet") and not fs.isfile(f"{bucket}/scan/missing")


def _no_trip_through_the_loop(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("answered through the event loop")


def test_a_parquet_footer_read_by_one_reader_serves_the_next_reader_of_that_version(
    storage_options: dict, bucket: str
) -> None:
    fs = _fs(storage_options, 64 * 1024, reader="range_based", buffer_size=0)
    fs.pipe_file(f"{bucket}/tails/part-0.parquet", DATA)
    fs.ls(f"{bucket}/tails")
    with fs.open(f"{bucket}/tails/part-0.parquet", "rb") as f:  # a dataset's schema: the footer only
        f.seek(-64 * 1024, 2)
        assert f.read() == DATA[-64 * 1024 :]
    fs.reset_stats()
    with fs.open(f"{bucket}/tails/part-0.parquet", "rb") as f:  # the scan: the footer again, then the rows
        f.seek(-64 * 1024, 2)
        assert f.read() == DATA[-64 * 1024 :]
        assert fs.stats.get_requests == 0
        f.seek(10)  # the rows: their own GET
        assert f.read(10) == DATA[10:20]
    assert (fs.stats.get_requests, fs.stats.bytes_fetched) == (1, 10)
    fs.invalidate_cache()
    with fs.open(f"{bucket}/tails/part-0.parquet", "rb") as f:
        f.seek(-64 * 1024, 2)
        assert f.read() == DATA[-64 * 1024 :]
    assert fs.stats.get_requests == 2  # forgotten: asked again


def test_a_footer_kept_from_a_version_since_overwritten_fails_the_next_read_rather_than_mixing(
    storage_options: dict, bucket: str
) -> None:
    fs = _fs(storage_options, 64 * 1024, reader="range_based", buffer_size=0)
    fs.pipe_file(f"{bucket}/tails/changed.parquet", DATA)
    with fs.open(f"{bucket}/tails/changed.parquet", "rb") as f:  # its size from a GET of its last 64 KiB
        f.seek(-100, 2)
        assert f.read() == DATA[-100:]
    _fs(storage_options, 64 * 1024).pipe_file(f"{bucket}/tails/changed.parquet", DATA[::-1])  # another client
    with fs.open(f"{bucket}/tails/changed.parquet", "rb") as f:
        f.seek(-100, 2)
        assert f.read() == DATA[-100:]  # the footer of a moment ago...
        f.seek(0)
        with pytest.raises(ObjectChangedError, match=r"changed\.parquet"):
            f.read(10)  # ...pins its version: the new one's bytes are never mixed in
    fs.invalidate_cache()
    with fs.open(f"{bucket}/tails/changed.parquet", "rb") as f:
        assert f.read() == DATA[::-1]


@pytest.mark.parametrize(
    ("name", "options"),
    [("data.parquet", {}), ("data.parquet", {"use_listings_cache": False}), ("data.bin", {})],
)
def test_a_tail_is_passed_on_only_for_parquet_files_with_listings_cached(
    storage_options: dict, bucket: str, name: str, options: dict
) -> None:
    big = DATA * 2
    fs = _fs(storage_options, 64 * 1024, **options)
    fs.pipe_file(f"{bucket}/tails/{name}", big)
    for _ in range(2):
        with fs.open(f"{bucket}/tails/{name}", "rb") as f:
            f.seek(-1000, 2)
            assert f.read() == big[-1000:]
    fs.reset_stats()
    with fs.open(f"{bucket}/tails/{name}", "rb") as f:
        f.seek(-1000, 2)
        assert f.read() == big[-1000:]
    shared = name.endswith(".parquet") and options.get("use_listings_cache", True)
    assert (fs.stats.get_requests == 0) is shared
