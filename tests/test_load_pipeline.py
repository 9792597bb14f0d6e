"""A DCP load fetched ahead of torch within a memory budget: bits, budget, requests, faults, stray reads."""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
from dcp_states import all_zero, assert_same_state, bits, blank_like, training_state
from fault_proxy import Fault, FaultProxy
from torch.distributed.checkpoint.api import CheckpointException

from fsspec_s3reader import ReadRetriesExhaustedError, S3ReaderFileSystem, S3StorageReader, S3StorageWriter
from fsspec_s3reader import dcp as dcp_module
from fsspec_s3reader.constructor import DCPOptimizedConstructor
from fsspec_s3reader.load_pipeline import gap_for_link
from fsspec_s3reader.plan import DEFAULT_MAX_GAP_SIZE, ItemRange
from fsspec_s3reader.transport.fetch_ahead import FetchAhead, PlannedSpan
from fsspec_s3reader.transport.link_estimate import LinkEstimate, PartPlan

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")

KIB = 1024
MIB = 1024 * KIB
PART = 64 * KIB  # small parts: the largest items (256 KiB) are several parts, many in flight at once
SMALL = {"part_size": PART, "max_gap_size": 0}


@pytest.fixture(scope="module")
def saved(s3_server: Any) -> tuple[str, dict[str, Any]]:
    """A checkpoint of 3 files, 4.5 MiB in all, most of it items of 256 KiB (four parts each); read-only."""
    options = s3_server.storage_options
    bucket = f"pipeline-{uuid.uuid4().hex[:12]}"
    S3ReaderFileSystem(skip_instance_cache=True, **options).mkdir(bucket)
    state = training_state(seed=7)
    torch.manual_seed(7)
    state["model"].update({f"block{n}.weight": torch.randn(256, 256) for n in range(16)})
    uri = f"s3://{bucket}/run"
    dcp.save(state, storage_writer=S3StorageWriter(uri, thread_count=3, **options))
    return uri, state


def _load(reader: S3StorageReader, target: dict[str, Any]) -> dict[str, Any]:
    dcp.load(target, storage_reader=reader)
    return target


def _planned_bytes(reader: S3StorageReader) -> int:
    """The bytes the last load's plan reads (an empty tensor, say, is not read at all)."""
    ranges = reader.reader_constructor.item_ranges_by_file  # type: ignore[attr-defined]
    return sum(r.end - r.start for file_ranges in ranges.values() for r in file_ranges)


@pytest.mark.parametrize("files_in_flight", [1, 3])
@pytest.mark.parametrize("atomic", [True, False])
@pytest.mark.parametrize("model_only", [False, True])
def test_full_and_partial_loads_are_bit_for_bit_with_files_in_flight_and_a_small_budget(
    saved: tuple[str, dict], storage_options: dict, files_in_flight: int, atomic: bool, model_only: bool
) -> None:
    uri, state = saved
    reader = S3StorageReader(
        uri, files_in_flight=files_in_flight, atomic=atomic, memory_budget=4 * MIB, **SMALL, **storage_options
    )
    if model_only:
        target = _load(reader, {"model": blank_like(state["model"])})
        assert_same_state(target, {"model": state["model"]})
    else:
        assert_same_state(_load(reader, blank_like(state)), state)
    assert reader.last_load is not None and sum(reader.last_load.part_sizes.values()) > 3 * files_in_flight


def test_a_partial_load_that_reads_its_gaps_through_gets_every_part_of_them(
    saved: tuple[str, dict], storage_options: dict
) -> None:
    uri, state = saved
    options = {**SMALL, "max_gap_size": math.inf}  # one span per file: many parts hold only skipped bytes
    reader = S3StorageReader(uri, memory_budget=4 * MIB, **options, **storage_options)
    target = _load(reader, {"model": blank_like(state["model"])})
    assert_same_state(target, {"model": state["model"]})


