"""Saving a checkpoint: each file one upload in parallel parts, exact bytes, nothing half-written after a failure.

The first half specifies ``ObjectUpload`` against an S3 kept in memory (parts,
order, the window, retries, abort); the second saves real checkpoints to the
moto server, some through the fault proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import pickle
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
from botocore.exceptions import ClientError
from dcp_states import assert_same_state, blank_like, training_state
from fault_proxy import Fault, FaultProxy
from fsspec.asyn import get_loop
from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader
from torch.distributed.checkpoint.api import CheckpointException

from fsspec_s3reader import S3ReaderFileSystem, S3StorageReader, S3StorageWriter
from fsspec_s3reader.retry import RetryPolicy
from fsspec_s3reader.transport.upload import (
    MAX_PART_SIZE,
    MIN_PART_SIZE,
    ObjectUpload,
    UploadFailedError,
    UploadSettings,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning"),
    pytest.mark.filterwarnings("ignore:Detected an existing checkpoint:UserWarning"),
]
# A failed file ends the thread torch started for it; Python reports that thread's exception.
THREAD_FAILS = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")

PART = MIN_PART_SIZE  # the smallest part S3 takes, so a few MiB make a multipart upload


def _error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "op")


class MemoryS3:
    """The S3 calls an upload makes, kept in memory: what was asked, in order, and what was stored.

    ``gate`` (a ``threading.Event``) holds every part until it is set;
    ``failures`` maps a part number to the errors its attempts raise, one per
    attempt, before it succeeds.
    """

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.loop = get_loop()
        self.gate = gate
        self.failures: dict[int, list[BaseException]] = {}
        self.calls: list[tuple[str, int | None]] = []
        self.parts: dict[int, bytes] = {}
        self.objects: dict[str, bytes] = {}
        self.in_flight = 0
        self.most_in_flight = 0
        self.cancelled = 0

    async def send_once(self, method: str, **request: Any) -> dict[str, Any]:
        number = request.get("PartNumber")
        self.calls.append((method, number))
        if method == "create_multipart_upload":
            return {"UploadId": "upload-1"}
        if method == "upload_part":
            return await self._part(number, bytes(request["Body"]))
        if method == "complete_multipart_upload":
            numbers = [part["PartNumber"] for part in request["MultipartUpload"]["Parts"]]
            assert numbers == sorted(self.parts) == list(range(1, len(numbers) + 1))
            self.objects[request["Key"]] = b"".join(self.parts[n] for n in numbers)
            return {}
        if method == "put_object":
            self.objects[request["Key"]] = bytes(request["Body"])
            return {}
        if method == "abort_multipart_upload":
            self.parts.clear()
            return {}
        raise AssertionError(method)

    async def _part(self, number: int, body: bytes) -> dict[str, Any]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            while self.gate is not None and not self.gate.is_set():
                await asyncio.sleep(0.002)
            if self.failures.get(number):
                raise self.failures[number].pop(0)
            self.parts[number] = body
            return {"ETag": f'"etag-{number}"'}
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]


def upload_to(s3: MemoryS3, parts_in_flight: int = 2, attempts: int = 3) -> ObjectUpload:
    settings = UploadSettings(PART, parts_in_flight, RetryPolicy(attempts=attempts, backoff=0.001))
    return ObjectUpload(s3, "bucket", "key", settings)


def write_in_pieces(upload: ObjectUpload, data: bytes, seed: int = 0) -> None:
    """Writes of every size: small headers, pieces that straddle part boundaries, one larger than a part."""
    sizes = random.Random(seed).choices([1, 100, 4096, PART // 3, PART + 17], k=10_000)
    offset = 0
    for size in sizes:
        if offset >= len(data):
            break
        assert upload.write(memoryview(data)[offset : offset + size]) == len(data[offset : offset + size])
        offset += size
    assert upload.tell() == len(data)


# -- one object, against S3 in memory ---------------------------------------------------


def test_an_object_smaller_than_one_part_is_one_put() -> None:
    s3 = MemoryS3()
    with upload_to(s3) as upload:
        upload.write(b"x" * 1000)
    assert s3.methods() == ["put_object"]
    assert s3.objects["key"] == b"x" * 1000


def test_an_empty_object_is_one_empty_put() -> None:
    s3 = MemoryS3()
    upload_to(s3).close()
    assert s3.methods() == ["put_object"] and s3.objects["key"] == b""


def test_a_larger_object_goes_up_in_full_parts_and_a_short_last_one() -> None:
    s3 = MemoryS3()
    data = random.Random(1).randbytes(2 * PART + PART // 2)
    upload = upload_to(s3)
    write_in_pieces(upload, data)
    upload.close()
    assert s3.methods() == ["create_multipart_upload", *["upload_part"] * 3, "complete_multipart_upload"]
    assert [len(s3.parts[n]) for n in (1, 2, 3)] == [PART, PART, PART // 2]
    assert s3.objects["key"] == data
    assert upload.closed


def test_writes_return_while_parts_travel_and_wait_only_when_the_window_is_full() -> None:
    gate = threading.Event()
    s3 = MemoryS3(gate)
    upload = upload_to(s3, parts_in_flight=2)
    upload.write(bytes(2 * PART + 10))  # two parts sent, the writer already fills the third
    assert s3.objects == {} and upload.tell() == 2 * PART + 10

    third = threading.Thread(target=upload.write, args=(bytes(PART),))
    third.start()
    third.join(timeout=0.3)
    assert third.is_alive(), "a third full part must wait while two are in flight"
    gate.set()
    third.join(timeout=10)
    assert not third.is_alive()
    upload.close()
    assert s3.most_in_flight == 2
    assert len(s3.objects["key"]) == 3 * PART + 10


def test_a_transient_failure_of_a_part_is_retried_and_the_object_is_exact() -> None:
    s3 = MemoryS3()
    s3.failures[2] = [_error(503, "SlowDown"), ConnectionResetError("reset")]
    data = random.Random(2).randbytes(3 * PART)
    with upload_to(s3, attempts=3) as upload:
        upload.write(data)
    assert [number for method, number in s3.calls if method == "upload_part"].count(2) == 3
    assert s3.objects["key"] == data


def test_a_part_that_keeps_failing_aborts_the_upload_and_names_the_object() -> None:
    s3 = MemoryS3()
    s3.failures[2] = [_error(500, "InternalError")] * 2
    upload = upload_to(s3, attempts=2)
    with pytest.raises(UploadFailedError, match=r"s3://bucket/key: UploadPart 2 .* failed after 2 attempts") as caught:
        upload.write(bytes(3 * PART))
        upload.close()
    assert (caught.value.bucket, caught.value.key, caught.value.attempts) == ("bucket", "key", 2)
    assert caught.value.errno == errno.EIO
    assert "complete_multipart_upload" not in s3.methods()
    assert s3.methods()[-1] == "abort_multipart_upload"
    assert s3.objects == {} and upload.closed


def test_a_permanent_failure_is_not_retried() -> None:
    s3 = MemoryS3()
    s3.failures[1] = [PermissionError("Access Denied")]
    upload = upload_to(s3, attempts=5)
    with pytest.raises(UploadFailedError, match=r"on its only attempt.*s3:PutObject") as caught:
        upload.write(bytes(PART))
        upload.close()
    assert caught.value.errno == errno.EACCES
    assert s3.methods().count("upload_part") == 1


def test_abort_stops_the_parts_in_flight_before_aborting_the_upload() -> None:
    s3 = MemoryS3(threading.Event())  # never set: the parts would wait forever
    upload = upload_to(s3, parts_in_flight=2)
    upload.write(bytes(2 * PART))
    while s3.in_flight < 2:
        time.sleep(0.002)
    upload.abort()
    assert s3.cancelled == 2 and s3.in_flight == 0
    assert s3.methods()[-1] == "abort_multipart_upload"
    assert s3.objects == {}


def test_a_closed_upload_refuses_writes_naming_the_object() -> None:
    upload = upload_to(MemoryS3())
    upload.close()
    with pytest.raises(ValueError, match="s3://bucket/key is completed"):
        upload.write(b"more")
    upload.close()  # closing twice does nothing


def test_writing_from_the_event_loop_itself_is_refused() -> None:
    s3 = MemoryS3()

    async def write_on_the_loop() -> None:
        upload = upload_to(s3)
        upload.write(bytes(PART))

    with pytest.raises(RuntimeError, match="own event loop"):
        asyncio.run_coroutine_threadsafe(write_on_the_loop(), s3.loop).result()


def test_parts_double_every_thousand_so_ten_thousand_default_parts_reach_five_tib() -> None:
    small = UploadSettings(part_size=PART)
    assert [small.size_of_part(n) for n in (1, 1000, 1001, 2001)] == [PART, PART, 2 * PART, 4 * PART]
    assert small.size_of_part(10_000) <= MAX_PART_SIZE
    settings = UploadSettings()
    assert sum(settings.size_of_part(n) for n in range(1, 10_001)) >= 5 * 1024**4
    assert settings.memory_per_file == settings.part_size * (settings.parts_in_flight + 1)


def test_an_upload_error_pickles_with_what_it_names() -> None:
    error = UploadFailedError.after("b", "ckpt/__0_0.distcp", "UploadPart 3", 5, ConnectionResetError("reset"))
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.bucket, copy.key, copy.attempts, copy.errno) == ("b", "ckpt/__0_0.distcp", 5, errno.EIO)
    assert "s3://b/ckpt/__0_0.distcp" in str(copy)


# -- checkpoints, against the moto server ------------------------------------------------


def big_state(seed: int = 0) -> dict[str, Any]:
    """The awkward dtypes of ``training_state`` and one tensor of ~2.4 parts, so a file is a multipart upload."""
    state = training_state(seed)
    generator = torch.Generator().manual_seed(seed)
    state["big"] = torch.randn(int(2.4 * PART) // 4, generator=generator)
    return state


def writer(uri: str, options: dict[str, Any], **extra: Any) -> S3StorageWriter:
    return S3StorageWriter(uri, upload_part_size=PART, **{"thread_count": 2, **extra}, **options)


def causes(error: CheckpointException) -> list[BaseException]:
    return [failure[0] if isinstance(failure, tuple) else failure for failure in error.failures.values()]


READERS = {
    "S3StorageReader": lambda uri, options: S3StorageReader(uri, **options),
    "torch FsspecReader on s3reader://": lambda uri, options: FsspecReader(
        uri.replace("s3://", "s3reader://"), **options
    ),
    "torch FsspecReader on s3fs": lambda uri, options: FsspecReader(uri, skip_instance_cache=True, **options),
}


@pytest.mark.parametrize("thread_count", [1, 3])
@pytest.mark.parametrize("reader", READERS)
def test_a_save_loads_back_bit_for_bit(storage_options: dict, bucket: str, reader: str, thread_count: int) -> None:
    state = big_state()
    uri = f"s3://{bucket}/run"
    dcp.save(state, storage_writer=writer(uri, storage_options, thread_count=thread_count))
    target = blank_like(state)
    dcp.load(target, storage_reader=READERS[reader](uri, storage_options))
    assert_same_state(target, state)


def test_a_large_file_is_one_multipart_upload_a_small_one_and_the_metadata_one_put_each(
    proxied_options: dict, fault_proxy: FaultProxy, bucket: str
) -> None:
    uri = f"s3://{bucket}/run"
    dcp.save(big_state(), storage_writer=writer(uri, proxied_options, thread_count=2))
    requests = fault_proxy.requests
    started = [r.path for r in requests if r.method == "POST" and "?uploads" in r.path]
    parts = [r.path for r in requests if r.method == "PUT" and "partNumber=" in r.path]
    puts = sorted(
        r.path.split("?")[0].rsplit("/", 1)[1] for r in requests if r.method == "PUT" and "partNumber=" not in r.path
    )
    assert len(started) == 1 and len(parts) == 3  # the file holding "big": 2.4 parts
    assert len(puts) == 2 and puts[0] == ".metadata" and puts[1].endswith(".distcp")  # the other file, and the metadata
    assert not [r for r in requests if "tmp" in r.path or "x-amz-copy-source" in r.headers]


def test_a_transient_fault_on_a_part_is_retried_and_the_checkpoint_is_exact(
    storage_options: dict, proxied_options: dict, fault_proxy: FaultProxy, bucket: str
) -> None:
    rule = fault_proxy.add(Fault.status(503, "SlowDown"), method="PUT", path_contains="partNumber=2", nth=1)
    state = big_state(seed=1)
    uri = f"s3://{bucket}/run"
    dcp.save(state, storage_writer=writer(uri, proxied_options))
    assert rule.fired == 1
    target = blank_like(state)
    dcp.load(target, storage_reader=S3StorageReader(uri, **storage_options))
    assert_same_state(target, state)


@THREAD_FAILS
def test_a_save_that_fails_mid_way_leaves_no_metadata_and_no_half_written_file(
    proxied_options: dict, fault_proxy: FaultProxy, fs: S3ReaderFileSystem, bucket: str
) -> None:
    fault_proxy.add(Fault.status(500), method="PUT", path_contains="partNumber=2")
    uri = f"s3://{bucket}/run"
    with pytest.raises(CheckpointException) as caught:
        dcp.save(big_state(), storage_writer=writer(uri, {**proxied_options, "read_attempts": 2}))
    (cause,) = causes(caught.value)
    assert isinstance(cause, UploadFailedError) and cause.attempts == 2
    assert cause.bucket == bucket and cause.key.startswith("run/__0_")
    assert f"s3://{bucket}/{cause.key}: UploadPart 2" in str(cause)
    fs.invalidate_cache()
    assert not fs.exists(f"{bucket}/run/.metadata")
    assert not fs.exists(f"{bucket}/{cause.key}")
    assert not fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads")


@THREAD_FAILS
def test_a_file_that_fails_in_one_of_torchs_writer_threads_fails_the_save(
    storage_options: dict, fs: S3ReaderFileSystem, bucket: str
) -> None:
    """torch's own writer loses the errors of the threads it starts; a save must not then write .metadata."""
    uri = f"s3://{bucket}/threads"
    storage = writer(uri, storage_options, thread_count=3)
    create_stream = storage.fs.create_stream

    @contextlib.contextmanager
    def failing_off_the_main_thread(path: str, mode: str) -> Iterator[Any]:
        with create_stream(path, mode) as stream:
            yield stream
            if threading.current_thread() is not threading.main_thread() and mode == "wb":
                raise OSError(f"the disk behind {path} is on fire")

    storage.fs.create_stream = failing_off_the_main_thread
    with pytest.raises(CheckpointException) as caught:
        dcp.save(big_state(), storage_writer=storage)
    (cause,) = causes(caught.value)
    assert "is on fire" in str(cause)
    assert not fs.exists(f"{bucket}/threads/.metadata")


