"""A scan of a listed folder: the footers of the next parquet files are fetched as one of them opens."""

from __future__ import annotations

import concurrent.futures
import io
import os
import threading
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from fsspec_s3reader import S3ReaderFileSystem
from fsspec_s3reader import filesystem as filesystem_module
from fsspec_s3reader.footers_ahead import FOOTERS_AHEAD, FootersAhead, ListedParquetFile
from fsspec_s3reader.parquet_footer import column_chunks, footer_span
from fsspec_s3reader.protocol import Chunk, ObjectInfo

FOOTER = 64 * 1024


def _parquet(seed: int) -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame({"a": range(seed, seed + 30_000), "b": [float(seed)] * 30_000}).to_parquet(buffer)
    return buffer.getvalue()


def _folder(fs: S3ReaderFileSystem, bucket: str, files: int) -> dict[str, bytes]:
    contents = {f"{bucket}/scan/part-{index}.parquet": _parquet(index) for index in range(files)}
    fs.pipe(contents)
    return contents


def _folder_and_its_copy(fs: S3ReaderFileSystem, bucket: str, files: int, local: Any) -> dict[str, bytes]:
    """The folder, the same files in ``local``, and ``fs`` as if it had not listed nor read anything yet."""
    contents = _folder(fs, bucket, files)
    for path, data in contents.items():
        (local / os.path.basename(path)).write_bytes(data)
    fs.invalidate_cache()
    fs.reset_stats()
    return contents


def _fs(storage_options: dict[str, Any], **options: Any) -> S3ReaderFileSystem:
    return S3ReaderFileSystem(skip_instance_cache=True, **storage_options, **options)


def _read_footer(fs: S3ReaderFileSystem, path: str, data: bytes) -> None:
    with fs.open(path, "rb") as f:
        f.seek(-FOOTER, 2)
        assert f.read() == data[-FOOTER:]


def test_opening_a_listed_parquet_file_fetches_the_next_files_footers_so_their_opens_ask_nothing(
    storage_options: dict[str, Any], bucket: str
) -> None:
    fs = _fs(storage_options)
    contents = _folder(fs, bucket, 4)
    paths = sorted(contents)
    fs.ls(f"{bucket}/scan")
    fs.reset_stats()
    _read_footer(fs, paths[0], contents[paths[0]])
    for path in paths[1:]:
        fs._footers_ahead.wait_for(path)
    assert fs.stats.get_requests == 4  # its own footer, and the three after it, each once
    for path in paths[1:]:
        _read_footer(fs, path, contents[path])
    assert (fs.stats.get_requests, fs.stats.bytes_fetched) == (4, 4 * FOOTER)


def test_a_file_opened_without_a_listing_of_its_folder_fetches_no_other_footer(
    storage_options: dict[str, Any], bucket: str
) -> None:
    fs = _fs(storage_options)
    contents = _folder(fs, bucket, 3)
    fs.invalidate_cache()
    fs.reset_stats()
    first = sorted(contents)[0]
    _read_footer(fs, first, contents[first])
    assert fs.stats.get_requests == 1


def test_without_the_listings_cache_no_footer_is_fetched_ahead(storage_options: dict[str, Any], bucket: str) -> None:
    fs = _fs(storage_options, use_listings_cache=False)
    contents = _folder(fs, bucket, 3)
    fs.ls(f"{bucket}/scan")
    fs.reset_stats()
    first = sorted(contents)[0]
    _read_footer(fs, first, contents[first])
    assert fs.stats.get_requests == 1


def test_a_dataset_scan_reads_what_a_local_scan_reads_with_one_footer_get_per_file(
    storage_options: dict[str, Any], bucket: str, tmp_path: Any
) -> None:
    fs = _fs(storage_options)
    contents = _folder_and_its_copy(fs, bucket, 6, tmp_path)
    got = pads.dataset(f"{bucket}/scan", filesystem=fs, format="parquet").to_table(columns=["b"])
    expected = pads.dataset(str(tmp_path), format="parquet").to_table(columns=["b"])
    assert got.equals(expected)
    # each file's footer once (from the end), then its column: never a footer asked twice
    assert fs.stats.get_requests <= 2 * len(contents)


