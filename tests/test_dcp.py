"""PyTorch Distributed Checkpoint on S3, end to end against the moto server."""

from __future__ import annotations

import logging
import math
import re
import uuid
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
from dcp_states import all_zero, assert_same_state, blank_like, training_state
from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader, FsspecWriter
from torch.distributed.checkpoint.api import CheckpointException

from fsspec_s3reader import S3ReaderConstructor, S3ReaderFileSystem, S3StorageReader, S3StorageWriter
from fsspec_s3reader.constructor import DCPOptimizedConstructor

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")

CONSTRUCTORS = {
    "dcp_optimized": lambda: S3ReaderConstructor.dcp_optimized(),
    "dcp_optimized_no_gap": lambda: S3ReaderConstructor.dcp_optimized(max_gap_size=0),
    "dcp_optimized_all": lambda: S3ReaderConstructor.dcp_optimized(max_gap_size=math.inf),
    "sequential": S3ReaderConstructor.sequential,
    "range_based": S3ReaderConstructor.range_based,
    "range_based_unbuffered": lambda: S3ReaderConstructor.range_based(buffer_size=0),
}


def save(state: dict[str, Any], uri: str, storage_options: dict, thread_count: int = 3) -> None:
    dcp.save(state, storage_writer=S3StorageWriter(uri, thread_count=thread_count, **storage_options))


@pytest.fixture(scope="module")
def saved(s3_server: Any) -> tuple[str, dict[str, Any]]:
    """One checkpoint of model + optimizer + extras, in several files, shared by the read-only tests."""
    options = s3_server.storage_options
    bucket = f"ckpt-{uuid.uuid4().hex[:12]}"
    S3ReaderFileSystem(skip_instance_cache=True, **options).mkdir(bucket)
    state = training_state()
    uri = f"s3://{bucket}/run"
    save(state, uri, options)
    return uri, state


def load(target: dict[str, Any], reader: Any) -> dict[str, Any]:
    dcp.load(target, storage_reader=reader)
    return target


@pytest.mark.parametrize("name", CONSTRUCTORS)
def test_round_trip_is_bit_for_bit_with_every_strategy(
    saved: tuple[str, dict], storage_options: dict, name: str
) -> None:
    uri, state = saved
    reader = S3StorageReader(uri, CONSTRUCTORS[name](), **storage_options)
    assert_same_state(load(blank_like(state), reader), state)


@pytest.mark.parametrize("files_in_flight", [1, 3])
@pytest.mark.parametrize("atomic", [True, False])
def test_files_read_one_at_a_time_or_side_by_side_load_the_same_bits(
    saved: tuple[str, dict], storage_options: dict, files_in_flight: int, atomic: bool
) -> None:
    uri, state = saved
    reader = S3StorageReader(uri, files_in_flight=files_in_flight, atomic=atomic, **storage_options)
    assert_same_state(load(blank_like(state), reader), state)


@pytest.mark.parametrize(
    ("files_in_flight", "error"),
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError), ("2", TypeError)],
)
def test_a_bad_files_in_flight_is_refused_naming_it(
    saved: tuple[str, dict], storage_options: dict, files_in_flight: object, error: type
) -> None:
    with pytest.raises(error, match=f"files_in_flight must be .*got {re.escape(repr(files_in_flight))}"):
        S3StorageReader(saved[0], files_in_flight=files_in_flight, **storage_options)  # type: ignore[arg-type]


def test_the_checkpoint_has_several_files(saved: tuple[str, dict], storage_options: dict) -> None:
    uri, _ = saved
    fs = S3ReaderFileSystem(skip_instance_cache=True, **storage_options)
    data_files = [p for p in fs.ls(uri, detail=False) if p.endswith(".distcp")]
    assert len(data_files) == 3


def test_s3reader_uris_and_trailing_slashes_work_too(saved: tuple[str, dict], storage_options: dict) -> None:
    uri, state = saved
    reader = S3StorageReader(uri.replace("s3://", "s3reader://") + "/", **storage_options)
    assert_same_state(load(blank_like(state), reader), state)


