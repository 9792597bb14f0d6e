"""The pool of buffers that bodies are received into: a buffer is handed out again only once no view of it lives."""

from __future__ import annotations

import asyncio
import gc

import numpy as np
import pyarrow as pa
import pytest

from fsspec_s3reader import S3ReaderFileSystem
from fsspec_s3reader.in_place import LAZY_FREE
from fsspec_s3reader.transport.receive_buffers import (
    LAZY_MAPS_KEPT_FOR,
    LAZY_MAPS_SHARE,
    RECEIVE_BUFFERS,
    SMALLEST,
    ReceiveBuffers,
)

MiB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_buffer_is_handed_out_again_once_its_last_view_is_gone() -> None:
    pool = ReceiveBuffers()
    first = pool.take(3 * MiB)
    first[:4] = b"abcd"
    address = np.frombuffer(first, dtype=np.uint8).ctypes.data
    del first
    second = pool.take(3 * MiB - 100)  # about the same length: the same memory, its pages in place
    assert len(second) == 3 * MiB - 100
    assert np.frombuffer(second, dtype=np.uint8).ctypes.data == address
    assert pool.reused == 1


@pytest.mark.parametrize(
    "keep",
    [
        lambda view: view[10:20],  # a slice of the view handed out
        lambda view: view.toreadonly(),
        lambda view: np.frombuffer(view, dtype=np.uint8),
        lambda view: pa.py_buffer(view),  # what pyarrow keeps of a read_buffer
        lambda view: memoryview(view)[5:],
    ],
    ids=["slice", "read-only view", "numpy array", "pyarrow buffer", "view of a view"],
)
def test_a_buffer_some_view_still_refers_to_is_never_handed_out(keep: object) -> None:
    pool = ReceiveBuffers()
    view = pool.take(2 * MiB)
    view[:] = b"x" * (2 * MiB)
    kept = keep(view)  # type: ignore[operator]
    del view
    gc.collect()
    other = pool.take(2 * MiB)
    other[:] = b"y" * (2 * MiB)
    assert bytes(memoryview(kept)[:3]) == b"xxx"  # untouched by the second body
    assert pool.reused == 0
    del kept, other
    assert pool.take(2 * MiB) is not None and pool.reused == 1


def test_small_bodies_get_buffers_of_their_own() -> None:
    pool = ReceiveBuffers()
    view = pool.take(SMALLEST - 1)
    assert len(view) == SMALLEST - 1
    del view
    assert pool.kept() == 0


def test_a_new_buffer_wastes_less_than_an_eighth_and_serves_bodies_down_to_half_its_length() -> None:
    pool = ReceiveBuffers()
    for length in [SMALLEST, 300_000, 2_535_980, 32 * MiB + 1]:
        view = pool.take(length)
        del view
        assert length <= pool.kept() < length * 9 / 8 + 1
        pool = ReceiveBuffers()
    view = pool.take(8 * MiB)
    del view
    half = pool.take(4 * MiB + 1)  # shorter: served by the unused one, its pages in place
    assert pool.reused == 1
    del half
    small = pool.take(1 * MiB)  # far shorter: a buffer of its own, in place of the long one left unused
    assert pool.reused == 1
    assert pool.kept() == 1 * MiB
    del small


def test_bodies_of_changing_lengths_never_grow_the_pool_much_past_what_is_in_use() -> None:
    pool = ReceiveBuffers()
    held = []
    for round_ in range(20):
        for length in [3 * MiB, 5 * MiB + 7, 700_000, 9 * MiB]:
            view = pool.take(length + round_ * 700_000)  # lengths drift: old buffers stop fitting
            if round_ % 3 == 0:
                held.append(view)  # some stay in use a while
            del view
            in_use = sum(len(view) for view in held)
            assert pool.kept() <= 2 * in_use + 2 * (9 * MiB + 20 * 700_000)  # a body may use a buffer twice its length
        if len(held) > 4:
            held = held[2:]


