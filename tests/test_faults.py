"""Faults injected between the client and the server: every kind, every strategy, bytes checked bit for bit.

Each read runs twice through the fault proxy: once clean (the baseline), once
with one fault. The faulted read must return the same bytes, receive the same
number of body bytes (a broken body resumes after its last byte, nothing is
read twice) and cost exactly one more request per fault (no hidden retries by
s3fs or botocore on top of ours).
"""

from __future__ import annotations

import random
import socket
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fault_proxy import Fault, FaultProxy

from fsspec_s3reader import (
    IncompleteObjectError,
    ObjectChangedError,
    ReadRetriesExhaustedError,
    S3ReaderFileSystem,
)
from fsspec_s3reader.local_server import LocalS3Server
from fsspec_s3reader.plan import ItemRange
from fsspec_s3reader.readers.dcp_optimized import DCPOptimizedS3Reader
from fsspec_s3reader.transport import DEFAULT_FIRST_GET_SIZE

DATA = random.Random(7).randbytes(200_000)
ITEMS = [(0, 30_000), (30_000, 80_000), (100_000, 140_000), (170_000, 200_000)]
FIRST_GET = DEFAULT_FIRST_GET_SIZE  # the bytes an open's first GET asks for (it learns the size)
STALL_TIMEOUT = 0.75  # read_timeout where a test stalls: the proxy stays silent until the client leaves

FAULTS = {
    "500 InternalError": Fault.status(500),
    "502 BadGateway": Fault.status(502),
    "503 ServiceUnavailable": Fault.status(503, "ServiceUnavailable"),
    "503 SlowDown": Fault.status(503, "SlowDown"),
    "refused (closed before reply)": Fault.refuse(),
    "reset mid-body": Fault.reset(after_bytes=2000),
    "truncated body": Fault.truncate(after_bytes=2000),
    "stall before headers": Fault.stall(before_headers=True),
    "stall mid-body": Fault.stall(after_bytes=2000),
}

PATHS = {
    # one GET per read; the fault hits the first GET, the one that pins the ETag
    "one GET per read": ({}, 1),
    # reads split into 16 KiB parts, 4 in flight; the fault hits a later part, after the pin
    "concurrent parts": ({"part_size": 16 * 1024, "max_parts_in_flight": 4}, 3),
}


def read_sequential(fs: S3ReaderFileSystem, path: str) -> bytes:
    with fs.open(path, "rb", reader="sequential") as reader:
        return bytes(reader.read())


def _read_scattered(fs: S3ReaderFileSystem, path: str, buffer_size: int) -> bytes:
    """Small buffered reads, a large direct one, and the tail: every way the ranged reader fetches."""
    with fs.open(path, "rb", reader="range_based", buffer_size=buffer_size) as reader:
        pieces = [reader.read(5000), reader.read(5000)]
        reader.seek(60_000)
        pieces.append(reader.read(70_000))
        reader.seek(150_000)
        pieces.append(reader.read())
    return b"".join(pieces)


def read_range_based(fs: S3ReaderFileSystem, path: str) -> bytes:
    return _read_scattered(fs, path, buffer_size=32 * 1024)


def read_range_based_unbuffered(fs: S3ReaderFileSystem, path: str) -> bytes:
    return _read_scattered(fs, path, buffer_size=0)


def read_dcp_optimized(fs: S3ReaderFileSystem, path: str) -> bytes:
    bucket, key = path.split("/", 1)
    transport = fs.object_transport(bucket, key)
    items = [ItemRange(start, end) for start, end in ITEMS]
    reader = DCPOptimizedS3Reader(bucket, key, items, transport.get_object_info, transport.get_stream, max_gap_size=0)
    with reader:
        pieces = []
        for start, end in ITEMS:
            reader.seek(start)
            pieces.append(reader.read(end - start))
    return b"".join(pieces)


def read_adaptive(fs: S3ReaderFileSystem, path: str) -> bytes:
    """Forward reads while it streams, then a jump back: both ways the adaptive reader fetches.

    The first stream covers the object and is read to its end, so no stream
    fetched ahead is cut short: the requests sent do not depend on timing.
    """
    options = {"first_readahead": len(DATA), "buffer_size": 8 * 1024}
    with fs.open(path, "rb", reader="adaptive", **options) as reader:
        pieces = [reader.read(100_000), reader.read(100_000)]
        reader.seek(10_000)
        pieces.append(reader.read(5000))
        reader.seek(150_000)
        pieces.append(reader.read())
    return b"".join(pieces)