@pytest.mark.parametrize("files_in_flight", [1, 2, 3])
def test_the_bytes_held_stay_within_the_budget_less_what_torch_builds(
    saved: tuple[str, dict], storage_options: dict, files_in_flight: int
) -> None:
    uri, state = saved
    budget = 3 * MIB  # less than the load: fetching ahead has to wait for torch to move on
    reader = S3StorageReader(uri, memory_budget=budget, files_in_flight=files_in_flight, **SMALL, **storage_options)
    assert_same_state(_load(reader, blank_like(state)), state)
    assert _planned_bytes(reader) > budget
    stats = reader.last_load
    largest_item = max(info.length for info in reader.storage_data.values())
    assert stats.set_aside == files_in_flight * largest_item  # torch's tensor of the item each reader is on
    assert 0 < stats.peak_held <= budget - stats.set_aside


def test_a_budget_too_small_for_the_items_still_loads_holding_about_one_item_per_file(
    saved: tuple[str, dict], storage_options: dict
) -> None:
    uri, state = saved
    reader = S3StorageReader(uri, memory_budget=0, files_in_flight=3, **SMALL, **storage_options)
    assert_same_state(_load(reader, blank_like(state)), state)
    largest_item = max(info.length for info in reader.storage_data.values())
    # Nothing is fetched ahead; each file holds the parts of the item it is on, and the one it waits for.
    assert reader.last_load.peak_held <= 3 * (largest_item + 2 * PART)


def test_every_request_of_a_load_is_counted_and_each_planned_byte_fetched_once(
    saved: tuple[str, dict], storage_options: dict
) -> None:
    uri, state = saved
    reader = S3StorageReader(uri, memory_budget=4 * MIB, **SMALL, **storage_options)
    metadata_size = reader.filesystem.size(f"{uri}/.metadata")
    before = reader.filesystem.stats
    _load(reader, blank_like(state))
    stats = reader.filesystem.stats - before
    assert stats.get_requests == sum(reader.last_load.part_sizes.values())  # .metadata came with the check
    assert stats.head_requests == 0
    assert stats.bytes_fetched == _planned_bytes(reader)  # no gap read through, nothing twice
    assert reader.filesystem.stats.bytes_fetched == metadata_size + _planned_bytes(reader)


@pytest.mark.parametrize(
    "fault", [Fault.status(503, "SlowDown"), Fault.reset(after_bytes=5000)], ids=["503", "reset mid-body"]
)
def test_a_fault_mid_load_is_retried_and_the_load_is_bit_for_bit(
    saved: tuple[str, dict], proxied_options: dict, fault_proxy: FaultProxy, fault: Fault
) -> None:
    uri, state = saved
    reader = S3StorageReader(uri, memory_budget=6 * MIB, files_in_flight=3, **SMALL, **proxied_options)
    # Four faults, fewer than read_attempts: periodic faults can fall on one part's every retry when the
    # throttled window lines the requests up one by one (every 7th request is then always the same part's).
    rule = fault_proxy.add(fault, path_contains=".distcp", every=7, times=4)
    before = reader.filesystem.stats
    assert_same_state(_load(reader, blank_like(state)), state)
    assert rule.fired == 4
    stats = reader.filesystem.stats - before
    assert stats.get_requests == sum(reader.last_load.part_sizes.values()) + rule.fired  # one more per fault
    assert stats.bytes_fetched >= _planned_bytes(reader)


@pytest.mark.parametrize("atomic", [True, False])
def test_a_load_that_fails_midway_leaves_each_tensor_untouched_or_whole(
    saved: tuple[str, dict], proxied_options: dict, fault_proxy: FaultProxy, atomic: bool
) -> None:
    uri, state = saved
    reader = S3StorageReader(
        uri, memory_budget=6 * MIB, files_in_flight=3, atomic=atomic, read_attempts=2, **SMALL, **proxied_options
    )
    fault_proxy.add(Fault.status(503, "SlowDown"), path_contains=".distcp", from_nth=20)
    target = blank_like(state)
    with pytest.raises(CheckpointException) as caught:
        _load(reader, target)
    causes = [failure[0] if isinstance(failure, tuple) else failure for failure in caught.value.failures.values()]
    assert isinstance(causes[0], ReadRetriesExhaustedError)
    if atomic:
        assert all_zero(target)
        return
    for group in ("model", "extras"):
        for name, tensor in target[group].items():
            assert bits(tensor) == bits(state[group][name]) or not tensor.any(), f"{group}.{name} is partly written"