def test_every_file_is_one_request_when_all_gaps_coalesce(saved: tuple[str, dict], storage_options: dict) -> None:
    uri, state = saved
    reader = S3StorageReader(uri, S3ReaderConstructor.dcp_optimized(math.inf), **storage_options)
    load(blank_like(state), reader)
    stats = reader.filesystem.stats  # a new reader's filesystem: everything from its construction on
    # .metadata: one GET when the reader checks the checkpoint, whose bytes torch's read of it then uses;
    # then one ranged GET per data file.
    assert stats.get_requests == 1 + 3
    assert stats.head_requests == 0


def _bytes_of(reader: S3StorageReader, prefix: str) -> int:
    return sum(info.length for index, info in reader.storage_data.items() if index.fqn.startswith(prefix))


def test_partial_load_without_gaps_fetches_only_the_needed_bytes(
    saved: tuple[str, dict], storage_options: dict
) -> None:
    uri, state = saved
    reader = S3StorageReader(uri, S3ReaderConstructor.dcp_optimized(max_gap_size=0), **storage_options)
    fs = reader.filesystem
    metadata_size = fs.size(f"{uri}/.metadata")
    fs.reset_stats()
    target = {"model": blank_like(state["model"])}
    load(target, reader)
    assert_same_state(target["model"], state["model"])
    needed = _bytes_of(reader, "model.")
    assert needed > 0
    assert fs.stats.bytes_fetched <= needed + metadata_size
    assert fs.stats.bytes_fetched < _bytes_of(reader, "") + metadata_size  # the optimizer was not fetched