def test_unused_buffers_are_dropped_after_a_while_and_beyond_the_cap() -> None:
    clock = Clock()
    pool = ReceiveBuffers(keep_idle_at_most=5 * MiB, idle_for_at_most=1.0, clock=clock)
    views = [pool.take(2 * MiB) for _ in range(4)]
    assert pool.kept_idle() == 0
    del views
    assert pool.kept_idle() == 4 * MiB  # 8 MiB unused, 5 kept: the most recently used two
    assert pool.kept() == 4 * MiB
    clock.now = 0.5
    view = pool.take(2 * MiB)
    assert pool.reused == 1
    clock.now = 1.6  # the other has sat unused 1.6 s
    assert pool.kept_idle() == 0
    assert pool.kept() == 2 * MiB  # the one in use stays
    del view


@pytest.mark.skipif(LAZY_FREE is None, reason="pages are freed lazily only where the system can")
def test_an_unused_map_has_its_pages_freed_lazily_and_is_kept_a_while_longer() -> None:
    clock = Clock()
    pool = ReceiveBuffers(keep_idle_at_most=8 * MiB, idle_for_at_most=1.0, clock=clock)
    maps = [pool.take_map(8 * MiB) for _ in range(LAZY_MAPS_SHARE + 2)]
    del maps
    # one map within the cap; beyond it, the older ones freed lazily at once, and kept up to their own share
    assert pool.kept_idle() == (1 + LAZY_MAPS_SHARE) * 8 * MiB
    clock.now = 2.0  # past the second a buffer is kept: every map freed lazily, kept up to their share
    assert pool.kept_idle() == LAZY_MAPS_SHARE * 8 * MiB
    view = pool.take(2 * MiB)  # a body's buffer: no map is dropped to make room for it
    assert pool.kept() == (LAZY_MAPS_SHARE * 8 + 2) * MiB
    again = pool.take_map(8 * MiB)  # a file read seconds later lands on pages the kernel may not have taken
    assert pool.reused == 1
    del again, view
    pool.kept_idle()  # unused since 2.0
    clock.now = 3.5
    assert pool.kept_idle() >= 8 * MiB  # freed lazily, kept
    clock.now = 2.0 + LAZY_MAPS_KEPT_FOR + 0.5
    pool.kept_idle()
    assert pool.kept() == 0


def test_beyond_the_cap_the_oldest_unused_buffers_go_whatever_their_length() -> None:
    pool = ReceiveBuffers(keep_idle_at_most=5 * MiB, idle_for_at_most=1.0)
    oldest, middle, newest = pool.take(1 * MiB), pool.take(2 * MiB), pool.take(4 * MiB)
    del oldest
    pool.kept_idle()
    del middle
    pool.kept_idle()
    del newest
    assert pool.kept_idle() == 4 * MiB  # the newest fits; after it, the middle would not, nor anything older


def test_unused_buffers_go_back_without_further_bodies_on_the_loop_that_took_them() -> None:
    pool = ReceiveBuffers(idle_for_at_most=0.05)

    async def scenario() -> None:
        view = pool.take(2 * MiB)
        del view
        assert pool.kept() == 2 * MiB
        await asyncio.sleep(0.2)
        assert pool.kept() == 0

    asyncio.run(scenario())


def test_bytes_handed_out_stay_as_read_while_later_bodies_reuse_memory(fs: S3ReaderFileSystem, bucket: str) -> None:
    data = np.random.default_rng(5).bytes(12 * MiB)
    fs.pipe_file(f"{bucket}/pooled", data)
    reused_before = RECEIVE_BUFFERS.reused
    with fs.open(f"{bucket}/pooled", "rb", reader="range_based", buffer_size=0) as reader:
        kept = []
        for round_ in range(3):
            starts = range(0, 12 * MiB, 3 * MiB)
            for start in starts if round_ == 0 else reversed(starts):  # other bytes first: none may land in kept
                reader.seek(start)
                piece = reader.read_buffer(3 * MiB)
                if round_ == 0 and start == 0:
                    kept.append(pa.py_buffer(piece))  # held as pyarrow holds a column chunk
                assert bytes(piece) == data[start : start + 3 * MiB]
                del piece
    assert kept[0].to_pybytes() == data[: 3 * MiB]
    assert RECEIVE_BUFFERS.reused > reused_before  # the later rounds were received into memory used before