@THREAD_FAILS
def test_a_failed_save_over_a_checkpoint_leaves_no_metadata_claiming_it_complete(
    storage_options: dict, proxied_options: dict, fault_proxy: FaultProxy, fs: S3ReaderFileSystem, bucket: str
) -> None:
    uri = f"s3://{bucket}/latest"
    dcp.save(big_state(seed=2), storage_writer=writer(uri, storage_options))
    assert fs.exists(f"{bucket}/latest/.metadata")
    fault_proxy.add(Fault.status(503, "SlowDown"), method="PUT", path_contains="partNumber=")
    with pytest.raises(CheckpointException):
        dcp.save(big_state(seed=3), storage_writer=writer(uri, {**proxied_options, "read_attempts": 1}))
    fs.invalidate_cache()
    assert not fs.exists(f"{bucket}/latest/.metadata")


def test_saving_over_a_checkpoint_replaces_it_whole(storage_options: dict, bucket: str) -> None:
    uri = f"s3://{bucket}/latest"
    dcp.save(big_state(seed=4), storage_writer=writer(uri, storage_options))
    newer = big_state(seed=5)
    dcp.save(newer, storage_writer=writer(uri, storage_options))
    target = blank_like(newer)
    dcp.load(target, storage_reader=S3StorageReader(uri, **storage_options))
    assert_same_state(target, newer)


