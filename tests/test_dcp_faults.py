"""DCP loads through the fault proxy: faults on one request in ten, faults beyond the budget, overwrites."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import torch.distributed.checkpoint as dcp
from dcp_states import all_zero, assert_same_state, bits, blank_like, training_state
from fault_proxy import Fault, FaultProxy
from torch.distributed.checkpoint.api import CheckpointException

from fsspec_s3reader import ObjectChangedError, ReadRetriesExhaustedError, S3ReaderFileSystem, S3StorageReader
from fsspec_s3reader.local_server import LocalS3Server

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")

PART_SIZE = 8192  # small parts and no coalescing across gaps: many requests, so one in ten is many faults
FAULTS = {
    "503 SlowDown": Fault.status(503, "SlowDown"),
    "reset mid-body": Fault.reset(after_bytes=1000),
    "truncated body": Fault.truncate(after_bytes=1000),
}


@pytest.fixture(scope="module")
def checkpoint(s3_server: LocalS3Server) -> tuple[str, dict[str, Any]]:
    """A checkpoint saved straight to the server (no proxy), read-only for the module."""
    options = s3_server.storage_options
    bucket = f"ckpt-faults-{uuid.uuid4().hex[:8]}"
    S3ReaderFileSystem(skip_instance_cache=True, **options).mkdir(bucket)
    state = training_state(seed=3, width=512)
    uri = f"s3://{bucket}/run"
    dcp.save(state, checkpoint_id=uri, storage_writer=_writer(uri, options))
    return uri, state


def _writer(uri: str, options: dict[str, Any]) -> Any:
    from fsspec_s3reader import S3StorageWriter

    return S3StorageWriter(uri, thread_count=2, **options)


def _reader(uri: str, options: dict[str, Any], **extra: Any) -> S3StorageReader:
    return S3StorageReader(uri, reader="dcp_optimized", max_gap_size=0, part_size=PART_SIZE, **options, **extra)


def _causes(error: CheckpointException) -> list[BaseException]:
    """The exceptions torch gathered from the ranks, whether it keeps them bare or with a traceback."""
    found = []
    for failure in error.failures.values():
        found.append(failure[0] if isinstance(failure, tuple) else failure)
    return found


@pytest.mark.parametrize("fault_name", FAULTS)
def test_a_load_with_a_fault_on_one_request_in_ten_is_bit_for_bit(
    checkpoint: tuple[str, dict], proxied_options: dict, fault_proxy: FaultProxy, fault_name: str
) -> None:
    uri, state = checkpoint
    # At most four, fewer than read_attempts: when throttling narrows the window to one request at a time,
    # a periodic fault can otherwise fall on the same part's every retry.
    rule = fault_proxy.add(FAULTS[fault_name], method=None, every=10, times=4)
    target = blank_like(state)
    dcp.load(target, storage_reader=_reader(uri, proxied_options))
    assert_same_state(target, state)
    assert rule.matched >= 30 and rule.fired >= 3  # the load was long enough to meet several faults


def test_a_load_beyond_the_retry_budget_raises_and_leaves_the_state_dict_untouched(
    checkpoint: tuple[str, dict], proxied_options: dict, fault_proxy: FaultProxy
) -> None:
    uri, state = checkpoint
    fault_proxy.add(FAULTS["503 SlowDown"], method="GET", from_nth=8)  # the metadata and a few items load first
    target = blank_like(state)
    with pytest.raises(CheckpointException) as caught:
        dcp.load(target, storage_reader=_reader(uri, proxied_options, read_attempts=2))
    (cause,) = _causes(caught.value)
    assert isinstance(cause, ReadRetriesExhaustedError)
    assert cause.key.startswith(uri.split("/", 3)[3]) and cause.attempts == 2
    assert all_zero(target)
    assert target["meta"]["step"] is None


def test_a_non_atomic_load_that_fails_leaves_every_tensor_either_untouched_or_whole(
    checkpoint: tuple[str, dict], proxied_options: dict, fault_proxy: FaultProxy
) -> None:
    uri, state = checkpoint
    fault_proxy.add(FAULTS["503 SlowDown"], method="GET", from_nth=8)
    target = blank_like(state)
    with pytest.raises(CheckpointException):
        dcp.load(target, storage_reader=_reader(uri, proxied_options, read_attempts=2, atomic=False))
    loaded = untouched = 0
    for name, tensor in target["model"].items():
        if bits(tensor) == bits(state["model"][name]):
            loaded += 1
        else:
            assert not tensor.any(), f"{name} holds bytes of neither the checkpoint nor the caller"
            untouched += 1
    assert untouched >= 1


def test_a_checkpoint_file_overwritten_mid_load_raises_and_leaves_the_state_dict_untouched(
    storage_options: dict, proxied_options: dict, fault_proxy: FaultProxy, fs: S3ReaderFileSystem, bucket: str
) -> None:
    state = training_state(seed=4, width=128)
    uri = f"s3://{bucket}/overwritten"
    dcp.save(state, checkpoint_id=uri, storage_writer=_writer(uri, storage_options))

    def overwrite(path: str) -> None:
        key = path.lstrip("/").split("?")[0]
        fs.pipe_file(key, bytes(reversed(fs.cat_file(key))))

    rule = fault_proxy.add(Fault.run(overwrite), method="GET", path_contains=".distcp", nth=3)
    target = blank_like(state)
    with pytest.raises(CheckpointException) as caught:
        dcp.load(target, storage_reader=_reader(uri, proxied_options))
    assert rule.fired == 1
    (cause,) = _causes(caught.value)
    assert isinstance(cause, ObjectChangedError)
    assert "was overwritten while being read" in str(cause)
    assert all_zero(target)


def test_the_storage_reader_checks_retry_options_like_the_filesystem(checkpoint: tuple[str, dict]) -> None:
    with pytest.raises(ValueError, match="read_attempts must be at least 1"):
        S3StorageReader(checkpoint[0], read_attempts=0)
