"""The transport: parts, ETag pinning, retries after a dropped connection, and the counters."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from botocore.exceptions import ResponseStreamingError
from fault_proxy import FaultProxy

from fsspec_s3reader import (
    IncompleteObjectError,
    ObjectChangedError,
    ReadRetriesExhaustedError,
    S3ReaderFileSystem,
    TransferStats,
)
from fsspec_s3reader.readers import RangedS3Reader
from fsspec_s3reader.transport import DEFAULT_MAX_PARTS_IN_FLIGHT, S3Calls, split_into_parts
from fsspec_s3reader.transport.link_estimate import RECENT_RESPONSES

DATA = bytes(range(256)) * 16  # 4 KiB


def test_split_into_parts_covers_the_range_exactly() -> None:
    assert split_into_parts(5, 25, 10) == [(5, 15), (15, 25)]
    assert split_into_parts(5, 26, 10) == [(5, 15), (15, 25), (25, 26)]
    assert split_into_parts(5, 5, 10) == []


def test_a_long_range_arrives_in_order_as_parts(storage_options: dict, bucket: str, fs: S3ReaderFileSystem) -> None:
    fs.pipe_file(f"{bucket}/k", DATA)
    parts_fs = S3ReaderFileSystem(part_size=1000, skip_instance_cache=True, **storage_options)
    transport = parts_fs.object_transport(bucket, "k")
    chunks = list(transport.get_stream(100, 3900))
    assert [len(c) for c in chunks] == [1000, 1000, 1000, 800]
    assert b"".join(chunks) == DATA[100:3900]
    assert parts_fs.stats == TransferStats(get_requests=4, head_requests=0, bytes_fetched=3800)


def test_a_get_tells_the_size_so_no_head_is_needed(fs: S3ReaderFileSystem, bucket: str) -> None:
    fs.pipe_file(f"{bucket}/k", DATA)
    transport = fs.object_transport(bucket, "k")
    fs.reset_stats()
    list(transport.get_stream(0, 10))
    assert transport.get_object_info().size == len(DATA)
    assert fs.stats.head_requests == 0


def test_closing_a_stream_early_stops_fetching(storage_options: dict, bucket: str, fs: S3ReaderFileSystem) -> None:
    fs.pipe_file(f"{bucket}/big", DATA * 100)  # 400 KiB in 100 parts
    parts_fs = S3ReaderFileSystem(part_size=4096, skip_instance_cache=True, **storage_options)
    with parts_fs.open(f"{bucket}/big", "rb", reader="sequential") as reader:
        assert reader.read(10) == DATA[:10]
    # the part handed out, plus at most one window fetched ahead: not all 100 parts
    assert parts_fs.stats.get_requests <= 1 + DEFAULT_MAX_PARTS_IN_FLIGHT


def test_an_object_overwritten_mid_read_raises_instead_of_mixing_versions(fs: S3ReaderFileSystem, bucket: str) -> None:
    path = f"{bucket}/changing"
    fs.pipe_file(path, b"a" * 200_000)  # beyond the first GET's 64 KiB
    with fs.open(path, "rb", reader="range_based", buffer_size=0) as reader:
        assert reader.read(10) == b"a" * 10
        fs.pipe_file(path, b"b" * 200_000)
        reader.seek(100_000)
        with pytest.raises(ObjectChangedError, match=f"s3://{path}"):
            reader.read(10)
        assert reader.tell() == 100_000


def test_the_pin_comes_from_the_first_get_when_no_head_was_sent(fs: S3ReaderFileSystem, bucket: str) -> None:
    path = f"{bucket}/changing"
    fs.pipe_file(path, DATA)
    transport = fs.object_transport(bucket, "changing")
    assert b"".join(transport.get_stream(0, 10)) == DATA[:10]
    fs.pipe_file(path, DATA[::-1])
    with pytest.raises(ObjectChangedError):
        list(transport.get_stream(10, 20))


def test_a_range_beyond_the_end_of_the_object_is_an_incomplete_object(fs: S3ReaderFileSystem, bucket: str) -> None:
    fs.pipe_file(f"{bucket}/short", DATA)
    transport = fs.object_transport(bucket, "short")
    with pytest.raises(IncompleteObjectError, match="short"):
        list(transport.get_stream(len(DATA) - 10, len(DATA) + 10))
    with pytest.raises(IncompleteObjectError, match="short"):
        list(transport.get_stream(len(DATA) + 10, len(DATA) + 20))


class _WrappedCalls:
    """The filesystem's real calls to the real server, with a test's hook on each one."""

    def __init__(self, inner: S3Calls) -> None:
        self._inner = inner

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._inner.loop

    async def send_once(self, method: str, **request: Any) -> dict[str, Any]:
        return await self._inner.send_once(method, **request)


def _unbuffered_reader(fs: S3ReaderFileSystem, bucket: str, key: str, calls: S3Calls) -> RangedS3Reader:
    transport = fs.object_transport(bucket, key, calls=calls)
    return RangedS3Reader(bucket, key, transport.get_object_info, transport.get_stream, buffer_size=0)


class _DroppingBody:
    """A real response body that loses its connection after a few bytes."""

    def __init__(self, body: Any) -> None:
        self._body = body

    async def read(self, amt: int | None = None) -> bytes:
        await self._body.read(10)
        raise ResponseStreamingError(error=ConnectionResetError("connection reset by peer"))

    def close(self) -> None:
        self._body.close()


class _DroppingCalls(_WrappedCalls):
    """The first ``drops_left`` GET bodies drop."""

    drops_left = 0

    async def send_once(self, method: str, **request: Any) -> dict[str, Any]:
        response = await super().send_once(method, **request)
        if method == "get_object" and self.drops_left > 0:
            self.drops_left -= 1
            response["Body"] = _DroppingBody(response["Body"])
        return response


def test_a_dropped_connection_is_retried_and_the_read_completes(fs: S3ReaderFileSystem, bucket: str) -> None:
    fs.pipe_file(f"{bucket}/k", DATA)
    dropping = _DroppingCalls(fs.object_calls)
    dropping.drops_left = 2
    fs.reset_stats()
    with _unbuffered_reader(fs, bucket, "k", dropping) as reader:
        assert reader.read() == DATA
    assert dropping.drops_left == 0
    assert fs.stats.get_requests == 3


def test_a_connection_that_keeps_dropping_fails_after_the_retries(storage_options: dict, bucket: str) -> None:
    fs = S3ReaderFileSystem(read_attempts=2, retry_backoff=0, skip_instance_cache=True, **storage_options)
    data = DATA * 32  # 128 KiB: the first GET, at open, brings the first 64 KiB
    fs.pipe_file(f"{bucket}/k", data)
    dropping = _DroppingCalls(fs.object_calls)
    with _unbuffered_reader(fs, bucket, "k", dropping) as reader:
        dropping.drops_left = 10
        fs.reset_stats()
        with pytest.raises(
            ReadRetriesExhaustedError, match=rf"s3://{bucket}/k bytes \[65536, 131072\): gave up after 2"
        ) as caught:
            reader.read()
    assert (caught.value.bucket, caught.value.key, caught.value.start, caught.value.end) == (bucket, "k", 65536, 131072)
    assert isinstance(caught.value.__cause__, ResponseStreamingError)
    assert fs.stats.get_requests == 2  # read_attempts bounds the requests per part


def test_stats_subtract_and_reset(fs: S3ReaderFileSystem, bucket: str) -> None:
    fs.pipe_file(f"{bucket}/k", DATA)
    before = fs.stats
    with fs.open(f"{bucket}/k", "rb") as reader:
        reader.read()
    delta = fs.stats - before
    assert (delta.get_requests, delta.head_requests, delta.bytes_fetched) == (1, 0, len(DATA))
    fs.reset_stats()
    assert fs.stats == TransferStats()


def test_s3fs_own_calls_are_counted_too(fs: S3ReaderFileSystem, bucket: str) -> None:
    fs.pipe_file(f"{bucket}/k", DATA)
    fs.reset_stats()
    assert fs.cat_file(f"{bucket}/k") == DATA
    assert fs.info(f"{bucket}/k")["size"] == len(DATA)
    fs.ls(bucket)
    stats = fs.stats
    assert (stats.get_requests, stats.bytes_fetched) == (1, len(DATA))
    assert stats.head_requests >= 1  # info, and s3fs's size lookup before a whole-object cat
    assert stats.other_requests >= 1  # the listing


def test_bytes_delivered_show_read_amplification(storage_options: dict, bucket: str) -> None:
    fs = S3ReaderFileSystem(first_get_size=0, skip_instance_cache=True, **storage_options)  # size from a HEAD
    fs.pipe_file(f"{bucket}/k", DATA)
    fs.reset_stats()
    with fs.open(f"{bucket}/k", "rb", reader="range_based", buffer_size=1024) as reader:
        reader.read(10)
        reader.readinto(bytearray(20))
        reader.seek(2000)
        line = reader.readline()  # looks ahead in the buffer, delivers only the line
    assert line == DATA[2000 : DATA.index(b"\n", 2000) + 1]
    stats = fs.stats
    assert stats.bytes_delivered == 10 + 20 + len(line)
    assert stats.bytes_fetched == 2 * 1024  # two buffer fills
    assert stats.read_amplification == stats.bytes_fetched / stats.bytes_delivered


class _RangeIgnoringCalls(_WrappedCalls):
    """The real server behind a 'proxy' that drops the Range header of every GET."""

    async def send_once(self, method: str, **request: Any) -> dict[str, Any]:
        if method == "get_object":
            request.pop("Range", None)
        return await super().send_once(method, **request)


def test_an_endpoint_that_ignores_range_is_refused_instead_of_misread(fs: S3ReaderFileSystem, bucket: str) -> None:
    fs.pipe_file(f"{bucket}/k", DATA)
    transport = fs.object_transport(bucket, "k", calls=_RangeIgnoringCalls(fs.object_calls), first_get_size=0)
    reader = RangedS3Reader(bucket, "k", transport.get_object_info, transport.get_stream, buffer_size=0)
    reader.seek(1000)
    with pytest.raises(OSError, match="does not honour ranged GETs"):
        reader.read(10)


def test_an_endpoint_that_ignores_range_is_refused_at_the_first_get_too(fs: S3ReaderFileSystem, bucket: str) -> None:
    fs.pipe_file(f"{bucket}/k", DATA * 32)
    with pytest.raises(OSError, match="does not honour ranged GETs"):
        _unbuffered_reader(fs, bucket, "k", _RangeIgnoringCalls(fs.object_calls))


class _SlowBody:
    """A real body whose reads are delayed, recording when they finish."""

    def __init__(self, body: Any, events: list[str], name: str) -> None:
        self._body, self._events, self._name = body, events, name

    async def read(self, amt: int | None = None) -> bytes:
        await asyncio.sleep(0.05)
        data: bytes = await self._body.read(amt)
        if not data or amt is None or len(data) >= amt:
            self._events.append(f"body of {self._name} read")
        return data

    def close(self) -> None:
        self._body.close()


class _EventRecordingCalls(_WrappedCalls):
    """Records the order in which GETs start and their bodies are read, against the real server."""

    def __init__(self, inner: S3Calls) -> None:
        super().__init__(inner)
        self.events: list[str] = []

    async def send_once(self, method: str, **request: Any) -> dict[str, Any]:
        if method != "get_object":
            return await super().send_once(method, **request)
        name = request["Range"]
        self.events.append(f"GET {name}")
        response = await super().send_once(method, **request)
        response["Body"] = _SlowBody(response["Body"], self.events, name)
        return response


@pytest.mark.parametrize("pinned_by", ["head before the stream", "head after the stream started", "first GET"])
def test_the_window_of_parts_opens_before_the_first_body_arrives(
    fs: S3ReaderFileSystem, bucket: str, pinned_by: str
) -> None:
    fs.pipe_file(f"{bucket}/k", DATA)
    recording = _EventRecordingCalls(fs.object_calls)
    transport = fs.object_transport(
        bucket, "k", calls=recording, part_size=1024, max_parts_in_flight=4, first_get_size=0
    )
    if pinned_by == "head before the stream":
        transport.get_object_info()
    stream = transport.get_stream(0, len(DATA))
    if pinned_by == "head after the stream started":
        transport.get_object_info()
    assert b"".join(stream) == DATA
    first_body_done = recording.events.index("body of bytes=0-1023 read")
    started_before = [e for e in recording.events[:first_body_done] if e.startswith("GET")]
    assert len(started_before) == 4  # all four parts were requested while the first was still arriving


def test_a_parquet_files_first_get_is_its_tail_where_the_footer_is(
    proxied_options: dict, fault_proxy: FaultProxy, fs: S3ReaderFileSystem, bucket: str
) -> None:
    data = DATA * 50  # 200 KiB
    fs.pipe_file(f"{bucket}/t.parquet", data)
    reading = S3ReaderFileSystem(skip_instance_cache=True, **proxied_options)
    with reading.open(f"{bucket}/t.parquet", "rb") as reader:
        assert reader.size == len(data)
        reader.seek(-8, 2)
        assert reader.read() == data[-8:]
    assert [request.range for request in fault_proxy.requests_of("GET")] == ["bytes=-65536"]
    assert fault_proxy.requests_of("HEAD") == []


class _SuffixMisreadingCalls(_WrappedCalls):
    """An endpoint that reads ``bytes=-N`` as ``bytes=0-N``, as s3rver does."""

    async def send_once(self, method: str, **request: Any) -> dict[str, Any]:
        if str(request.get("Range", "")).startswith("bytes=-"):
            request["Range"] = "bytes=0-" + request["Range"].removeprefix("bytes=-")
        return await super().send_once(method, **request)


def test_an_endpoint_that_misreads_suffix_ranges_costs_a_request_not_a_wrong_byte(
    fs: S3ReaderFileSystem, bucket: str
) -> None:
    data = DATA * 50
    fs.pipe_file(f"{bucket}/t.parquet", data)
    transport = fs.object_transport(
        bucket, "t.parquet", calls=_SuffixMisreadingCalls(fs.object_calls), read_from_end=True
    )
    fs.reset_stats()
    assert transport.get_object_info().size == len(data)
    assert b"".join(transport.get_stream(len(data) - 100, len(data))) == data[-100:]
    assert fs.stats.get_requests == 2  # the misread suffix (it told the size), then the tail by its offsets


def _with_a_timed_link(fs: S3ReaderFileSystem) -> S3ReaderFileSystem:
    """The filesystem's link as if its recent GETs had found 20 ms to the first byte and 90 MB/s per connection.

    The moto server answers within a millisecond: a test times the link again after GETs of its own.
    """
    link = fs.transport_settings.link_estimate
    assert link is not None
    for _ in range(RECENT_RESPONSES):
        link.record(0.020, 8 * 2**20, 8 * 2**20 / 90e6)
    return fs


def test_a_read_waited_for_is_cut_to_fit_the_link_unless_part_size_is_given(
    storage_options: dict, bucket: str, fs: S3ReaderFileSystem
) -> None:
    size = 10 * 2**20
    fs.pipe_file(f"{bucket}/ten", bytes(size))
    fitted = _with_a_timed_link(S3ReaderFileSystem(skip_instance_cache=True, **storage_options))
    chosen = _with_a_timed_link(S3ReaderFileSystem(part_size=8 * 2**20, skip_instance_cache=True, **storage_options))
    for filesystem in (fitted, chosen):
        assert b"".join(filesystem.object_transport(bucket, "ten").get_stream(0, size)) == bytes(size)
    # fitted: five parts of 2 MiB side by side; chosen: 8 MiB and the 2 MiB left
    assert (fitted.stats.get_requests, chosen.stats.get_requests) == (5, 2)


def test_a_stream_fetched_ahead_keeps_parts_of_part_size_on_a_timed_link(
    storage_options: dict, bucket: str, fs: S3ReaderFileSystem
) -> None:
    size = 10 * 2**20
    data = bytes(range(256)) * (size // 256)
    fs.pipe_file(f"{bucket}/ahead", data)
    fitted = _with_a_timed_link(S3ReaderFileSystem(skip_instance_cache=True, **storage_options))
    transport = fitted.object_transport(bucket, "ahead")
    assert b"".join(transport.get_stream(0, size, ahead=True)) == data
    # the default part size (8 MiB) and the 2 MiB left, where a read waited for takes five parts
    assert fitted.stats.get_requests == 2
    _with_a_timed_link(fitted)  # its own GETs found the moto server near
    assert b"".join(transport.get_stream(0, size)) == data
    assert fitted.stats.get_requests == 2 + 5