def test_overwrite_false_refuses_an_existing_checkpoint(storage_options: dict, bucket: str) -> None:
    uri = f"s3://{bucket}/kept"
    dcp.save(training_state(), storage_writer=writer(uri, storage_options))
    with pytest.raises(CheckpointException, match="already exists"):
        dcp.save(training_state(), storage_writer=writer(uri, storage_options, overwrite=False))


def test_every_request_of_a_save_is_counted_in_the_filesystems_stats(
    proxied_options: dict, fault_proxy: FaultProxy, bucket: str
) -> None:
    storage = writer(f"s3://{bucket}/counted", proxied_options, thread_count=1)
    storage.filesystem.reset_stats()
    dcp.save(big_state(), storage_writer=storage)
    uploads = [r for r in fault_proxy.requests if r.method in ("PUT", "POST")]
    assert len(uploads) == 6  # create, 3 parts, complete; .metadata
    assert storage.filesystem.stats.requests == len(fault_proxy.requests)


def test_uploads_retry_with_the_filesystems_policy(storage_options: dict, bucket: str) -> None:
    storage = S3StorageWriter(f"s3://{bucket}/x", read_attempts=3, retry_backoff=0.5, **storage_options)
    settings = storage.upload_settings
    assert settings.retry_policy is storage.filesystem.retry_policy
    assert (settings.retry_policy.attempts, settings.retry_policy.backoff) == (3, 0.5)


