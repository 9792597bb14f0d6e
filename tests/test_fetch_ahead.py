"""Fetching planned spans of many objects ahead of their readers, within a byte budget, against the moto server."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fault_proxy import Fault, FaultProxy

from fsspec_s3reader import S3ReaderFileSystem
from fsspec_s3reader.transport.fetch_ahead import AheadObject, FetchAhead, PlannedSpan
from fsspec_s3reader.transport.link_estimate import PartPlan

PART = 1000
SIZE = 10_000
GIVE_UP_AFTER = 30.0
"""Seconds a test waits for the fetch to settle before failing: a guard against hanging, never a measurement."""


def _data(seed: int) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(SIZE))


@pytest.fixture
def objects(fs: S3ReaderFileSystem, bucket: str) -> dict[str, bytes]:
    stored = {f"{bucket}/object-{n}": _data(n) for n in range(3)}
    for path, data in stored.items():
        fs.pipe_file(path, data)
    return stored


def _fetch(budget: int, part: int = PART, in_flight: int = 4, readers: int = 1) -> FetchAhead:
    return FetchAhead(budget, lambda: PartPlan(part, in_flight), readers=readers)


def _add(
    fetch: FetchAhead, fs: S3ReaderFileSystem, path: str, spans: list[tuple[int, int]], item: int = SIZE, **kw: Any
) -> AheadObject:
    """The spans of ``path``, each made of items of ``item`` bytes (the reader holds one item at a time)."""
    bucket, key, _ = fs.split_path(path)
    planned = [
        PlannedSpan(start, end, tuple((s, min(s + item, end)) for s in range(start, end, item))) for start, end in spans
    ]
    return fetch.add(fs.object_transport(bucket, key, **kw), planned)


def _read(source: AheadObject, start: int, end: int) -> bytes:
    stream = source.get_stream(start, end)
    try:
        return b"".join(bytes(chunk) for chunk in stream)
    finally:
        stream.close()  # type: ignore[attr-defined]


def _settle(fetch: FetchAhead) -> None:
    """Wait until the fetch has started and no GET is in flight (nothing more goes until a reader moves)."""
    with fetch.lock:
        assert fetch.lock.wait_for(lambda: fetch.schedules > 0 and fetch.in_flight == 0, timeout=GIVE_UP_AFTER)


def test_every_span_of_every_object_arrives_bit_for_bit_one_request_per_part(
    fs: S3ReaderFileSystem, objects: dict[str, bytes]
) -> None:
    spans = [(0, 2200), (4000, 4100), (6000, SIZE)]
    fetch = _fetch(budget=10**9)
    sources = {path: _add(fetch, fs, path, spans) for path in objects}
    fetch.start()
    try:
        for path, data in objects.items():
            for start, end in spans:
                assert _read(sources[path], start, end) == data[start:end]
    finally:
        fetch.close()
    # 2200 -> 1000 + 1000 + 200; 100 -> 100; 4000 -> 4 x 1000: ceil(span / part) GETs each
    assert fetch.part_sizes == {1000: 3 * (2 + 4), 200: 3, 100: 3}
    assert fs.stats.get_requests == 3 * 8
    assert fs.stats.bytes_fetched == 3 * (2200 + 100 + 4000)
    assert fs.stats.head_requests == 0


def test_fetching_ahead_stops_at_the_budget_and_goes_on_as_the_reader_moves(
    fs: S3ReaderFileSystem, objects: dict[str, bytes]
) -> None:
    path, data = next(iter(objects.items()))
    fetch = _fetch(budget=5 * PART)  # one part kept for the reader: four fetched ahead
    source = _add(fetch, fs, path, [(0, SIZE)], item=PART)
    fetch.start()
    try:
        _settle(fetch)
        assert fetch.held == 4 * PART
        assert fs.stats.get_requests == 4
        assert _read(source, 0, SIZE) == data
    finally:
        fetch.close()
    assert fetch.peak_held <= 5 * PART
    assert fs.stats.get_requests == SIZE // PART


def test_a_reader_waiting_for_a_part_gets_it_whatever_the_budget(
    fs: S3ReaderFileSystem, objects: dict[str, bytes]
) -> None:
    path, data = next(iter(objects.items()))
    fetch = _fetch(budget=0)
    source = _add(fetch, fs, path, [(0, SIZE)], item=PART)
    fetch.start()
    try:
        _settle(fetch)
        assert fs.stats.get_requests == 0  # nothing fits the budget: nothing goes ahead
        assert _read(source, 0, SIZE) == data
    finally:
        fetch.close()
    assert fetch.peak_held <= PART  # one part at a time: the one the reader waits for


def test_parts_behind_the_item_a_reader_is_on_are_released(fs: S3ReaderFileSystem, objects: dict[str, bytes]) -> None:
    path, data = next(iter(objects.items()))
    fetch = _fetch(budget=10**9, in_flight=20)
    bucket, key, _ = fs.split_path(path)
    items = ((0, 2500), (2500, 6000), (6000, SIZE))
    source = fetch.add(fs.object_transport(bucket, key), [PlannedSpan(0, SIZE, items)])
    fetch.start()
    try:
        _settle(fetch)
        assert fetch.held == SIZE
        stream = source.get_stream(0, SIZE)
        received = b""
        while len(received) < 6000:  # through the second item: the reader is on [2500, 6000)
            received += bytes(next(stream))
        assert fetch.held == SIZE - 2 * PART  # parts [0, 1000) and [1000, 2000) end before the item it is on
        stream.close()  # type: ignore[attr-defined]
        assert fetch.held == 0
        assert received[:6000] == data[:6000]
    finally:
        fetch.close()


class _RecordingCalls:
    """The filesystem's calls, recording when each GET was sent and when its headers came back."""

    def __init__(self, inner: Any, events: list[tuple[str, str]]) -> None:
        self._inner = inner
        self._events = events

    @property
    def loop(self) -> Any:
        return self._inner.loop

    async def send_once(self, method: str, **request: Any) -> dict[str, Any]:
        self._events.append(("sent", request["Key"]))
        response = await self._inner.send_once(method, **request)
        self._events.append(("headers", request["Key"]))
        return response


