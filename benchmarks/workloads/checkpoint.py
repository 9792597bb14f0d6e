"""Load a model + optimizer DCP checkpoint from S3, in full and only the model's part.

Saved once per server by the driver with ``S3StorageWriter(thread_count=4)``;
every contender loads it into zeroed tensors, and every tensor and object is
compared bit for bit with the state dict that was saved. The ceiling fetches
each planned item's bytes and ``torch.load``s them, as a DCP load does.
"""

from __future__ import annotations

import functools
import io
import pickle
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader
from torch.distributed.checkpoint._nested_dict import flatten_state_dict
from torch.distributed.checkpoint.state_dict_loader import load
from torch.distributed.checkpoint.state_dict_saver import save

from fsspec_s3reader import S3StorageReader, S3StorageWriter, TransferStats

from ..clients import UPLOAD_OPTIONS, RangeFetcher, s3tc_client, storage_options_with_counter
from ..config import Context, Endpoint, Sizes
from ..counting import RequestCounter
from ..trial import Build, Contender, Kind, Trial, Workload, WrongDataError, sum_stats

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


def zeroed_like(value: Any) -> Any:
    """A load target shaped like ``value``: zero tensors, placeholders for everything else."""
    if isinstance(value, torch.Tensor):
        return torch.zeros_like(value)
    if isinstance(value, dict):
        return {key: zeroed_like(item) for key, item in value.items()}
    if isinstance(value, list):  # DCP flattens lists too (the optimizer's param_groups)
        return [zeroed_like(item) for item in value]
    return NOT_LOADED


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


