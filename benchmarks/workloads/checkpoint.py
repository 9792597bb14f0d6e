"""Load a model + optimizer DCP checkpoint from S3, in full and only the model's part.

Saved once per server by the driver with ``S3StorageWriter(thread_count=4)``,
and copied once into memory (tmpfs) for the memory floor. Every contender
loads it into zeroed tensors shaped from the checkpoint's own ``.metadata``,
and every tensor and object is compared bit for bit with the state dict that
was saved. The network floor fetches the ``.metadata`` and the planned items'
bytes and parses nothing; its bytes are checked by ``torch.load`` after the clock.
"""

from __future__ import annotations

import functools
import io
import pickle
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader
from torch.distributed.checkpoint._nested_dict import flatten_state_dict, unflatten_state_dict
from torch.distributed.checkpoint.filesystem import FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, TensorStorageMetadata
from torch.distributed.checkpoint.state_dict_loader import load
from torch.distributed.checkpoint.state_dict_saver import save

from fsspec_s3reader import S3StorageReader, S3StorageWriter, TransferStats

from ..clients import REGION, UPLOAD_OPTIONS, RangeFetcher, s3tc_client, storage_options_with_counter
from ..config import Context, Endpoint, Sizes
from ..counting import RequestCounter
from ..floors import NetworkFloorTrial, Piece, plan_pieces
from ..trial import Build, Contender, Kind, OwnFilesystems, Trial, Workload, WrongDataError

CheckpointBuild = Callable[[Context, Endpoint, bool], Trial]
"""A contender's build for both loads; ``_contenders`` fixes the last argument, ``model_only``."""


NOT_LOADED = "<not loaded>"
"""Stands in a target for every non-tensor value, so a load that skips one is caught."""


def state_dict(ctx: Context) -> dict[str, Any]:
    """A model and its Adam state after one step, the same in every process for the same seed."""
    return _state_dict(ctx.sizes, ctx.seed)