def test_a_read_outside_the_plan_is_served_beside_the_pipeline_with_one_warning(
    fs: S3ReaderFileSystem, storage_options: dict, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = bytes(range(256)) * 64
    path = f"{bucket}/file.distcp"
    fs.pipe_file(path, data)
    items = [(1000, 3000), (5000, 9000)]
    fetch = FetchAhead(10**9, lambda: PartPlan(PART // 4, 4))
    source = fetch.add(fs.object_transport(bucket, "file.distcp"), [PlannedSpan(s, e, ((s, e),)) for s, e in items])
    constructor = DCPOptimizedConstructor(max_gap_size=0)
    constructor.set_ranges({f"s3://{path}": [ItemRange(s, e) for s, e in items]})
    constructor.set_sources({f"s3://{path}": source}, 0)
    reading = S3ReaderFileSystem(reader=constructor, skip_instance_cache=True, **storage_options)
    fetch.start()
    try:
        with caplog.at_level(logging.WARNING), reading.open(path, "rb") as reader:
            reader.seek(5000)
            assert reader.read(4000) == data[5000:9000]  # planned, from the pipeline
            reader.seek(1000)
            assert reader.read(2000) == data[1000:3000]  # behind: a stray read
            reader.seek(12000)
            assert reader.read(100) == data[12000:12100]  # outside the plan
    finally:
        fetch.close()
    assert len([r for r in caplog.records if "outside the load plan" in r.getMessage()]) == 1


def test_the_metadata_fetched_by_the_check_serves_the_load_that_follows(
    saved: tuple[str, dict], storage_options: dict
) -> None:
    reader = S3StorageReader(saved[0], **storage_options)
    assert reader.filesystem.stats.get_requests == 1  # the check: a GET of .metadata
    reader.read_metadata()
    assert reader.filesystem.stats.get_requests == 1  # served by the check's bytes
    reader.read_metadata()
    assert reader.filesystem.stats.get_requests == 2  # once only: a later read asks again


def test_a_reader_built_long_before_its_load_reads_the_metadata_again(
    saved: tuple[str, dict], storage_options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = S3StorageReader(saved[0], **storage_options)
    monkeypatch.setattr(dcp_module, "METADATA_KEPT_SECONDS", -1.0)  # whatever time passed is too long
    reader.read_metadata()
    assert reader.filesystem.stats.get_requests == 2


@pytest.mark.parametrize(("budget", "error"), [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("1", TypeError)])
def test_a_bad_memory_budget_is_refused_naming_it(saved: tuple[str, dict], budget: object, error: type) -> None:
    with pytest.raises(error, match=f"memory_budget must be .*got {budget!r}"):
        S3StorageReader(saved[0], memory_budget=budget)  # type: ignore[arg-type]


def test_the_gap_is_the_given_one_else_the_break_even_of_the_given_or_measured_costs() -> None:
    link = LinkEstimate()
    nothing: dict[str, Any] = {"max_gap_size": None, "first_byte_latency": None, "connection_throughput": None}
    assert gap_for_link(nothing, link) == DEFAULT_MAX_GAP_SIZE
    link.record(0.200, 16_000, 0.001)  # the first response also set up the client: not taken as the link's cost
    assert gap_for_link(nothing, link) == DEFAULT_MAX_GAP_SIZE
    link.record(0.010, 8 * 2**20, 8 * 2**20 / 50e6)
    assert gap_for_link(nothing, link) == 0.010 * 50e6
    assert gap_for_link({**nothing, "connection_throughput": 100e6}, link) == 0.010 * 100e6
    assert gap_for_link({**nothing, "max_gap_size": math.inf}, link) == math.inf