# -- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"thread_count": 0}, ValueError, "thread_count must be at least 1"),
        ({"thread_count": "2"}, TypeError, "thread_count must be an int .* got '2'"),
        ({"thread_count": True}, TypeError, "thread_count must be an int"),
        ({"per_thread_copy_ahead": -1}, ValueError, "per_thread_copy_ahead must be at least 0"),
        ({"overwrite": "yes"}, TypeError, "overwrite must be True or False, got 'yes'"),
        ({"single_file_per_rank": 1}, TypeError, "single_file_per_rank must be True or False"),
        ({"upload_part_size": 1024}, ValueError, "upload_part_size must be between .* got 1024"),
        ({"upload_part_size": 8.0 * 2**20}, TypeError, "upload_part_size must be an int"),
        ({"upload_parts_in_flight": 0}, ValueError, "upload_parts_in_flight must be at least 1"),
        ({"endpoint_url": 12345}, TypeError, "endpoint_url must be a URL .* got 12345"),
        ({"endpoint_url": "127.0.0.1:9000"}, ValueError, "endpoint_url must be a URL .* got '127.0.0.1:9000'"),
        ({"client_kwargs": {"endpoint_url": 1}}, TypeError, r"client_kwargs\['endpoint_url'\] must be a URL"),
    ],
)
def test_bad_arguments_fail_at_construction_naming_the_argument(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        S3StorageWriter("s3://bucket/ckpt", **arguments)


@pytest.mark.parametrize("path", [None, 123, b"s3://bucket/ckpt"])
def test_a_path_that_is_not_a_string_is_a_type_error_naming_it(path: Any) -> None:
    with pytest.raises(TypeError, match=f"path must be the checkpoint's S3 URI as a str.*got {path!r}"):
        S3StorageWriter(path)


def test_a_writer_takes_s3reader_uris_and_keeps_the_path_as_given(storage_options: dict) -> None:
    storage = S3StorageWriter(f"s3reader://bucket-{uuid.uuid4().hex[:8]}/ckpt/", **storage_options)
    assert storage.checkpoint_id.startswith("s3reader://") and not storage.checkpoint_id.endswith("/")