@functools.lru_cache(maxsize=1)
def _state_dict(sizes: Sizes, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    width = sizes.dcp_width
    model = torch.nn.Sequential(*(torch.nn.Linear(width, width) for _ in range(sizes.dcp_layers)))
    optimizer = torch.optim.Adam(model.parameters())
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    optimizer.step()
    return {"model": model.state_dict(), "optim": optimizer.state_dict()}


def assert_identical(got: Any, expected: Any, where: str = "") -> None:
    """Raise ``WrongDataError`` at the first value of ``got`` that is not bit-for-bit ``expected``."""
    if isinstance(expected, torch.Tensor):
        same = (
            isinstance(got, torch.Tensor)
            and got.dtype == expected.dtype
            and got.shape == expected.shape
            and torch.equal(_bits(got), _bits(expected))
        )
        if not same:
            raise WrongDataError(f"tensor {where} was not loaded bit for bit")
    elif isinstance(expected, list) and isinstance(got, list) and len(got) == len(expected):
        for index, (got_item, expected_item) in enumerate(zip(got, expected, strict=True)):
            assert_identical(got_item, expected_item, f"{where}[{index}]")
    elif isinstance(expected, dict):
        if not isinstance(got, dict) or got.keys() != expected.keys():
            raise WrongDataError(
                f"{where or 'the state dict'} has keys {sorted(map(str, got))}, expected {sorted(map(str, expected))}"
            )
        for key, item in expected.items():
            assert_identical(got[key], item, f"{where}.{key}" if where else str(key))
    elif got != expected:
        raise WrongDataError(f"{where} is {got!r}, expected {expected!r}")


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes, so that -0.0 differs from 0.0 and NaN equals itself."""
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8)


def _part_to_load(full: dict[str, Any], model_only: bool) -> dict[str, Any]:
    return {"model": full["model"]} if model_only else full


def _wanted(fqn: str, model_only: bool) -> bool:
    return not model_only or fqn.startswith("model.")


def local_checkpoint(ctx: Context) -> Path:
    """The tmpfs copy of the checkpoint the driver makes from s3rver: what the memory floor loads."""
    return Path(ctx.local_directory) / "checkpoint"


def prepare_checkpoint(ctx: Context, endpoint: Endpoint, fs: Any, model_only: bool) -> int:
    """Store the checkpoint if missing, copy it into memory from the timing server, return the bytes a load needs."""
    uri = f"s3://{ctx.checkpoint_path}"
    if not fs.exists(f"{ctx.checkpoint_path}/.metadata"):
        writer = S3StorageWriter(uri, thread_count=4, **endpoint.storage_options, **UPLOAD_OPTIONS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no process group: a single-process save is what we want
            save(state_dict(ctx), storage_writer=writer)
    local = local_checkpoint(ctx)
    if not endpoint.counted and not (local / ".metadata").exists():
        local.mkdir(parents=True, exist_ok=True)
        for path in fs.ls(ctx.checkpoint_path, detail=False):
            fs.get_file(path, str(local / path.rsplit("/", 1)[-1]))
    # The planned items' bytes, plus the .metadata file every load reads in full.
    metadata = pickle.loads(fs.cat_file(f"{ctx.checkpoint_path}/.metadata"))
    needed = fs.size(f"{ctx.checkpoint_path}/.metadata")
    for index, stored in metadata.storage_data.items():
        if _wanted(index.fqn, model_only):
            needed += stored.length
    return int(needed)


@functools.lru_cache(maxsize=1)
def _local_metadata(directory: str) -> Metadata:
    metadata: Metadata = pickle.loads((Path(directory) / "checkpoint" / ".metadata").read_bytes())
    return metadata


def zeroed_target(ctx: Context, model_only: bool) -> dict[str, Any]:
    """A load target built from the checkpoint's ``.metadata`` alone: zero tensors of each planned shape and dtype,
    placeholders for everything else, nested as the saved state dict was.

    Built without the state dict itself, so that a fresh process's memory before
    the load holds nothing the load will not hold too.
    """
    metadata = _local_metadata(ctx.local_directory)
    flat: dict[str, Any] = {}
    for fqn, stored in metadata.state_dict_metadata.items():
        if not _wanted(fqn, model_only):
            continue
        if isinstance(stored, TensorStorageMetadata):
            flat[fqn] = torch.zeros(stored.size, dtype=stored.properties.dtype)
        else:
            flat[fqn] = NOT_LOADED
    mapping = {fqn: path for fqn, path in (metadata.planner_data or {}).items() if fqn in flat}
    target: dict[str, Any] = unflatten_state_dict(flat, mapping)
    return target


@functools.lru_cache(maxsize=2)
def _expected_flat(sizes: Sizes, seed: int, model_only: bool) -> dict[str, Any]:
    flat, _ = flatten_state_dict(_part_to_load(_state_dict(sizes, seed), model_only))
    return dict(flat)


def assert_loaded(target: dict[str, Any], ctx: Context, model_only: bool) -> None:
    """Raise ``WrongDataError`` unless ``target`` holds, key by flattened key, exactly the saved state dict.

    Compared flattened: DCP names the optimizer's integer state keys as
    strings, so a target shaped from ``.metadata`` has ``"0"`` where the
    saved dict had ``0``; the values are what must match.
    """
    flat, _ = flatten_state_dict(target)
    assert_identical(dict(flat), _expected_flat(ctx.sizes, ctx.seed, model_only))


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.nelement() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(item) for item in value.values())
    if isinstance(value, list):
        return sum(_tensor_bytes(item) for item in value)
    return 0


class CheckpointLoadTrial(Trial):
    """One load per run, with a new storage reader each time, as a training job resuming would."""

    def __init__(
        self,
        ctx: Context,
        model_only: bool,
        make_reader: Callable[[], Any],
        counter: RequestCounter | None = None,
    ) -> None:
        super().__init__(counter)
        self._ctx = ctx
        self._model_only = model_only
        self._make_reader = make_reader
        self._target: dict[str, Any] = {}
        self._filesystems = OwnFilesystems()

    def before_run(self) -> None:
        # Each load must find zeros, not the last load's data.
        self._target = zeroed_target(self._ctx, self._model_only)

    def run(self) -> dict[str, Any]:
        reader = self._make_reader()
        self._filesystems.remember(reader)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no process group: a single-process load is what we want
            load(self._target, storage_reader=reader)
        return self._target

    def verify(self, result: dict[str, Any]) -> None:
        assert_loaded(result, self._ctx, self._model_only)
        # A worker keeps a trial per endpoint: only a run in progress may hold a loaded copy.
        self._target = {}

    def kept_bytes(self) -> int | None:
        return _tensor_bytes(self._target)

    def own_stats(self) -> TransferStats | None:
        return self._filesystems.stats()


def _torch_reader(protocol: str, **options: Any) -> CheckpointBuild:
    """torch's own ``FsspecReader`` on an fsspec URL."""

    def build(ctx: Context, endpoint: Endpoint, model_only: bool) -> Trial:
        storage_options, counter = storage_options_with_counter(endpoint, **options)
        uri = f"{protocol}://{ctx.checkpoint_path}"
        return CheckpointLoadTrial(ctx, model_only, lambda: FsspecReader(uri, **storage_options), counter)

    return build


def _our_reader(constructor: Callable[[], Any] | None = None, **reader_options: Any) -> CheckpointBuild:
    def build(ctx: Context, endpoint: Endpoint, model_only: bool) -> Trial:
        storage_options, counter = storage_options_with_counter(endpoint)
        uri = f"s3://{ctx.checkpoint_path}"

        def make() -> Any:
            chosen = constructor() if constructor is not None else None
            return S3StorageReader(uri, chosen, **reader_options, **storage_options)

        return CheckpointLoadTrial(ctx, model_only, make, counter)

    return build


def _s3tc_reader(strategy: str) -> CheckpointBuild:
    """s3torchconnector's ``S3StorageReader``, its file system's client pointed at the local endpoint.

    Its reader takes no endpoint, but its ``S3FileSystem`` takes a ready
    ``S3Client``: the reader is built, then given a file system of the same
    strategy on a client that has one.
    """

    def build(ctx: Context, endpoint: Endpoint, model_only: bool) -> Trial:
        from s3torchconnector import S3ReaderConstructor as S3tcConstructor
        from s3torchconnector.dcp import S3StorageReader as S3tcStorageReader
        from s3torchconnector.dcp.s3_file_system import S3FileSystem as S3tcFileSystem

        uri = f"s3://{ctx.checkpoint_path}"

        def make() -> Any:
            constructor = getattr(S3tcConstructor, strategy)()
            reader = S3tcStorageReader(REGION, uri, reader_constructor=constructor)
            reader.fs = S3tcFileSystem(REGION, s3_client=s3tc_client(endpoint), reader_constructor=constructor)
            return reader

        return CheckpointLoadTrial(ctx, model_only, make)

    return build


def _memory_floor(ctx: Context, endpoint: Endpoint, model_only: bool) -> Trial:
    """torch's ``FileSystemReader`` on the tmpfs copy: the same load with every byte already in memory."""
    local = str(local_checkpoint(ctx))
    return CheckpointLoadTrial(ctx, model_only, lambda: FileSystemReader(local))


def _network_floor(ctx: Context, endpoint: Endpoint, model_only: bool) -> Trial:
    """The ``.metadata`` and every planned item's bytes, ranges known in advance; ``torch.load`` only to verify."""
    bucket, _, prefix = ctx.checkpoint_path.partition("/")
    fetcher = RangeFetcher(endpoint)  # the build reads this endpoint's own .metadata, outside the clock
    metadata_bytes = fetcher.fetch([(f"{prefix}/.metadata", None, None)], bucket)[0]
    metadata: Metadata = pickle.loads(metadata_bytes)
    items = [
        (index.fqn, f"{prefix}/{stored.relative_path}", stored.offset, stored.length)
        for index, stored in metadata.storage_data.items()
        if _wanted(index.fqn, model_only)
    ]
    pieces = [(f"{prefix}/.metadata", None, None), *plan_pieces((key, o, o + n) for _, key, o, n in items)]

    def check(fetched_pieces: Sequence[Piece], fetched: list[bytes]) -> None:
        if fetched[0] != metadata_bytes:
            raise WrongDataError("the network floor's .metadata differs from the stored one")
        files: dict[str, bytearray] = {}
        for (key, start, end), data in zip(fetched_pieces[1:], fetched[1:], strict=True):
            assert start is not None and end is not None
            # A file-sized buffer of zeros holding only the fetched bytes: pages never written cost nothing.
            buffer = files.setdefault(key, bytearray(max(o + n for _, k, o, n in items if k == key)))
            buffer[start:end] = data
        loaded = {fqn: torch.load(io.BytesIO(files[key][o : o + n]), weights_only=False) for fqn, key, o, n in items}
        assert_identical(loaded, _expected_flat(ctx.sizes, ctx.seed, model_only))

    return NetworkFloorTrial(endpoint, bucket, pieces, check)


SLOW_ON_LINK = 1
"""Measured runs through the link for readers that fetch the checkpoint 2.5x over, on one connection at a time."""


def _contenders(model_only: bool) -> tuple[Contender, ...]:
    choices: list[tuple[str, Kind, str, CheckpointBuild, int | None]] = [
        ("torch-s3fs", "peer", "torch `FsspecReader` on `s3://` (s3fs defaults)", _torch_reader("s3"), SLOW_ON_LINK),
        (
            "s3tc-dcp_optimized",
            "peer",
            "s3tc `S3StorageReader`, `dcp_optimized()`",
            _s3tc_reader("dcp_optimized"),
            None,
        ),
        ("s3tc-sequential", "peer", "s3tc `S3StorageReader`, `sequential()`", _s3tc_reader("sequential"), None),
        (
            "s3tc-range_based",
            "peer",
            "s3tc `S3StorageReader`, `range_based()`",
            _s3tc_reader("range_based"),
            SLOW_ON_LINK,
        ),
        (
            "torch-sequential",
            "ours",
            'torch `FsspecReader` on `s3reader://`, `reader="sequential"`',
            _torch_reader("s3reader", reader="sequential"),
            None,
        ),
        ("dcp_optimized", "ours", "`S3StorageReader` (default `dcp_optimized()`)", _our_reader(), None),
        ("dcp_optimized-nonatomic", "ours", "`S3StorageReader(atomic=False)`", _our_reader(atomic=False), None),
        ("memory-floor", "memory-floor", "torch `FileSystemReader` on a tmpfs copy", _memory_floor, None),
        (
            "network-floor",
            "network-floor",
            "boto3: `.metadata` + planned items, ranges of at most 16 MiB, 8 threads, nothing parsed",
            _network_floor,
            None,
        ),
    ]
    return tuple(
        Contender(key, kind, label, _for_load(make, model_only), as_shipped=key == "dcp_optimized", link_runs=runs)
        for key, kind, label, make, runs in choices
    )


def _for_load(make: CheckpointBuild, model_only: bool) -> Build:
    def build(ctx: Context, endpoint: Endpoint) -> Trial:
        return make(ctx, endpoint, model_only)

    return build


_NOTES_COMMON = (
    "torch's `FsspecReader` opens each `.distcp` file and loads item after item; `torch.load` of a tensor reads a few "
    "bytes at the item's start, then the zip records at its end, then the data from near its start. A read-ahead cache"
    " (s3fs: 50 MiB past each miss) or a read buffer (`range_based`: 8 MiB per small read) turns each of those jumps "
    "into a fetch of bytes it later fetches again. `sequential` streams each file once from its start as far as the "
    "reads reach. `S3StorageReader` sorts the plan and hands its byte ranges to the `dcp_optimized` reader before the "
    "first read, so it fetches only planned items (a gap is read through only when cheaper than a new request: "
    "2 MB by default), reads two files at once, fetches the next range groups ahead, and learns each "
    "file's size from its first GET (no HEAD). s3tc's `dcp_optimized()` does the same on its native client; its "
    "`sequential()` fetches each whole file and `range_based()` reads through an 8 MiB buffer. By default our "
    "`S3StorageReader` also stages the loaded data until every read has "
    "succeeded (`atomic=True`): the tensors torch loads are kept (not copied) until then, which costs memory for "
    "them (the *beyond state dict* column) and little time; the `atomic=False` row "
    "shows the load without it. Each run builds a new storage reader (for `S3StorageReader` a new filesystem and "
    "client), as a job resuming from a checkpoint would. The memory floor is torch's `FileSystemReader` on a tmpfs "
    "copy of the checkpoint: the same deserialization and copies, no network. The network floor fetches the "
    "`.metadata` and the planned items' bytes on 8 connections and deserializes nothing."
)

DCP_FULL = Workload(
    key="dcp_full",
    title="DCP checkpoint: full load (model + optimizer)",
    what="`dcp.load` of the whole model + Adam state dict",
    contenders=_contenders(model_only=False),
    notes=_NOTES_COMMON,
    prepare=functools.partial(prepare_checkpoint, model_only=False),
    fresh_memory=True,
)

DCP_PARTIAL = Workload(
    key="dcp_partial",
    title='DCP checkpoint: partial load (only the "model" keys)',
    what='`dcp.load` of a target holding only the `"model"` keys; the optimizer state is skipped',
    contenders=_contenders(model_only=True),
    notes=_NOTES_COMMON
    + " In a partial load the wanted items are interleaved with unwanted ones in each file: the gaps between them "
    "decide how much a coalescing or read-ahead reader fetches in vain. A reader that streams ahead (`sequential`, "
    "our parts in flight) may have GETs under way for bytes nobody reads when a file is closed: they are cancelled, "
    "but the server has already sent some or all of their bodies, which the neutral count includes and `fs.stats` "
    "(bytes received) does not.",
    prepare=functools.partial(prepare_checkpoint, model_only=True),
    fresh_memory=True,
)

WORKLOADS = {DCP_FULL.key: DCP_FULL, DCP_PARTIAL.key: DCP_PARTIAL}
