"""The DCP-optimized reader on its own: coalescing, per-item buffering, fetch-ahead, fallback."""

from __future__ import annotations

import gc
import math
import weakref

import pytest

from fsspec_s3reader.plan import ItemRange, RangeGroup, coalesce_ranges, merge_overlapping
from fsspec_s3reader.readers.dcp_optimized import DCPOptimizedS3Reader
from fsspec_s3reader.testing import MemorySource

DATA = bytes(range(256)) * 8  # 2 KiB


def planned(ranges: list[tuple[int, int]], max_gap_size: float = 0, chunk_size: int = 7, prefetch_bytes: int = 0):
    source = MemorySource(DATA, chunk_size)
    items = [ItemRange(start, end) for start, end in ranges]
    reader = DCPOptimizedS3Reader(
        "bucket",
        "key",
        items,
        source.get_object_info,
        source.get_stream,
        max_gap_size=max_gap_size,
        prefetch_bytes=prefetch_bytes,
    )
    return reader, source


def read_item(reader: DCPOptimizedS3Reader, start: int, end: int) -> bytes:
    reader.seek(start)
    return reader.read(end - start)


def test_ranges_within_the_gap_share_a_group() -> None:
    items = [ItemRange(0, 10), ItemRange(15, 20), ItemRange(100, 110)]
    assert coalesce_ranges(items, 5) == [
        RangeGroup(0, 20, (ItemRange(0, 10), ItemRange(15, 20))),
        RangeGroup(100, 110, (ItemRange(100, 110),)),
    ]
    assert len(coalesce_ranges(items, 4)) == 3
    assert len(coalesce_ranges(items, math.inf)) == 1


def test_overlapping_and_repeated_ranges_merge_and_touching_ones_stay_apart() -> None:
    ranges = [ItemRange(10, 20), ItemRange(0, 5), ItemRange(10, 20), ItemRange(15, 30), ItemRange(30, 40)]
    assert merge_overlapping(ranges) == [ItemRange(0, 5), ItemRange(10, 30), ItemRange(30, 40)]


def test_an_invalid_range_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid item range"):
        ItemRange(10, 5)
    with pytest.raises(ValueError, match="invalid item range"):
        ItemRange(-1, 5)


def test_each_group_is_one_stream_and_gap_bytes_are_skipped() -> None:
    reader, source = planned([(0, 10), (20, 30), (500, 520)], max_gap_size=10)
    assert read_item(reader, 0, 10) == DATA[0:10]
    assert read_item(reader, 20, 30) == DATA[20:30]
    assert read_item(reader, 500, 520) == DATA[500:520]
    assert source.requests == [(0, 30), (500, 520)]
    assert source.info_calls == 0  # no size lookup for planned reads


def test_the_next_group_starts_when_the_last_item_of_a_group_is_in_memory() -> None:
    reader, source = planned([(0, 10), (100, 110), (300, 310)])
    read_item(reader, 0, 10)
    assert source.requests == [(0, 10), (100, 110)]
    read_item(reader, 100, 110)
    assert source.requests == [(0, 10), (100, 110), (300, 310)]
    assert read_item(reader, 300, 310) == DATA[300:310]
    assert len(source.requests) == 3


def test_groups_after_the_current_one_start_with_it_while_they_fit_the_prefetch_budget() -> None:
    reader, source = planned([(0, 10), (100, 110), (300, 310), (500, 600), (700, 710)], prefetch_bytes=25)
    read_item(reader, 0, 5)
    assert source.requests == [(0, 10), (100, 110), (300, 310)]  # 20 bytes ahead fit, 120 would not
    read_item(reader, 100, 110)
    assert source.requests[-1] == (300, 310)  # (500, 600) alone is over the budget
    assert read_item(reader, 300, 310) == DATA[300:310]
    assert source.requests[-1] == (500, 600)  # but the next group always travels once an item is whole
    assert read_item(reader, 500, 600) == DATA[500:600]
    assert read_item(reader, 700, 710) == DATA[700:710]
    assert len(source.requests) == 5  # each group fetched once


def test_reads_anywhere_inside_the_current_item_are_served_from_memory() -> None:
    reader, source = planned([(100, 400)], chunk_size=16)
    reader.seek(100)
    assert reader.read(10) == DATA[100:110]
    reader.seek(350)
    assert reader.read(50) == DATA[350:400]
    reader.seek(120)
    buffer = bytearray(30)
    assert reader.readinto(buffer) == 30 and bytes(buffer) == DATA[120:150]
    assert source.requests == [(100, 400)]