def test_each_object_has_one_get_in_flight_until_its_first_response_pins_the_version(
    fs: S3ReaderFileSystem, objects: dict[str, bytes]
) -> None:
    events: list[tuple[str, str]] = []
    fetch = _fetch(budget=10**9, in_flight=30)
    calls = _RecordingCalls(fs.object_calls, events)
    sources = {path: _add(fetch, fs, path, [(0, SIZE)], calls=calls) for path in objects}
    fetch.start()
    try:
        for path, data in objects.items():
            assert _read(sources[path], 0, SIZE) == data
    finally:
        fetch.close()
    for path in objects:
        key = fs.split_path(path)[1]
        mine = [kind for kind, of in events if of == key]
        assert mine[:3] == ["sent", "headers", "sent"], mine  # the second GET waits for the first's headers
        assert mine.count("sent") == SIZE // PART


def test_a_span_read_again_or_a_range_not_planned_is_fetched_by_the_objects_transport(
    fs: S3ReaderFileSystem, objects: dict[str, bytes]
) -> None:
    path, data = next(iter(objects.items()))
    fetch = _fetch(budget=10**9)
    source = _add(fetch, fs, path, [(0, 3000)])
    fetch.start()
    try:
        assert _read(source, 0, 3000) == data[:3000]
        planned = fs.stats.get_requests
        assert _read(source, 0, 3000) == data[:3000]  # the planned span was handed out once already
        assert _read(source, 5000, 5100) == data[5000:5100]
        assert fs.stats.get_requests == planned + 2
    finally:
        fetch.close()


def test_closing_stops_the_fetch_and_a_reader_still_waiting_gets_cancelled_error(
    proxied_options: dict[str, Any], fault_proxy: FaultProxy, objects: dict[str, bytes]
) -> None:
    fs = S3ReaderFileSystem(skip_instance_cache=True, read_timeout=GIVE_UP_AFTER, **proxied_options)
    path = next(iter(objects))
    fault_proxy.add(Fault.stall(before_headers=True), nth=1)
    fetch = _fetch(budget=10**9)
    source = _add(fetch, fs, path, [(0, SIZE)])
    fetch.start()
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            _read(source, 0, SIZE)
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    with fetch.lock:
        assert fetch.lock.wait_for(lambda: fetch.in_flight == 1, timeout=GIVE_UP_AFTER)
    fetch.close()
    reader.join(GIVE_UP_AFTER)
    assert not reader.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], concurrent.futures.CancelledError)
    assert fetch.held == 0


def test_a_part_that_fails_for_good_reaches_its_reader_and_nothing_more_is_fetched_ahead_of_it(
    proxied_options: dict[str, Any], fault_proxy: FaultProxy, objects: dict[str, bytes]
) -> None:
    fs = S3ReaderFileSystem(skip_instance_cache=True, read_attempts=2, **proxied_options)
    path = next(iter(objects))
    fault_proxy.add(Fault.status(403), nth=2)  # the second GET: a refusal, not retried
    fetch = _fetch(budget=10**9, in_flight=1)  # one at a time: the failure comes before anything else is sent
    source = _add(fetch, fs, path, [(0, SIZE)])
    fetch.start()
    try:
        stream: Iterator[Any] = source.get_stream(0, SIZE)
        assert bytes(next(stream)) == objects[path][:PART]
        with pytest.raises(PermissionError):
            next(stream)
        _settle(fetch)
    finally:
        fetch.close()
    assert len(fault_proxy.requests_of("GET")) == 2


def test_a_span_read_through_a_gap_hands_out_the_parts_inside_the_gap_too(
    fs: S3ReaderFileSystem, objects: dict[str, bytes]
) -> None:
    path, data = next(iter(objects.items()))
    fetch = _fetch(budget=10**9)
    bucket, key, _ = fs.split_path(path)
    items = ((0, 1500), (8000, SIZE))  # parts [2000, 3000) ... [7000, 8000) hold only gap bytes
    source = fetch.add(fs.object_transport(bucket, key), [PlannedSpan(0, SIZE, items)])
    fetch.start()
    try:
        assert _read(source, 0, SIZE) == data
    finally:
        fetch.close()
    assert fetch.held == 0