STRATEGIES: dict[str, Callable[[S3ReaderFileSystem, str], bytes]] = {
    "adaptive": read_adaptive,
    "sequential": read_sequential,
    "range_based": read_range_based,
    "range_based_unbuffered": read_range_based_unbuffered,
    "dcp_optimized": read_dcp_optimized,
}
EXPECTED = {
    "adaptive": DATA + DATA[10_000:15_000] + DATA[150_000:],
    "sequential": DATA,
    "range_based": DATA[:10_000] + DATA[60_000:130_000] + DATA[150_000:],
    "range_based_unbuffered": DATA[:10_000] + DATA[60_000:130_000] + DATA[150_000:],
    "dcp_optimized": b"".join(DATA[start:end] for start, end in ITEMS),
}


@pytest.fixture(scope="module")
def stored(s3_server: LocalS3Server) -> str:
    """One object for the module's read-only tests (those that overwrite make their own)."""
    fs = S3ReaderFileSystem(skip_instance_cache=True, **s3_server.storage_options)
    bucket = f"faults-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    fs.pipe_file(f"{bucket}/object.bin", DATA)
    return f"{bucket}/object.bin"


_filesystems: dict[tuple[tuple[str, Any], ...], S3ReaderFileSystem] = {}
_clean_reads: dict[tuple[Any, ...], tuple[int, int]] = {}


def proxied_fs(options: dict[str, Any], **extra: Any) -> S3ReaderFileSystem:
    """A filesystem with these options, its counters at zero; one per set of options, to save set-up time."""
    settings = tuple(sorted({**options, **extra}.items()))
    fs = _filesystems.get(settings)
    if fs is None:
        fs = _filesystems[settings] = S3ReaderFileSystem(skip_instance_cache=True, **dict(settings))
    fs.reset_stats()
    return fs


def clean_read(fault_proxy: FaultProxy, fs: S3ReaderFileSystem, strategy: str, path: str) -> tuple[int, int]:
    """GETs and body bytes of the read without faults (measured once per strategy and settings)."""
    key = (strategy, path, fs.transport_settings.part_size, fs.transport_settings.max_parts_in_flight)
    if key not in _clean_reads:
        fault_proxy.reset()
        assert STRATEGIES[strategy](fs, path) == EXPECTED[strategy]
        _clean_reads[key] = (len(fault_proxy.requests_of("GET")), fs.stats.bytes_fetched)
        fault_proxy.reset()
    return _clean_reads[key]


@pytest.mark.parametrize("path_name", PATHS)
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("fault_name", FAULTS)
def test_one_fault_is_retried_and_the_bytes_are_exact(
    proxied_options: dict, fault_proxy: FaultProxy, stored: str, strategy: str, path_name: str, fault_name: str
) -> None:
    settings, nth = PATHS[path_name]
    options = {**proxied_options, **settings, "read_timeout": STALL_TIMEOUT if "stall" in fault_name else 30}
    clean_gets, clean_bytes = clean_read(fault_proxy, proxied_fs(options, read_timeout=30), strategy, stored)

    rule = fault_proxy.add(FAULTS[fault_name], method="GET", nth=nth)
    faulted = proxied_fs(options)
    assert STRATEGIES[strategy](faulted, stored) == EXPECTED[strategy]
    assert rule.fired == 1
    assert len(fault_proxy.requests_of("GET")) == clean_gets + 1  # the one retry, nothing hidden
    assert faulted.stats.bytes_fetched == clean_bytes  # resumed, never re-read


