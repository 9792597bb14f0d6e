"""Save the DCP workload's checkpoint to S3: our ``S3StorageWriter``, s3torchconnector's, torch's ``FsspecWriter``.

Every run saves the same state dict (the one the DCP loads read) under a
prefix of its own. After the clock, the saved files are fetched through the
server's direct endpoint (not the link) into memory (tmpfs) with the network
floor's parallel client, loaded with torch's ``FileSystemReader`` and
compared bit for bit with the state dict; then the prefix is deleted, so the
servers' disk and memory stay the size of one save.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import s3fs
from torch.distributed.checkpoint._fsspec_filesystem import FsspecWriter
from torch.distributed.checkpoint.filesystem import FileSystemReader
from torch.distributed.checkpoint.state_dict_loader import load
from torch.distributed.checkpoint.state_dict_saver import save

from fsspec_s3reader import S3StorageWriter, TransferStats

from ..clients import REGION, UPLOAD_OPTIONS, RangeFetcher, s3tc_client, storage_options_with_counter
from ..config import Context, Endpoint
from ..counting import RequestCounter
from ..floors import plan_pieces
from ..trial import Build, Contender, OwnFilesystems, Trial, Workload, WrongDataError
from .checkpoint import assert_loaded, prepare_checkpoint, state_dict, zeroed_target

SAVE_RUNS = 3
"""Measured runs on loopback, and no warm-up: every run builds a new writer anyway, the median of three sets a cold
first run aside, and a save checked after the clock costs seconds."""

MakeWriter = Callable[[str], Any]
"""Given the ``s3://bucket/prefix`` URI of one save, the storage writer for it."""