class _Sent:
    """A fetch_tail that records what it was asked for and completes when told."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.futures: dict[str, concurrent.futures.Future[None]] = {}

    def __call__(self, path: str, info: ObjectInfo) -> concurrent.futures.Future[None]:
        self.asked.append(path)
        self.futures[path] = concurrent.futures.Future()
        return self.futures[path]


INFO = ObjectInfo(size=100, etag='"e"')


def test_the_opened_files_footer_then_the_next_files_in_listing_order_are_fetched_each_once() -> None:
    sent = _Sent()
    ahead = FootersAhead(sent)
    names = [f"b/f/p{index:02d}.parquet" for index in range(20)]
    siblings = [(name, INFO) for name in names]  # sorted by name, as the filesystem keeps a listing
    following = ahead.fetch_from(names[3], siblings, known=lambda name: name == names[5])
    assert [name for name, _ in following] == names[4 : 4 + FOOTERS_AHEAD]  # the opened file is not among them
    # its own footer first, then the next ones in order (not the earlier ones); one already known is not asked for
    expected = [names[3], *(name for name in names[4 : 4 + FOOTERS_AHEAD] if name != names[5])]
    assert sent.asked == expected
    ahead.fetch_from(names[4], siblings, known=lambda name: False)  # those on their way are not asked again
    assert sent.asked == [*expected, names[5], names[4 + FOOTERS_AHEAD]]


def test_for_a_server_of_one_queue_the_next_footers_are_sent_once_the_opened_files_has_arrived() -> None:
    events: list[str] = []
    next_asked = threading.Event()

    def fetch_tail(path: str, info: ObjectInfo) -> concurrent.futures.Future[None]:
        events.append(f"asked {path}")
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        if path.endswith("a.parquet"):

            def arrive() -> None:  # once the next footer is asked for, or a moment later if it is not
                next_asked.wait(0.2)
                events.append(f"arrived {path}")
                future.set_result(None)

            threading.Thread(target=arrive).start()
        else:
            next_asked.set()
            future.set_result(None)
        return future

    siblings = [("b/f/a.parquet", INFO), ("b/f/b.parquet", INFO)]
    FootersAhead(fetch_tail).fetch_from("b/f/a.parquet", siblings, known=lambda name: False, one_server_queue=True)
    assert events == ["asked b/f/a.parquet", "arrived b/f/a.parquet", "asked b/f/b.parquet"]


def test_a_file_missing_from_the_listing_has_no_footer_of_its_own_fetched_but_the_files_after_it_do() -> None:
    sent = _Sent()
    siblings = [("b/f/a.parquet", INFO), ("b/f/b.parquet", INFO)]
    following = FootersAhead(sent).fetch_from("b/f/0.parquet", siblings, known=lambda name: False)
    assert sent.asked == [name for name, _ in following] == ["b/f/a.parquet", "b/f/b.parquet"]


def test_an_open_waits_for_its_footer_on_the_way_and_a_failed_one_is_forgotten() -> None:
    sent = _Sent()
    ahead = FootersAhead(sent)
    ahead.fetch_from("b/f/a.parquet", [("b/f/b.parquet", INFO), ("b/f/c.parquet", INFO)], known=lambda name: False)
    sent.futures["b/f/b.parquet"].set_result(None)
    ahead.wait_for("b/f/b.parquet")  # arrived: returns at once
    sent.futures["b/f/c.parquet"].set_exception(OSError("gone"))
    ahead.wait_for("b/f/c.parquet")  # failed: the open asks for itself
    ahead.fetch_from("b/f/a.parquet", [("b/f/c.parquet", INFO)], known=lambda name: False)
    assert sent.asked.count("b/f/c.parquet") == 2


def test_a_fetch_that_cannot_be_sent_is_skipped_quietly() -> None:
    def refuse(path: str, info: ObjectInfo) -> concurrent.futures.Future[None]:
        raise RuntimeError("no event loop")

    FootersAhead(refuse).fetch_from("b/a.parquet", [("b/b.parquet", INFO)], known=lambda name: False)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_does_not_wait_for_its_parents_footers() -> None:
    sent = _Sent()
    ahead = FootersAhead(sent)
    ahead.fetch_from("b/a.parquet", [("b/b.parquet", INFO)], known=lambda name: False)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        ahead.wait_for("b/b.parquet")  # the parent's future never completes here: it must not be waited for
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    sent.futures["b/b.parquet"].set_result(None)


def _footers_in_before_the_open_reads_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The order a far link gives: the next files' footers, sent side by side at an open, arrive a round trip
    before the column chunks the opened file then asks for. The local server answers both about as fast, so the
    open waits for the footers here: what is fetched ahead then does not depend on which thread runs first."""
    fetch_from = FootersAhead.fetch_from

    def fetch_and_wait(self: FootersAhead, path: str, *args: Any, **kwargs: Any) -> Any:
        following = fetch_from(self, path, *args, **kwargs)
        for name, _ in following:
            self.wait_for(name)
        return following

    monkeypatch.setattr(FootersAhead, "fetch_from", fetch_and_wait)