@pytest.mark.parametrize("fault_name", ["reset mid-body", "truncated body", "stall mid-body"])
def test_a_broken_body_resumes_after_the_last_byte_received(
    proxied_options: dict, fault_proxy: FaultProxy, stored: str, fault_name: str
) -> None:
    fault_proxy.add(FAULTS[fault_name], method="GET", nth=1)
    faulted = proxied_fs(proxied_options, read_timeout=STALL_TIMEOUT)
    assert read_sequential(faulted, stored) == DATA
    first, retry, *_rest = fault_proxy.requests_of("GET")
    assert first.range == f"bytes=0-{FIRST_GET - 1}"  # the first GET, at open, also tells the size
    assert retry.range is not None and retry.range.endswith(f"-{FIRST_GET - 1}")
    resumed_at = int(retry.range.removeprefix("bytes=").split("-")[0])
    assert 0 <= resumed_at <= 2000
    assert retry.headers["if-match"]  # the resumed GET is pinned to the first response's ETag


@pytest.mark.parametrize("method", ["HEAD", "GET"])
@pytest.mark.parametrize("fault_name", ["503 SlowDown", "refused (closed before reply)"])
def test_faults_on_the_size_lookup_are_retried_too(
    proxied_options: dict, fault_proxy: FaultProxy, stored: str, method: str, fault_name: str
) -> None:
    fault_proxy.add(FAULTS[fault_name], method=method, nth=1)
    assert read_sequential(proxied_fs(proxied_options), stored) == DATA


# -- beyond the retry budget ------------------------------------------------------------


@pytest.mark.parametrize("fault_name", FAULTS)
def test_a_fault_on_every_attempt_raises_the_documented_error(
    proxied_options: dict, fault_proxy: FaultProxy, stored: str, fault_name: str
) -> None:
    failing = proxied_fs(proxied_options, read_attempts=2, read_timeout=STALL_TIMEOUT)
    with failing.open(stored, "rb", reader="range_based", buffer_size=0) as reader:
        fault_proxy.reset()
        fault_proxy.add(FAULTS[fault_name], method="GET")
        reader.seek(100_000)  # past the first GET's bytes
        with pytest.raises(ReadRetriesExhaustedError) as caught:
            reader.read(10_000)
    error = caught.value
    assert (error.bucket, error.key, error.end, error.attempts) == (*stored.split("/", 1), 110_000, 2)
    assert error.start is not None
    if FAULTS[fault_name].after_bytes:  # each attempt delivered a little: the error names what is still missing
        assert 100_000 <= error.start <= 100_000 + 2 * 2000
    else:
        assert error.start == 100_000
    assert f"s3://{stored} bytes [{error.start}, 110000): gave up after 2 attempts" in str(error)
    assert "read_attempts" in str(error)
    assert error.__cause__ is not None
    assert isinstance(error, OSError)
    # read_attempts is the number of requests, exactly; the HTTP client itself sends an idempotent request
    # a second time when a kept-alive connection closes before any reply (RFC 9112, 9.3.1), within the attempt
    sent = len(fault_proxy.requests_of("GET"))
    if FAULTS[fault_name].kind == "refuse":
        assert 2 <= sent <= 4
    else:
        assert sent == 2


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_gives_up_with_the_documented_error(
    proxied_options: dict, fault_proxy: FaultProxy, stored: str, strategy: str
) -> None:
    fault_proxy.add(FAULTS["503 SlowDown"], method="GET", from_nth=2)
    failing = proxied_fs(proxied_options, read_attempts=2, part_size=16 * 1024)
    with pytest.raises(ReadRetriesExhaustedError, match=f"s3://{stored} bytes"):
        STRATEGIES[strategy](failing, stored)


def test_a_first_get_that_keeps_failing_names_the_object_and_its_bytes(
    proxied_options: dict, fault_proxy: FaultProxy, stored: str
) -> None:
    fault_proxy.add(FAULTS["503 SlowDown"], method="GET")
    failing = proxied_fs(proxied_options, read_attempts=2)
    with pytest.raises(ReadRetriesExhaustedError, match=rf"s3://{stored} bytes \[0, {FIRST_GET}\)") as caught:
        failing.open(stored, "rb", reader="sequential")
    assert (caught.value.start, caught.value.end) == (0, FIRST_GET)
    # (counted by range: a part the test before cancelled may still reach the proxy just after its reset)
    first_gets = [
        get for get in fault_proxy.requests_of("GET") if get.headers.get("range") == f"bytes=0-{FIRST_GET - 1}"
    ]
    assert len(first_gets) == 2


