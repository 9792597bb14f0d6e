"""An object's bytes received in place: pieces side by side are one view; memory goes back as views die."""

from __future__ import annotations

import gc
import io
import itertools
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsspec_s3reader import S3ReaderFileSystem, in_place
from fsspec_s3reader.in_place import PAGE, ObjectArena, one_view
from fsspec_s3reader.transport.receive_buffers import ReceiveBuffers, new_map

MiB = 1024 * 1024


def _received(arena: ObjectArena, data: bytes, start: int, end: int) -> memoryview:
    """What a GET of ``[start, end)`` leaves: the body written in place, handed on read-only."""
    place = arena.receive(start, end)
    place[:] = data[start:end]
    return place.toreadonly()


def _address(view: memoryview) -> int:
    return int(np.frombuffer(view, dtype=np.uint8).ctypes.data)


def test_pieces_received_side_by_side_are_handed_out_as_one_view_of_the_same_memory() -> None:
    data = np.random.default_rng(1).bytes(5 * MiB)
    arena = ObjectArena(len(data), new_map)
    first, second = _received(arena, data, 0, 3 * MiB), _received(arena, data, 3 * MiB, 5 * MiB)
    pieces = [first[1 * MiB :], second[: 1 * MiB]]  # a read of [1 MiB, 4 MiB), across the two GETs

    whole = one_view(pieces, 1 * MiB)

    assert whole is not None and whole.readonly
    assert bytes(whole) == data[1 * MiB : 4 * MiB]
    assert _address(whole) == _address(pieces[0])  # no copy: the first piece's memory, and the second's after it


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(lambda data: data[4 * MiB : 5 * MiB], id="bytes"),
        pytest.param(lambda data: memoryview(bytearray(data[4 * MiB : 5 * MiB])), id="a buffer of its own"),
        pytest.param(
            lambda data: _received(ObjectArena(len(data), new_map), data, 4 * MiB, 5 * MiB), id="another arena"
        ),
    ],
)
def test_pieces_that_came_another_way_are_not_one_view(other: object) -> None:
    data = np.random.default_rng(2).bytes(5 * MiB)
    arena = ObjectArena(len(data), new_map)
    pieces = [_received(arena, data, 3 * MiB, 4 * MiB), other(data)]  # type: ignore[operator]
    assert one_view(pieces, 3 * MiB) is None  # the reader joins them instead


def test_views_keep_their_bytes_while_the_pages_around_them_go_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(in_place, "KEEP_WARM_AT_MOST", 0)  # every free page goes back at once
    data = np.random.default_rng(3).bytes(8 * MiB)
    arena = ObjectArena(len(data), new_map)
    parts = [_received(arena, data, start, start + MiB) for start in range(0, 8 * MiB, MiB)]
    kept = pa.py_buffer(one_view(parts[2:4], 2 * MiB))  # held as pyarrow holds a column chunk
    del parts
    gc.collect()

    assert arena.pages_given_back >= 4 * MiB // PAGE  # the parts no view holds went back
    assert arena.regions_alive() == 1
    assert kept.to_pybytes() == data[2 * MiB : 4 * MiB]


def test_free_pages_stay_in_place_a_while_then_go_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(in_place, "WARM_FOR_AT_MOST", 0.05)
    data = np.random.default_rng(4).bytes(4 * MiB)
    arena = ObjectArena(len(data), new_map)
    held = _received(arena, data, 0, MiB)
    dropped = _received(arena, data, 2 * MiB, 4 * MiB)
    del dropped
    assert arena.pages_given_back == 0  # kept: the next bodies may land on them

    deadline = time.monotonic() + 10
    while arena.pages_given_back == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert arena.pages_given_back >= 2 * MiB // PAGE
    assert bytes(held) == data[:MiB]


def test_pages_a_map_brought_from_the_pool_go_back_unless_covered_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(in_place, "WARM_FOR_AT_MOST", 0.05)
    pool = ReceiveBuffers()
    data = np.random.default_rng(7).bytes(8 * MiB)
    first = ObjectArena(len(data), pool.take_map)
    _received(first, data, 0, 8 * MiB)  # dropped at once: the whole map goes to the pool, its pages in place
    second = ObjectArena(len(data), pool.take_map)
    footer = _received(second, data, 7 * MiB, 8 * MiB)  # a reader that reads only the footer, and stays open
    assert pool.reused == 1

    deadline = time.monotonic() + 10
    while second.pages_given_back < 7 * MiB // PAGE and time.monotonic() < deadline:
        time.sleep(0.01)
    assert second.pages_given_back >= 7 * MiB // PAGE  # the first object's pages did not stay with the second
    assert bytes(footer) == data[7 * MiB :]


