"""Readers open across a fork: DataLoader workers that inherit a reader with GETs in flight read the right bytes.

The parent opens a reader and reads a little, which leaves its stream's window
full: parts in flight, held at the fault proxy until the workers are done, so
they are certainly in flight when the DataLoader forks. Each worker then reads
on from where the parent was, and the whole object again. A worker that waited
on the parent's GETs would wait for ever; the DataLoader's ``timeout`` turns
that into a failure rather than a hung test.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fault_proxy import Fault, FaultProxy
from torch.utils.data import DataLoader, Dataset

from fsspec_s3reader import ObjectChangedError, S3ReaderFileSystem
from fsspec_s3reader.forking import ForkSafeLock

OBJECT = random.Random(11).randbytes(1_000_000)
PART_SIZE = 16 * 1024
PARTS_IN_FLIGHT = 4
WORKERS = 2
FIRST_READS = {
    # What the parent reads before the fork; each leaves PARTS_IN_FLIGHT GETs in flight after the first GET.
    "sequential": [100],  # the stream of the whole object: its first 64 KiB came with the size
    "adaptive": [100, 40_000],  # past the middle of the first stream: the next one, 128 KiB, starts
}


class HeldReaderDataset(Dataset[tuple[int, bytes]]):
    """One open reader, inherited by every worker; an item continues it, or reads the whole object again."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader

    def __len__(self) -> int:
        return 2 * WORKERS

    def __getitem__(self, index: int) -> tuple[int, bytes]:
        if index < WORKERS:  # each worker's first item: on from where the parent left the reader
            position = self.reader.tell()
            return position, self.reader.read()
        self.reader.seek(0)
        return 0, self.reader.read()


class _HoldTheParentsParts:
    """A proxy action: GETs that arrive before the fork wait until the test lets them go; later ones pass."""

    def __init__(self) -> None:
        self.forking = threading.Event()
        self.released = threading.Event()

    def __call__(self, path: str) -> None:
        if not self.forking.is_set():
            self.released.wait(timeout=120)


def _collate(batch: Any) -> Any:
    return batch  # the bytes as they are, not turned into tensors


@pytest.mark.timeout(240)
@pytest.mark.parametrize("context", ["fork", "spawn", "forkserver"])
@pytest.mark.parametrize("strategy", sorted(FIRST_READS))
def test_dataloader_workers_read_on_from_a_reader_whose_parts_were_in_flight_at_the_fork(
    proxied_options: dict, fault_proxy: FaultProxy, bucket: str, fs: S3ReaderFileSystem, strategy: str, context: str
) -> None:
    path = f"{bucket}/held.bin"
    fs.pipe_file(path, OBJECT)
    hold = _HoldTheParentsParts()
    fault_proxy.add(Fault.run(hold), method="GET", path_contains="held.bin", from_nth=2)  # the first GET passes
    parent_fs = _parent_fs(proxied_options)
    try:
        reader = parent_fs.open(path, "rb", reader=strategy)
        for length in FIRST_READS[strategy]:
            start = reader.tell()
            assert reader.read(length) == OBJECT[start : start + length]
        parked = reader.tell()
        _wait_for_gets(fault_proxy, 1 + PARTS_IN_FLIGHT)
        before_fork = len(fault_proxy.requests_of("GET"))
        hold.forking.set()  # from here on, GETs pass: the workers' own
        loader = DataLoader(
            HeldReaderDataset(reader),
            batch_size=None,
            num_workers=WORKERS,
            multiprocessing_context=context,
            collate_fn=_collate,
            timeout=90,
        )
        items = list(loader)
    finally:
        hold.released.set()
    assert [position for position, _ in items[:WORKERS]] == [parked] * WORKERS
    for position, data in items:
        assert data == OBJECT[position:], f"a worker read wrong bytes from offset {position}"
    if context == "fork":  # the parts asked for again carry the parent's pin; a reopened reader pins anew
        assert all(get.headers.get("if-match") for get in fault_proxy.requests_of("GET")[before_fork:])
    assert reader.read() == OBJECT[parked:]  # and the parent reads on through its own parts, now let go
    reader.close()


def _parent_fs(proxied_options: dict) -> S3ReaderFileSystem:
    """The parent's filesystem: small parts, so that a window of them is in flight at the fork."""
    return S3ReaderFileSystem(
        skip_instance_cache=True, part_size=PART_SIZE, max_parts_in_flight=PARTS_IN_FLIGHT, **proxied_options
    )