def test_a_head_that_keeps_failing_names_the_object(
    proxied_options: dict, fault_proxy: FaultProxy, stored: str
) -> None:
    fault_proxy.add(FAULTS["503 SlowDown"], method="HEAD")
    failing = proxied_fs(proxied_options, read_attempts=2, first_get_size=0)  # the size from a HEAD
    with pytest.raises(ReadRetriesExhaustedError, match=rf"s3://{stored} object info \(HEAD\)") as caught:
        failing.open(stored, "rb", reader="sequential")
    assert (caught.value.start, caught.value.end) == (None, None)
    assert len(fault_proxy.requests_of("HEAD")) == 2


def test_a_refused_connection_is_retried_then_named(storage_options: dict, stored: str) -> None:
    with socket.socket() as probe:  # a port nothing listens on: connections are refused at once
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    options = {**storage_options, "endpoint_url": f"http://127.0.0.1:{closed_port}"}
    refusing = proxied_fs(options, read_attempts=2, retry_backoff=0)
    with pytest.raises(
        ReadRetriesExhaustedError, match=rf"s3://{stored} bytes \[0, {FIRST_GET}\): gave up after 2"
    ) as caught:
        refusing.open(stored, "rb", reader="sequential")
    assert caught.value.attempts == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [(403, PermissionError), (404, FileNotFoundError), (416, IncompleteObjectError), (412, ObjectChangedError)],
)
@pytest.mark.parametrize("strategy", ["sequential", "range_based"])
def test_permanent_errors_are_not_retried(
    proxied_options: dict, fault_proxy: FaultProxy, stored: str, strategy: str, status: int, error: type
) -> None:
    code = {412: "PreconditionFailed"}.get(status, "")
    fault_proxy.add(Fault.status(status, code) if code else Fault.status(status), method="GET")
    with pytest.raises(error, match=f"s3://{stored}"):
        STRATEGIES[strategy](proxied_fs(proxied_options), stored)
    ranges = [request.range for request in fault_proxy.requests_of("GET")]
    assert len(ranges) == len(set(ranges))  # no range asked for twice: nothing retried


# -- one version per open file -----------------------------------------------------------


@pytest.mark.parametrize("strategy", ["sequential", "range_based_unbuffered", "dcp_optimized"])
def test_an_object_overwritten_between_two_ranged_reads_raises(
    storage_options: dict, fs: S3ReaderFileSystem, bucket: str, strategy: str
) -> None:
    stored = f"{bucket}/object.bin"
    fs.pipe_file(stored, DATA)
    reading = S3ReaderFileSystem(part_size=8 * 1024, max_parts_in_flight=1, skip_instance_cache=True, **storage_options)
    key = stored.split("/", 1)[1]
    if strategy == "dcp_optimized":
        transport = reading.object_transport(bucket, key)
        items = [ItemRange(start, end) for start, end in ITEMS]
        reader: Any = DCPOptimizedS3Reader(
            bucket, key, items, transport.get_object_info, transport.get_stream, max_gap_size=0
        )
    else:
        reader = reading.open(stored, "rb", reader=strategy.removesuffix("_unbuffered"), **_buffer(strategy))
    with reader:
        assert reader.read(10) == DATA[:10]
        fs.pipe_file(stored, DATA[::-1])
        with pytest.raises(ObjectChangedError, match=f"s3://{stored} was overwritten while being read"):
            reader.seek(ITEMS[2][0])
            reader.read(ITEMS[2][1] - ITEMS[2][0])


def _buffer(strategy: str) -> dict[str, int]:
    return {"buffer_size": 0} if strategy == "range_based_unbuffered" else {}


def test_a_version_aware_reader_keeps_reading_its_version_after_an_overwrite(
    storage_options: dict, fs: S3ReaderFileSystem, bucket: str
) -> None:
    fs.make_bucket_versioned(bucket)
    path = f"{bucket}/versioned.bin"
    fs.pipe_file(path, DATA)
    reading = S3ReaderFileSystem(version_aware=True, skip_instance_cache=True, **storage_options)
    with reading.open(path, "rb", reader="range_based", buffer_size=0) as reader:
        first = reader.read(1000)
        fs.pipe_file(path, DATA[::-1])
        rest = reader.read()
    assert first + rest == DATA