def test_a_view_that_dies_while_its_arena_is_busy_is_freed_once_the_arena_lets_go() -> None:
    pool = ReceiveBuffers()
    arena = ObjectArena(4 * MiB, pool.take_map)
    view = arena.receive(0, 2 * MiB)
    finished = threading.Event()

    def drop_while_held() -> None:
        nonlocal view
        with arena._lock:  # as the sweeper holds it, or a collection run inside the arena's own work
            del view  # its death is queued: never waited for here
        finished.set()

    thread = threading.Thread(target=drop_while_held)
    thread.start()
    thread.join(10)
    assert finished.is_set()
    assert arena.regions_alive() == 0  # drained as the lock was let go: the map is back in the pool
    gc.collect()
    assert pool.kept_idle() >= 4 * MiB


def test_once_no_view_is_left_the_map_goes_to_the_pool_and_the_next_object_lands_on_its_pages() -> None:
    pool = ReceiveBuffers()
    data = np.random.default_rng(5).bytes(6 * MiB)
    first = ObjectArena(len(data), pool.take_map)
    piece = _received(first, data, 0, 6 * MiB)
    address = _address(piece)
    del piece
    gc.collect()
    assert pool.kept_idle() >= 6 * MiB

    second = ObjectArena(len(data) - 1000, pool.take_map)  # another file of about the same size
    again = _received(second, data, 0, 2 * MiB)
    assert pool.reused == 1
    assert _address(again) == address
    assert bytes(again) == data[: 2 * MiB]


def test_a_map_some_view_still_holds_is_never_handed_to_another_object() -> None:
    pool = ReceiveBuffers()
    data = np.random.default_rng(6).bytes(2 * MiB)
    first = ObjectArena(len(data), pool.take_map)
    kept = _received(first, data, 0, 2 * MiB)[100:200]  # a slice keeps its region, and so the map
    other = ObjectArena(len(data), pool.take_map)
    _received(other, bytes(len(data)), 0, 2 * MiB)
    assert pool.reused == 0
    assert bytes(kept) == data[100:200]


@settings(max_examples=40, deadline=None)
@given(
    cuts=st.lists(st.integers(1, 3 * MiB - 1), max_size=6, unique=True),
    reads=st.lists(st.tuples(st.integers(0, 3 * MiB - 1), st.integers(1, MiB)), min_size=1, max_size=8),
    keep=st.lists(st.booleans(), min_size=8, max_size=8),
)
def test_views_always_hold_the_object_bytes_at_their_offsets(
    cuts: list[int], reads: list[tuple[int, int]], keep: list[bool]
) -> None:
    size = 3 * MiB
    data = np.random.default_rng(len(cuts)).bytes(size)
    original = in_place.KEEP_WARM_AT_MOST
    in_place.KEEP_WARM_AT_MOST = 0
    try:
        arena = ObjectArena(size, new_map)
        bounds = [0, *sorted(cuts), size]
        parts = [_received(arena, data, s, e) for s, e in itertools.pairwise(bounds)]
        run = io.BytesIO(data)
        views = []
        for start, length in reads:
            end = min(size, start + length)
            pieces = [
                part[max(start, s) - s : min(end, e) - s]
                for part, (s, e) in zip(parts, itertools.pairwise(bounds), strict=True)
                if s < end and start < e
            ]
            whole = one_view(pieces, start)
            assert whole is not None
            run.seek(start)
            assert bytes(whole) == run.read(end - start)
            views.append((start, whole))
        del parts, pieces
        views = [view for view, kept in zip(views, keep, strict=False) if kept]
        gc.collect()
        for start, view in views:
            assert bytes(view) == data[start : start + len(view)]
    finally:
        in_place.KEEP_WARM_AT_MOST = original


def test_pyarrow_reads_a_parquet_file_through_views_of_its_arena(fs: S3ReaderFileSystem, bucket: str) -> None:
    table = pa.table({f"c{i}": np.random.default_rng(i).integers(0, 1 << 40, 300_000) for i in range(8)})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=100_000, compression="none")
    data = sink.getvalue()
    fs.pipe_file(f"{bucket}/t.parquet", data)

    with fs.open(f"{bucket}/t.parquet", "rb") as f:
        f.seek(len(data) // 4)
        piece = f.read_buffer(len(data) // 2)
        assert isinstance(piece, memoryview) and getattr(piece.obj, "arena", None) is not None
        assert bytes(piece) == data[len(data) // 4 : len(data) // 4 + len(data) // 2]
        del piece
    assert pq.read_table(f"{bucket}/t.parquet", filesystem=fs).equals(table)