def test_a_read_spanning_touching_items_continues_into_the_next() -> None:
    reader, source = planned([(0, 10), (10, 20)])
    reader.seek(5)
    assert reader.read(10) == DATA[5:15]
    assert source.requests == [(0, 20)]


def test_an_item_skipped_over_is_dropped_and_served_by_fallback_if_asked_later() -> None:
    reader, source = planned([(0, 10), (10, 20), (20, 30)])
    assert read_item(reader, 20, 30) == DATA[20:30]
    assert read_item(reader, 10, 20) == DATA[10:20]  # behind: a stray read
    assert source.requests[0] == (0, 30)
    assert len(source.requests) == 2


def test_a_repeated_item_is_served_twice_from_one_fetch() -> None:
    reader, source = planned([(40, 80), (40, 80)])
    assert read_item(reader, 40, 80) == DATA[40:80]
    assert read_item(reader, 40, 80) == DATA[40:80]
    assert source.requests == [(40, 80)]


class _TrackedChunk(bytearray):
    """A chunk that can be watched with a weak reference."""


def test_the_previous_items_bytes_are_released_when_the_next_item_starts() -> None:
    chunks: list[weakref.ref[_TrackedChunk]] = []

    def stream(start: int, end: int):  # type: ignore[no-untyped-def]
        chunk = _TrackedChunk(DATA[start:end])
        chunks.append(weakref.ref(chunk))
        yield chunk

    reader = DCPOptimizedS3Reader(
        "bucket",
        "key",
        [ItemRange(0, 100), ItemRange(1000, 1100)],
        MemorySource(DATA).get_object_info,
        stream,
        max_gap_size=0,
    )
    assert read_item(reader, 0, 100) == DATA[0:100]
    assert read_item(reader, 1000, 1100) == DATA[1000:1100]
    gc.collect()
    assert chunks[0]() is None  # the first item's bytes are gone
    assert chunks[1]() is not None  # the current item's are held


def test_closing_stops_every_stream() -> None:
    closed: list[tuple[int, int]] = []
    source = MemorySource(DATA)

    def tracked_stream(start: int, end: int):  # type: ignore[no-untyped-def]
        try:
            yield from source.get_stream(start, end)
        finally:
            closed.append((start, end))

    reader = DCPOptimizedS3Reader(
        "bucket", "key", [ItemRange(0, 50), ItemRange(500, 550)], source.get_object_info, tracked_stream, max_gap_size=0
    )
    read_item(reader, 0, 10)  # the second group is now started too
    assert len(reader._prefetched) == 1
    next(reader._prefetched[0][1])  # make the generator live, so closing it is observable
    reader.close()
    assert sorted(closed) == [(0, 50), (500, 550)]


def test_an_empty_plan_reads_like_range_based() -> None:
    reader, source = planned([])
    reader.seek(10)
    assert reader.read(5) == DATA[10:15]
    assert source.info_calls >= 1


def test_an_item_whose_stream_failed_is_read_again_from_a_new_stream() -> None:
    from fsspec_s3reader.testing import FlakySource

    source = FlakySource(DATA, chunk_size=10, good_chunks=5)
    reader = DCPOptimizedS3Reader(
        "bucket",
        "key",
        [ItemRange(0, 20), ItemRange(20, 200)],
        source.get_object_info,
        source.get_stream,
        max_gap_size=0,
    )
    assert read_item(reader, 0, 20) == DATA[0:20]
    with pytest.raises(ConnectionResetError):
        read_item(reader, 20, 200)
    assert read_item(reader, 20, 200) == DATA[20:200]
    assert read_item(reader, 0, 20) == DATA[0:20]  # behind now: served as a stray read, still right


def test_readinto_copies_long_pieces_exactly_wherever_the_read_starts_and_ends() -> None:
    data = bytes((i * 31) % 256 for i in range(3 << 20))
    items = [ItemRange(1000, (1 << 20) + 1000), ItemRange((2 << 20) + 7, (3 << 20) - 5)]
    source = MemorySource(data, chunk_size=200 * 1024)  # whole chunks long enough to be copied unlocked
    reader = DCPOptimizedS3Reader("bucket", "key", items, source.get_object_info, source.get_stream, max_gap_size=0)
    for item in items:
        for start, end in ((item.start, item.end), (item.start + 3, item.end - 70_000), (item.end - 10, item.end)):
            buffer = bytearray(end - start + 16)  # longer than what is left of the item
            reader.seek(start)
            assert reader.readinto(memoryview(buffer)[: end - start]) == end - start
            assert bytes(buffer[: end - start]) == data[start:end]
            assert buffer[end - start :] == bytearray(16)  # nothing written past what was read