class SaveTrial(Trial):
    """One ``dcp.save`` per run, with a new storage writer each time, as a training job checkpointing would."""

    def __init__(self, ctx: Context, endpoint: Endpoint, make: MakeWriter, counter: RequestCounter | None = None):
        super().__init__(counter)
        self._ctx = ctx
        self._make = make
        self._state = state_dict(ctx)
        self._prefix = ""
        # For the check after the clock: the same server, reached without the link, with plain clients.
        self._check_fs = s3fs.S3FileSystem(skip_instance_cache=True, **ctx.direct(endpoint).storage_options)
        self._fetcher = RangeFetcher(ctx.direct(endpoint))
        self._filesystems = OwnFilesystems()

    def before_run(self) -> None:
        self._prefix = f"{self._ctx.saves_prefix}/{uuid.uuid4().hex}"

    def run(self) -> str:
        writer = self._make(f"s3://{self._prefix}")
        self._filesystems.remember(writer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no process group: a single-process save is what we want
            save(self._state, storage_writer=writer)
        return self._prefix

    def own_stats(self) -> TransferStats | None:
        return self._filesystems.stats()

    def verify(self, result: str) -> None:
        local = Path(tempfile.mkdtemp(prefix="save-check-", dir=self._ctx.local_directory))
        try:
            self._download(result, local)
            target = zeroed_target(self._ctx, model_only=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                load(target, storage_reader=FileSystemReader(str(local)))
            assert_loaded(target, self._ctx, model_only=False)
        finally:
            shutil.rmtree(local, ignore_errors=True)
            self._check_fs.rm(result, recursive=True)

    def _download(self, prefix: str, local: Path) -> None:
        """Every object under ``prefix`` into ``local``, fetched in parallel ranges."""
        bucket = self._ctx.bucket
        sizes = {info["name"].split("/", 1)[1]: int(info["size"]) for info in self._check_fs.ls(prefix, detail=True)}
        if not any(key.endswith("/.metadata") for key in sizes):
            raise WrongDataError(f"the save under {prefix} has no .metadata: {sorted(sizes)}")
        for key, size in sizes.items():
            with open(local / key.rsplit("/", 1)[-1], "wb") as f:
                f.truncate(size)
        pieces = plan_pieces((key, 0, size) for key, size in sizes.items() if size)
        for (key, start, _), data in zip(pieces, self._fetcher.fetch(pieces, bucket), strict=True):
            with open(local / key.rsplit("/", 1)[-1], "r+b") as f:
                f.seek(start or 0)
                f.write(data)


def _ours(**options: Any) -> Build:
    def build(ctx: Context, endpoint: Endpoint) -> Trial:
        storage_options, counter = storage_options_with_counter(endpoint, **UPLOAD_OPTIONS)
        return SaveTrial(ctx, endpoint, lambda uri: S3StorageWriter(uri, **options, **storage_options), counter)

    return build


def _torch_fsspec(ctx: Context, endpoint: Endpoint) -> Trial:
    storage_options, counter = storage_options_with_counter(endpoint, **UPLOAD_OPTIONS)
    return SaveTrial(ctx, endpoint, lambda uri: FsspecWriter(uri, sync_files=False, **storage_options), counter)


def _s3tc(**options: Any) -> Build:
    """s3torchconnector's ``S3StorageWriter``, given a file system on a client that reaches the local endpoint."""

    def build(ctx: Context, endpoint: Endpoint) -> Trial:
        from s3torchconnector.dcp import S3StorageWriter as S3tcStorageWriter
        from s3torchconnector.dcp.s3_file_system import S3FileSystem as S3tcFileSystem

        def make(uri: str) -> Any:
            writer: Any = S3tcStorageWriter(REGION, uri, **options)
            writer.fs = S3tcFileSystem(REGION, s3_client=s3tc_client(endpoint))
            return writer

        return SaveTrial(ctx, endpoint, make)

    return build


def _prepare(ctx: Context, endpoint: Endpoint, fs: Any) -> int:
    """The loads' checkpoint (stored and copied if missing): its ``.metadata`` shapes the check's target, and its
    size is what a save must send."""
    prepare_checkpoint(ctx, endpoint, fs, model_only=False)
    return int(fs.du(ctx.checkpoint_path))


DCP_SAVE = Workload(
    key="dcp_save",
    title="DCP checkpoint: save (model + optimizer)",
    what="`dcp.save` of the model + Adam state dict the loads read",
    contenders=(
        Contender(
            "torch-s3fs",
            "peer",
            "torch `FsspecWriter` on `s3://` (s3fs, `sync_files=False`)",
            _torch_fsspec,
            SAVE_RUNS,
        ),
        Contender("s3tc", "peer", "s3tc `S3StorageWriter` (default `thread_count=1`)", _s3tc(), SAVE_RUNS),
        Contender(
            "writer",
            "ours",
            "`S3StorageWriter` (defaults: `thread_count=2`, parts in parallel)",
            _ours(),
            SAVE_RUNS,
            True,
        ),
        Contender("writer-8", "ours", "`S3StorageWriter(thread_count=8)`", _ours(thread_count=8), SAVE_RUNS),
    ),
    notes=(
        "torch's writers split the state dict into `thread_count` files and write each through one stream, one file "
        "per thread. torch's `FsspecWriter` writes through s3fs's file, which buffers each file and sends it as "
        "multipart upload parts (`default_block_size`, 50 MiB), one part at a time per file. Ours sends each file as "
        "multipart parts of 16 MiB, 4 in flight, while torch serializes the next bytes, and `.metadata` last with "
        "one PUT. s3tc's writer "
        "streams each file through its native client (the CRT), which uploads the parts of one file in parallel. "
        "Uploads to s3rver are sent without aws-chunked checksum trailers (`request_checksum_calculation="
        '"when_required"`), which s3rver 3.7.1 would store as object bytes. Every save is loaded back and compared '
        "bit for bit outside the clock; *other* requests are the uploads' PUTs and POSTs. No warm-up run precedes the "
        "three measured ones."
    ),
    prepare=_prepare,
    uploads=True,
)

WORKLOADS = {DCP_SAVE.key: DCP_SAVE}
