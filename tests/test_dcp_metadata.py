"""A checkpoint's metadata that cannot be read: the caller gets the error it was, after read_attempts requests.

torch's load swallows a failed ``read_metadata()``, tries a per-rank metadata
file, and would report ``AssertionError: metadata is None`` with the messages
only. These tests pin what reaches the caller instead, and how many requests
the endpoint sees, through the fault proxy.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
import torch.distributed.checkpoint as dcp
from dcp_states import all_zero, assert_same_state, blank_like, training_state
from fault_proxy import Fault, FaultProxy
from torch.distributed.checkpoint.api import CheckpointException

from fsspec_s3reader import ReadRetriesExhaustedError, S3ReaderFileSystem, S3StorageReader, S3StorageWriter

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")

ATTEMPTS = 3


@pytest.fixture
def saved(storage_options: dict, bucket: str) -> tuple[str, dict[str, Any]]:
    """A small checkpoint written straight to the server (no proxy); each test may damage its own."""
    state = training_state(seed=5, width=32)
    uri = f"s3://{bucket}/ckpt"
    dcp.save(state, storage_writer=S3StorageWriter(uri, **storage_options))
    return uri, state


def _failure(caught: pytest.ExceptionInfo[CheckpointException]) -> BaseException:
    (failure,) = caught.value.failures.values()
    return failure[0] if isinstance(failure, tuple) else failure


def _requested_keys(proxy: FaultProxy) -> list[str]:
    return [request.path.split("?")[0].rsplit("/", 1)[-1] for request in proxy.requests]


def _reader_that_asks_again(uri: str, **options: Any) -> S3StorageReader:
    """A reader whose next read of ``.metadata`` goes to the endpoint.

    Building a reader fetches ``.metadata`` (that is its check that the
    checkpoint exists), and the read that follows uses those bytes: read it
    once, so that the load's own read is a request the proxy can fail.
    """
    reader = S3StorageReader(uri, **options)
    reader.read_metadata()
    return reader


def test_a_metadata_read_that_keeps_failing_reaches_the_caller_as_read_retries_exhausted(
    saved: tuple[str, dict], proxied_options: dict, fault_proxy: FaultProxy
) -> None:
    uri, state = saved
    reader = _reader_that_asks_again(uri, read_attempts=ATTEMPTS, **proxied_options)
    fault_proxy.reset()
    fault_proxy.add(Fault.status(503), method=None, path_contains=".metadata")
    target = blank_like(state)
    with pytest.raises(CheckpointException) as caught:
        dcp.load(target, storage_reader=reader)
    error = _failure(caught)
    assert isinstance(error, ReadRetriesExhaustedError)
    assert error.key.endswith("ckpt/.metadata") and error.attempts == ATTEMPTS
    assert error.__cause__ is not None  # the last failure, as for any read
    assert all_zero(target)


def test_a_failing_metadata_read_is_retried_once_not_again_for_the_per_rank_file(
    saved: tuple[str, dict], proxied_options: dict, fault_proxy: FaultProxy
) -> None:
    uri, state = saved
    reader = _reader_that_asks_again(uri, read_attempts=ATTEMPTS, **proxied_options)
    fault_proxy.reset()
    fault_proxy.add(Fault.status(503), method=None, path_contains=".metadata")
    with pytest.raises(CheckpointException):
        dcp.load(blank_like(state), storage_reader=reader)
    assert _requested_keys(fault_proxy) == [".metadata"] * ATTEMPTS


def test_a_forbidden_metadata_file_reaches_the_caller_as_permission_error_after_one_request(
    saved: tuple[str, dict], proxied_options: dict, fault_proxy: FaultProxy
) -> None:
    uri, state = saved
    reader = _reader_that_asks_again(uri, **proxied_options)
    fault_proxy.reset()
    fault_proxy.add(Fault.status(403), method=None, path_contains=".metadata")
    with pytest.raises(CheckpointException) as caught:
        dcp.load(blank_like(state), storage_reader=reader)
    error = _failure(caught)
    assert isinstance(error, PermissionError)
    assert error.filename == f"{uri}/.metadata"
    assert _requested_keys(fault_proxy) == [".metadata"]


def test_a_missing_metadata_file_reaches_the_caller_as_file_not_found_naming_both_files(
    saved: tuple[str, dict], storage_options: dict, fs: S3ReaderFileSystem
) -> None:
    uri, state = saved
    reader = _reader_that_asks_again(uri, **storage_options)
    fs.rm_file(f"{uri}/.metadata")
    with pytest.raises(CheckpointException) as caught:
        dcp.load(blank_like(state), storage_reader=reader)
    error = _failure(caught)
    assert isinstance(error, FileNotFoundError)
    assert f"no DCP checkpoint metadata at {uri} (neither .metadata nor __0.metadata)" in str(error)
    assert isinstance(error.__cause__, FileNotFoundError)


def test_a_corrupt_metadata_file_reaches_the_caller_as_the_unpickling_error(
    saved: tuple[str, dict], storage_options: dict, fs: S3ReaderFileSystem
) -> None:
    uri, state = saved
    fs.pipe_file(f"{uri}/.metadata", b"not a pickle")
    with pytest.raises(CheckpointException) as caught:
        dcp.load(blank_like(state), storage_reader=S3StorageReader(uri, **storage_options))
    assert isinstance(_failure(caught), pickle.UnpicklingError)


def test_a_checkpoint_with_only_per_rank_metadata_still_loads(
    saved: tuple[str, dict], storage_options: dict, fs: S3ReaderFileSystem
) -> None:
    uri, state = saved
    fs.copy(f"{uri}/.metadata", f"{uri}/__0.metadata")
    fs.rm_file(f"{uri}/.metadata")
    target = blank_like(state)
    dcp.load(target, storage_reader=S3StorageReader(uri, **storage_options))
    assert_same_state(target, state)


def test_read_metadata_called_directly_raises_the_error_itself(
    saved: tuple[str, dict], proxied_options: dict, fault_proxy: FaultProxy
) -> None:
    reader = _reader_that_asks_again(saved[0], read_attempts=ATTEMPTS, **proxied_options)
    fault_proxy.add(Fault.status(503), method=None, path_contains=".metadata")
    with pytest.raises(ReadRetriesExhaustedError, match=r"ckpt/\.metadata"):
        reader.read_metadata()


def test_a_storage_reader_over_a_failing_endpoint_fails_at_construction_with_our_error(
    saved: tuple[str, dict], proxied_options: dict, fault_proxy: FaultProxy
) -> None:
    fault_proxy.add(Fault.status(503), method=None, path_contains=".metadata")
    with pytest.raises(ReadRetriesExhaustedError, match=r"ckpt/\.metadata bytes \[0, \d+\): gave up after 3 attempts"):
        S3StorageReader(saved[0], read_attempts=ATTEMPTS, **proxied_options)
    assert _requested_keys(fault_proxy) == [".metadata"] * ATTEMPTS


def test_a_storage_reader_over_a_forbidden_checkpoint_fails_at_construction_with_permission_error(
    saved: tuple[str, dict], proxied_options: dict, fault_proxy: FaultProxy
) -> None:
    fault_proxy.add(Fault.status(403), method=None, path_contains=".metadata")
    with pytest.raises(PermissionError, match="Access denied"):
        S3StorageReader(saved[0], **proxied_options)