def test_a_partial_load_with_default_settings_skips_the_interleaved_optimizer_state(
    storage_options: dict, bucket: str
) -> None:
    """Weights of 4 MiB between Adam moments of 4 MiB each: gaps too big to be worth reading through."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(*(torch.nn.Linear(1024, 1024, bias=False) for _ in range(3)))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 1024)).sum().backward()
    optimizer.step()
    state = {"model": model.state_dict(), "optim": optimizer.state_dict()}
    uri = f"s3://{bucket}/interleaved"
    save(state, uri, storage_options, thread_count=1)
    reader = S3StorageReader(uri, **storage_options)
    fs = reader.filesystem
    metadata_size = fs.size(f"{uri}/.metadata")
    fs.reset_stats()
    target = {"model": blank_like(state["model"])}
    load(target, reader)
    assert_same_state(target["model"], state["model"])
    needed = _bytes_of(reader, "model.") + metadata_size
    assert fs.stats.bytes_fetched <= 1.1 * needed


def test_partial_load_with_default_gap_is_correct(saved: tuple[str, dict], storage_options: dict) -> None:
    uri, state = saved
    target = {"model": blank_like(state["model"]), "meta": blank_like(state["meta"])}
    load(target, S3StorageReader(uri, **storage_options))
    assert_same_state(target, {"model": state["model"], "meta": state["meta"]})


def test_a_rank_with_an_empty_plan_reads_no_data_file(saved: tuple[str, dict], storage_options: dict) -> None:
    uri, _ = saved
    reader = S3StorageReader(uri, **storage_options)
    load({}, reader)
    assert reader.filesystem.stats.get_requests == 1  # .metadata only, fetched when the reader checked the checkpoint
    assert reader.reader_constructor.item_ranges_by_file == {}  # type: ignore[attr-defined]


def test_a_reader_reused_for_another_checkpoint_sees_only_that_checkpoints_ranges(
    storage_options: dict, fs: S3ReaderFileSystem, bucket: str
) -> None:
    first, second = training_state(seed=1), training_state(seed=2)
    save(first, f"s3://{bucket}/first", storage_options)
    save(second, f"s3://{bucket}/second", storage_options)
    reader = S3StorageReader(f"s3://{bucket}/first", **storage_options)
    assert_same_state(load(blank_like(first), reader), first)
    target = blank_like(second)
    dcp.load(target, checkpoint_id=f"s3://{bucket}/second", storage_reader=reader)
    assert_same_state(target, second)
    files = reader.reader_constructor.item_ranges_by_file  # type: ignore[attr-defined]
    assert files and all(uri.startswith(f"s3://{bucket}/second/") for uri in files)


def test_two_readers_never_share_a_constructor_or_filesystem(
    storage_options: dict, fs: S3ReaderFileSystem, bucket: str
) -> None:
    first, second = training_state(seed=3), training_state(seed=4)
    save(first, f"s3://{bucket}/a", storage_options)
    save(second, f"s3://{bucket}/b", storage_options)
    shared = S3ReaderConstructor.dcp_optimized(max_gap_size=0)
    reader_a = S3StorageReader(f"s3://{bucket}/a", shared, **storage_options)
    reader_b = S3StorageReader(f"s3://{bucket}/b", shared, **storage_options)
    assert reader_a.reader_constructor is not reader_b.reader_constructor
    assert reader_a.reader_constructor is not shared
    assert reader_a.filesystem is not reader_b.filesystem
    target_a, target_b = blank_like(first), blank_like(second)
    # Interleave the two loads' planning and reading.
    for target, reader in ((target_a, reader_a), (target_b, reader_b), (target_a, reader_a)):
        load(target, reader)
    assert_same_state(target_a, first)
    assert_same_state(target_b, second)
    assert all("/a/" in uri for uri in reader_a.reader_constructor.item_ranges_by_file)  # type: ignore[attr-defined]
    assert shared.item_ranges_by_file == {}


def test_missing_checkpoint_is_file_not_found_naming_it(storage_options: dict, bucket: str) -> None:
    with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/never-saved"):
        S3StorageReader(f"s3://{bucket}/never-saved", **storage_options)


def test_loading_a_missing_checkpoint_id_is_file_not_found(saved: tuple[str, dict], storage_options: dict) -> None:
    uri, state = saved
    reader = S3StorageReader(uri, **storage_options)
    with pytest.raises(FileNotFoundError, match="never-saved"):
        dcp.load(blank_like(state), checkpoint_id=uri + "-never-saved", storage_reader=reader)


@pytest.mark.parametrize("checkpoint_id", ["/tmp/ckpt", "ckpt", "gs://bucket/ckpt", "s3://", "https://host/x"])
def test_a_checkpoint_id_that_is_not_an_s3_uri_is_a_clear_value_error(checkpoint_id: str) -> None:
    with pytest.raises(ValueError, match="is not an S3 URI"):
        S3StorageReader(checkpoint_id)
    with pytest.raises(ValueError, match="is not an S3 URI"):
        S3StorageWriter(checkpoint_id)
    assert not S3StorageReader.validate_checkpoint_id(checkpoint_id)
    assert not S3StorageWriter.validate_checkpoint_id(checkpoint_id)


@pytest.mark.parametrize("checkpoint_id", ["s3://b/ckpt", "s3reader://b/ckpt", "s3a://b/ckpt"])
def test_s3_uris_are_valid_checkpoint_ids(checkpoint_id: str) -> None:
    assert S3StorageReader.validate_checkpoint_id(checkpoint_id)
    assert S3StorageWriter.validate_checkpoint_id(checkpoint_id)


def test_resetting_to_a_non_s3_id_is_a_value_error(saved: tuple[str, dict], storage_options: dict) -> None:
    reader = S3StorageReader(saved[0], **storage_options)
    with pytest.raises(ValueError, match="is not an S3 URI"):
        reader.reset("/local/ckpt")


def test_torchs_own_fsspec_reader_and_writer_work_on_s3reader_urls(
    storage_options: dict, fs: S3ReaderFileSystem, bucket: str
) -> None:
    state = training_state(seed=5)
    url = f"s3reader://{bucket}/plain"
    dcp.save(state, storage_writer=FsspecWriter(url, **storage_options))
    for choice in ({}, {"reader": "sequential"}, {"reader": "range_based"}, {"reader": "adaptive"}):
        target = blank_like(state)
        dcp.load(target, storage_reader=FsspecReader(url, **choice, **storage_options))
        assert_same_state(target, state)


def test_a_failed_load_leaves_the_state_dict_untouched(
    storage_options: dict, fs: S3ReaderFileSystem, bucket: str
) -> None:
    state = training_state(seed=6)
    save(state, f"s3://{bucket}/broken", storage_options)
    last_file = sorted(p for p in fs.ls(f"{bucket}/broken", detail=False) if p.endswith(".distcp"))[-1]
    fs.pipe_file(last_file, fs.cat_file(last_file)[:100])  # truncated after the metadata was written
    target = blank_like(state)
    for files_in_flight in (1, 3):
        reader = S3StorageReader(f"s3://{bucket}/broken", files_in_flight=files_in_flight, **storage_options)
        with pytest.raises(CheckpointException, match=r"IncompleteObjectError|shorter|beyond the end"):
            dcp.load(target, storage_reader=reader)
        assert all_zero(target)
        assert target["meta"]["step"] is None


# -- the DCP-optimized reader outside the happy path --------------------------------------------


@pytest.fixture
def planned_object(fs: S3ReaderFileSystem, bucket: str) -> tuple[bytes, str]:
    data = bytes(range(256)) * 40
    fs.pipe_file(f"{bucket}/ckpt/__0_0.distcp", data)
    return data, f"{bucket}/ckpt/__0_0.distcp"


def _constructor_with(ranges: list[tuple[int, int]], uri: str) -> DCPOptimizedConstructor:
    from types import SimpleNamespace

    constructor = S3ReaderConstructor.dcp_optimized(max_gap_size=0)
    items = [SimpleNamespace(storage_index=i) for i in range(len(ranges))]
    storage = {
        i: SimpleNamespace(relative_path=uri.rsplit("/", 1)[1], offset=s, length=e - s)
        for i, (s, e) in enumerate(ranges)
    }
    constructor.set_item_ranges_by_file(items, storage, "s3://" + uri.rsplit("/", 1)[0])
    return constructor


def test_stray_reads_are_served_correctly_with_one_warning(
    storage_options: dict, planned_object: tuple[bytes, str], caplog: pytest.LogCaptureFixture
) -> None:
    data, path = planned_object
    constructor = _constructor_with([(100, 200), (1000, 1100), (5000, 6000)], path)
    fs = S3ReaderFileSystem(reader=constructor, skip_instance_cache=True, **storage_options)
    with caplog.at_level(logging.WARNING), fs.open(path, "rb") as reader:
        reader.seek(1000)
        assert reader.read(100) == data[1000:1100]  # planned
        reader.seek(100)
        assert reader.read(100) == data[100:200]  # an item already passed
        reader.seek(300)
        assert reader.read(10) == data[300:310]  # a gap
        reader.seek(5990)
        assert reader.read(50) == data[5990:6040]  # across the last item's end
        reader.seek(9000)
        assert reader.read() == data[9000:]  # past every item
    warnings = [r for r in caplog.records if "outside the load plan" in r.getMessage()]
    assert len(warnings) == 1
    assert "offset 100" in warnings[0].getMessage() and path in warnings[0].getMessage()


def test_planned_reads_in_order_cost_one_request_per_group_and_no_warning(
    storage_options: dict, planned_object: tuple[bytes, str], caplog: pytest.LogCaptureFixture
) -> None:
    data, path = planned_object
    constructor = _constructor_with([(100, 200), (200, 300), (1000, 1100)], path)
    fs = S3ReaderFileSystem(reader=constructor, skip_instance_cache=True, **storage_options)
    with caplog.at_level(logging.WARNING), fs.open(path, "rb") as reader:
        for start, end in [(100, 200), (200, 300), (1000, 1100)]:
            reader.seek(start)
            assert reader.read(end - start) == data[start:end]
            reader.seek(start + 10)  # torch.load seeks around inside an item
            assert reader.read(5) == data[start + 10 : start + 15]
    assert fs.stats.get_requests == 2  # [100, 300) coalesced, then [1000, 1100)
    assert fs.stats.head_requests == 0
    assert fs.stats.bytes_fetched == 300
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_file_without_planned_ranges_is_read_range_based_with_a_warning(
    storage_options: dict, planned_object: tuple[bytes, str], caplog: pytest.LogCaptureFixture
) -> None:
    data, path = planned_object
    other = path.replace("__0_0", "__0_1")
    S3ReaderFileSystem(skip_instance_cache=True, **storage_options).pipe_file(other, data[::-1])
    constructor = _constructor_with([(0, 10)], path)
    fs = S3ReaderFileSystem(reader=constructor, skip_instance_cache=True, **storage_options)
    with caplog.at_level(logging.WARNING), fs.open(other, "rb") as reader:
        assert type(reader).__name__ == "RangedS3Reader"
        assert reader.read() == data[::-1]
    assert any("no load-plan ranges" in r.getMessage() and other in r.getMessage() for r in caplog.records)


def test_metadata_files_are_read_sequentially(storage_options: dict, fs: S3ReaderFileSystem, bucket: str) -> None:
    fs.pipe_file(f"{bucket}/ckpt/.metadata", b"meta")
    dcp_fs = S3ReaderFileSystem(reader="dcp_optimized", skip_instance_cache=True, **storage_options)
    with dcp_fs.open(f"{bucket}/ckpt/.metadata", "rb") as reader:
        assert type(reader).__name__ == "SequentialS3Reader"
        assert reader.read() == b"meta"


def test_empty_storage_data_with_a_plan_is_a_value_error() -> None:
    from types import SimpleNamespace

    with pytest.raises(ValueError, match="storage_data is empty"):
        S3ReaderConstructor.dcp_optimized().set_item_ranges_by_file([SimpleNamespace(storage_index=0)], {}, "s3://b/c")


def test_an_empty_plan_records_no_ranges() -> None:
    constructor = S3ReaderConstructor.dcp_optimized()
    constructor.set_item_ranges_by_file([], {}, "s3://b/c")
    assert constructor.item_ranges_by_file == {}


def test_storage_reader_takes_storage_options_like_the_writer(saved: tuple[str, dict], storage_options: dict) -> None:
    uri, state = saved
    reader = S3StorageReader(uri, part_size=1024, **storage_options)
    assert_same_state(load(blank_like(state), reader), state)
    assert reader.filesystem.stats.get_requests > 10  # small parts: many concurrent GETs


def test_loaded_tensors_keep_their_device_and_identity(saved: tuple[str, dict], storage_options: dict) -> None:
    uri, state = saved
    target = blank_like(state)
    weight = target["model"]["0.weight"]
    load(target, S3StorageReader(uri, **storage_options))
    assert target["model"]["0.weight"] is weight  # loaded in place, as torch does
    assert torch.equal(weight, state["model"]["0.weight"])


def test_the_strategy_can_be_named_in_storage_options(saved: tuple[str, dict], storage_options: dict) -> None:
    uri, state = saved
    reader = S3StorageReader(uri, reader="range_based", buffer_size=0, **storage_options)
    assert S3ReaderConstructor.get_reader_type_string(reader.reader_constructor) == "range_based"
    assert_same_state(load(blank_like(state), reader), state)


def test_a_strategy_given_twice_is_refused(saved: tuple[str, dict], storage_options: dict) -> None:
    with pytest.raises(ValueError, match="choose the strategy once"):
        S3StorageReader(saved[0], S3ReaderConstructor.sequential(), reader="range_based", **storage_options)


def test_a_writer_reused_for_another_checkpoint_keeps_its_storage_options(
    storage_options: dict, fs: S3ReaderFileSystem, bucket: str
) -> None:
    state = training_state(seed=8)
    writer = S3StorageWriter(f"s3://{bucket}/one", **storage_options)
    dcp.save(state, storage_writer=writer)
    dcp.save(state, checkpoint_id=f"s3reader://{bucket}/two", storage_writer=writer)
    assert writer.checkpoint_id == f"s3reader://{bucket}/two"
    target = blank_like(state)
    load(target, S3StorageReader(f"s3://{bucket}/two", **storage_options))
    assert_same_state(target, state)


def test_staging_keeps_the_loaded_tensor_and_compacts_a_view_of_a_larger_one() -> None:
    from fsspec_s3reader.staging import _CapturedCopy

    whole = torch.arange(10.0)
    stand_in = _CapturedCopy(torch.zeros(10))
    stand_in.detach().copy_(whole)
    assert stand_in.source is whole  # no copy
    narrowed = _CapturedCopy(torch.zeros(3))
    narrowed.copy_(whole[2:5])
    assert narrowed.source is not None and torch.equal(narrowed.source, whole[2:5])
    assert narrowed.source.untyped_storage().nbytes() == 3 * whole.element_size()  # not the whole 10


def test_a_stand_in_that_torch_never_copied_into_fails_loudly_at_commit() -> None:
    from types import SimpleNamespace

    from fsspec_s3reader.staging import StagedLoad

    target = torch.zeros(4)
    planner = SimpleNamespace(resolve_tensor=lambda item: target, commit_tensor=lambda item, tensor: None)
    staged = StagedLoad(planner)  # type: ignore[arg-type]
    item = SimpleNamespace(dest_index="weight")
    staged.commit_tensor(item, staged.resolve_tensor(item))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="atomic=False"):
        staged.commit()
    assert not target.any()