def _prepare(ctx: Context, endpoint: Endpoint, fs: Any, model_only: bool) -> int:
    uri = f"s3://{ctx.checkpoint_path}"
    if not fs.exists(f"{ctx.checkpoint_path}/.metadata"):
        writer = S3StorageWriter(uri, thread_count=4, **endpoint.storage_options, **UPLOAD_OPTIONS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no process group: a single-process save is what we want
            save(state_dict(ctx), storage_writer=writer)
    # The planned items' bytes, plus the .metadata file every load reads in full.
    metadata = pickle.loads(fs.cat_file(f"{ctx.checkpoint_path}/.metadata"))
    needed = fs.size(f"{ctx.checkpoint_path}/.metadata")
    for index, stored in metadata.storage_data.items():
        if _wanted(index.fqn, model_only):
            needed += stored.length
    return int(needed)


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
        self._make_reader = make_reader
        self._expected = _part_to_load(state_dict(ctx), model_only)
        self._target: dict[str, Any] = {}
        self._filesystems: list[Any] = []

    def before_run(self) -> None:
        # Each load must find zeros, not the last load's data.
        self._target = zeroed_like(self._expected)

    def run(self) -> dict[str, Any]:
        reader = self._make_reader()
        self._remember_filesystem(reader)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no process group: a single-process load is what we want
            load(self._target, storage_reader=reader)
        return self._target

    def verify(self, result: dict[str, Any]) -> None:
        assert_identical(result, self._expected)
        # A worker keeps a trial per endpoint: only a run in progress may hold a loaded copy.
        self._target = {}

    def own_stats(self) -> TransferStats | None:
        if not self._filesystems:
            return None
        return sum_stats([fs.stats for fs in self._filesystems])

    def _remember_filesystem(self, reader: Any) -> None:
        fs = getattr(reader.fs, "fs", None)  # torch's FileSystem wrapper holds the fsspec filesystem
        if hasattr(fs, "stats") and all(fs is not known for known in self._filesystems):
            self._filesystems.append(fs)


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
            reader = S3tcStorageReader("us-east-1", uri, reader_constructor=constructor)
            reader.fs = S3tcFileSystem("us-east-1", s3_client=s3tc_client(endpoint), reader_constructor=constructor)
            return reader

        return CheckpointLoadTrial(ctx, model_only, make)

    return build


class CeilingCheckpointTrial(Trial):
    """``.metadata``, then exactly the planned items' byte ranges, 8 GETs at a time, each ``torch.load``ed."""

    def __init__(self, ctx: Context, endpoint: Endpoint, model_only: bool) -> None:
        super().__init__()
        self._fetcher = RangeFetcher(endpoint)
        self._bucket, _, self._prefix = ctx.checkpoint_path.partition("/")
        self._model_only = model_only
        flat, _ = flatten_state_dict(_part_to_load(state_dict(ctx), model_only))
        self._expected: dict[str, Any] = flat

    def run(self) -> dict[str, Any]:
        raw = self._fetcher.fetch([(f"{self._prefix}/.metadata", None, None)], self._bucket)[0]
        metadata = pickle.loads(raw)
        items = [
            (index.fqn, info) for index, info in metadata.storage_data.items() if _wanted(index.fqn, self._model_only)
        ]
        requests = [
            (f"{self._prefix}/{info.relative_path}", info.offset, info.offset + info.length) for _, info in items
        ]
        blobs = self._fetcher.fetch(requests, self._bucket)
        # weights_only=False: non-tensor items (the optimizer's param_groups) are pickled objects.
        return {
            fqn: torch.load(io.BytesIO(blob), weights_only=False) for (fqn, _), blob in zip(items, blobs, strict=True)
        }

    def verify(self, result: dict[str, Any]) -> None:
        assert_identical(result, self._expected)


def _ceiling(ctx: Context, endpoint: Endpoint, model_only: bool) -> Trial:
    return CeilingCheckpointTrial(ctx, endpoint, model_only)


def _contenders(model_only: bool) -> tuple[Contender, ...]:
    choices: list[tuple[str, Kind, str, CheckpointBuild]] = [
        ("torch-s3fs", "peer", "torch `FsspecReader` on `s3://` (s3fs defaults)", _torch_reader("s3")),
        ("s3tc-dcp_optimized", "peer", "s3tc `S3StorageReader`, `dcp_optimized()`", _s3tc_reader("dcp_optimized")),
        ("s3tc-sequential", "peer", "s3tc `S3StorageReader`, `sequential()`", _s3tc_reader("sequential")),
        ("s3tc-range_based", "peer", "s3tc `S3StorageReader`, `range_based()`", _s3tc_reader("range_based")),
        (
            "torch-sequential",
            "ours",
            'torch `FsspecReader` on `s3reader://`, `reader="sequential"`',
            _torch_reader("s3reader", reader="sequential"),
        ),
        ("dcp_optimized", "ours", "`S3StorageReader` (default `dcp_optimized()`)", _our_reader()),
        ("dcp_optimized-nonatomic", "ours", "`S3StorageReader(atomic=False)`", _our_reader(atomic=False)),
        ("ceiling", "ceiling", "boto3: exact item ranges, 8 threads, `torch.load` each", _ceiling),
    ]
    return tuple(
        Contender(key, kind, label, _for_load(make, model_only), as_shipped=key == "dcp_optimized")
        for key, kind, label, make in choices
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
    "them (the peak RSS column) and little time; the `atomic=False` row "
    "shows the load without it. Each run builds a new storage reader (for `S3StorageReader` a new filesystem and "
    "client), as a job resuming from a checkpoint would."
)

DCP_FULL = Workload(
    key="dcp_full",
    title="DCP checkpoint: full load (model + optimizer)",
    what="`dcp.load` of the whole model + Adam state dict",
    contenders=_contenders(model_only=False),
    notes=_NOTES_COMMON,
    prepare=functools.partial(_prepare, model_only=False),
    latency_sensitive=True,
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
    prepare=functools.partial(_prepare, model_only=True),
    latency_sensitive=True,
)

WORKLOADS = {DCP_FULL.key: DCP_FULL, DCP_PARTIAL.key: DCP_PARTIAL}