def _answer_of_a_forked_child(read: Callable[[], bytes]) -> tuple[str, Any]:
    """What a forked child answers when it calls ``read``: ``("read", digest)`` or ``("raised", exception)``."""
    answers: Any = multiprocessing.get_context("fork").SimpleQueue()
    child = multiprocessing.get_context("fork").Process(target=_read_in_child, args=(read, answers))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0, "the child did not finish reading within 60 s"
    answer: tuple[str, Any] = answers.get()
    return answer


def _read_in_child(read: Callable[[], bytes], answers: Any) -> None:
    """In a forked child: what ``read`` gives, as a digest, or what it raised.

    A digest, not the bytes: a megabyte would fill the pipe before the parent reads it.
    """
    try:
        answers.put(("read", hashlib.sha1(read()).hexdigest()))
    except Exception as exc:
        answers.put(("raised", exc))


@pytest.mark.timeout(120)
def test_a_forked_child_reads_on_from_the_pinned_version_and_says_so_when_it_changed(
    proxied_options: dict, fault_proxy: FaultProxy, bucket: str, fs: S3ReaderFileSystem
) -> None:
    path = f"{bucket}/overwritten.bin"
    fs.pipe_file(path, OBJECT)
    hold = _HoldTheParentsParts()
    fault_proxy.add(Fault.run(hold), method="GET", path_contains="overwritten.bin", from_nth=2)
    parent_fs = _parent_fs(proxied_options)
    try:
        reader = parent_fs.open(path, "rb", reader="sequential")
        assert reader.read(100) == OBJECT[:100]
        _wait_for_gets(fault_proxy, 1 + PARTS_IN_FLIGHT)
        fs.pipe_file(path, OBJECT[::-1])  # a new version while the parent's parts are in flight
        hold.forking.set()
        kind, answer = _answer_of_a_forked_child(reader.read)
    finally:
        hold.released.set()
    assert kind == "raised" and isinstance(answer, ObjectChangedError), answer
    assert "overwritten.bin" in str(answer)


def _wait_for_gets(proxy: FaultProxy, count: int) -> None:
    """Until ``count`` GETs reached the proxy: the parent's first GET and its parts, now held there."""
    deadline = time.monotonic() + 30
    while len(proxy.requests_of("GET")) < count:
        assert time.monotonic() < deadline, f"only {len(proxy.requests_of('GET'))} of {count} GETs reached the proxy"
        time.sleep(0.01)
    assert len(proxy.requests_of("GET")) == count


@pytest.mark.timeout(120)
def test_a_stream_forked_before_its_first_answer_learns_the_pin_in_the_child(
    proxied_options: dict, fault_proxy: FaultProxy, bucket: str, fs: S3ReaderFileSystem
) -> None:
    path = f"{bucket}/unpinned.bin"
    fs.pipe_file(path, OBJECT)
    hold = _HoldTheParentsParts()
    fault_proxy.add(Fault.run(hold), method="GET", path_contains="unpinned.bin")  # even the first GET waits
    parent_fs = _parent_fs(proxied_options)
    transport = parent_fs.object_transport(bucket, "unpinned.bin")
    try:
        stream = transport.get_stream(0, len(OBJECT))  # no size, no pin yet: one GET in flight
        _wait_for_gets(fault_proxy, 1)
        hold.forking.set()
        answer = _answer_of_a_forked_child(lambda: b"".join(bytes(chunk) for chunk in stream))
    finally:
        hold.released.set()
    assert answer == ("read", hashlib.sha1(OBJECT).hexdigest())
    assert b"".join(bytes(chunk) for chunk in stream) == OBJECT  # the parent's stream, let go


def test_a_fork_safe_lock_held_by_another_thread_at_the_fork_is_free_in_the_child() -> None:
    lock = ForkSafeLock()
    entered, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            entered.set()
            leave.wait(timeout=60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert entered.wait(timeout=10)
        answer = _answer_of_a_forked_child(lambda: _enter_and_leave(lock))
    finally:
        leave.set()
        holder.join()
    assert answer == ("read", hashlib.sha1(b"entered").hexdigest())


def _enter_and_leave(lock: ForkSafeLock) -> bytes:
    with lock:
        return b"entered"