def _scan_recording_next_files(
    fs: S3ReaderFileSystem, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[pa.Table, list[str]]:
    fetched_for: list[str] = []
    get_stream = ListedParquetFile.get_stream

    def recording(self: ListedParquetFile, start: int, end: int, /, *, ahead: bool = False) -> Iterator[Chunk]:
        fetched_for.append(self.key)
        return get_stream(self, start, end, ahead=ahead)

    monkeypatch.setattr(ListedParquetFile, "get_stream", recording)
    table = pads.dataset(f"{bucket}/scan", filesystem=fs, format="parquet").to_table(columns=["b"])
    return table, fetched_for


def test_through_a_far_link_a_scan_has_the_next_files_columns_fetched_before_they_open_each_once(
    storage_options: dict[str, Any], bucket: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = _fs(storage_options)
    contents = _folder_and_its_copy(fs, bucket, 8, tmp_path)
    monkeypatch.setattr(filesystem_module, "is_far", lambda sample: True)
    _footers_in_before_the_open_reads_on(monkeypatch)
    got, fetched_for = _scan_recording_next_files(fs, bucket, monkeypatch)
    assert got.equals(pads.dataset(str(tmp_path), format="parquet").to_table(columns=["b"]))
    assert fetched_for  # some files' column "b" was on its way before they opened
    # and never fetched twice: a footer and the one column chunk per file
    column_b = {path: _chunk_bytes(data, "b") for path, data in contents.items()}
    assert fs.stats.get_requests <= 2 * len(contents)
    assert fs.stats.bytes_fetched <= sum(FOOTER + size for size in column_b.values())


def test_from_a_near_server_nothing_is_fetched_for_files_not_open(
    storage_options: dict[str, Any], bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = _fs(storage_options)
    _folder(fs, bucket, 6)
    fs.invalidate_cache()
    monkeypatch.setattr(filesystem_module, "is_far", lambda sample: False)  # as the link estimate finds loopback
    _, fetched_for = _scan_recording_next_files(fs, bucket, monkeypatch)
    assert fetched_for == []
    assert fs.stats.get_requests <= 2 * 6


def _chunk_bytes(data: bytes, column: str) -> int:
    span = footer_span(data[-8:], len(data))
    assert span is not None
    return sum(c.end - c.start for c in column_chunks(data[span[0] : span[1]]) if c.column == column)
