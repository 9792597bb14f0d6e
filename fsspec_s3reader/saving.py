"""PyTorch Distributed Checkpoint on S3, the saving half: ``S3StorageWriter``.

torch's ``FsspecWriter`` plans the save and serializes the tensors; this
writer changes where the bytes go. Each file is an ``ObjectUpload`` (parts
sent while torch serializes the next tensors), ``.metadata`` is one
``PutObject`` sent after every file is complete, and a save first removes the
``.metadata`` a previous save left at the same path, before any data file is
replaced. So a ``.metadata`` under a path always belongs to a complete save.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch.distributed.checkpoint._fsspec_filesystem import FileSystem, FsspecWriter
from torch.distributed.checkpoint.filesystem import CURRENT_DCP_VERSION
from torch.distributed.checkpoint.metadata import Metadata
from torch.distributed.checkpoint.planner import SavePlan, SavePlanner
from torch.distributed.checkpoint.storage import WriteResult
from torch.futures import Future

from .checkpoint_location import S3CheckpointLocation, checkpoint_uri, filesystem_url
from .transport.upload import (
    DEFAULT_UPLOAD_PART_SIZE,
    DEFAULT_UPLOAD_PARTS_IN_FLIGHT,
    ObjectUpload,
    UploadSettings,
)

logger = logging.getLogger(__name__)

DEFAULT_THREAD_COUNT = 2
"""Files a rank writes at once, one thread serializing each while its parts travel."""


def _check_count(name: str, value: Any, least: int, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int ({meaning}), got {value!r}")
    if value < least:
        raise ValueError(f"{name} must be at least {least} ({meaning}), got {value}")


def _check_flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


class _UploadingFileSystem(FileSystem):
    """torch's fsspec ``FileSystem`` whose files opened for writing are ``ObjectUpload``s; the rest is torch's."""

    fs: Any

    def __init__(self, fs: Any, settings: UploadSettings) -> None:
        super().__init__()
        self.fs = fs
        self.settings = settings
        self.failures: list[BaseException] = []
        """What failed a file since the writer last cleared it; torch's writer threads drop their errors."""

    @contextmanager
    def create_stream(self, path: str | os.PathLike[str], mode: str) -> Iterator[Any]:
        if mode != "wb":
            with super().create_stream(path, mode) as stream:
                yield stream
            return
        bucket, key, _ = self.fs.split_path(os.fspath(path))
        upload = ObjectUpload(self.fs.object_calls, bucket, key, self.settings)
        try:
            yield upload
            upload.close()  # torch closes it already; a second close does nothing
            self.fs.invalidate_cache(f"{bucket}/{key}")  # what the filesystem listed of it is stale now
        except BaseException as exc:
            self.failures.append(exc)
            upload.abort()
            raise


class S3StorageWriter(S3CheckpointLocation, FsspecWriter):
    """Saves a DCP checkpoint to S3 (``s3://`` or ``s3reader://``) with the same storage options as the reader.

    Args:
        path: the checkpoint's URI, ``s3://bucket/prefix`` or ``s3reader://bucket/prefix``.
        single_file_per_rank: one file per thread for each rank (default),
            or one file per tensor or object.
        thread_count: files each rank writes at once (default 2), one thread
            serializing each while its parts upload.
        per_thread_copy_ahead: bytes copied from the GPU ahead of writing
            (torch's own option; CPU tensors ignore it).
        overwrite: save over an existing checkpoint at ``path`` (its
            ``.metadata`` is removed before the first file is replaced);
            ``False`` raises instead.
        upload_part_size: bytes per part of a file's multipart upload
            (default 16 MiB, at least 5 MiB); a file smaller than one part is
            one ``PutObject``.
        upload_parts_in_flight: parts of one file uploading at once (default
            4). Each file holds at most ``upload_part_size *
            (upload_parts_in_flight + 1)`` bytes, 80 MiB by default.
        storage_options: s3fs options (``endpoint_url``, ``key``, ``secret``,
            ``client_kwargs``, ``s3_additional_kwargs``, ...) and filesystem
            options. A failed request is retried ``read_attempts`` times in
            all, waiting ``retry_backoff`` seconds and more between tries.

    A failed save leaves no ``.metadata``, and no object under a key whose
    upload did not complete (files completed before the failure stay).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        single_file_per_rank: bool = True,
        thread_count: int = DEFAULT_THREAD_COUNT,
        per_thread_copy_ahead: int = 10_000_000,
        overwrite: bool = True,
        *,
        upload_part_size: int = DEFAULT_UPLOAD_PART_SIZE,
        upload_parts_in_flight: int = DEFAULT_UPLOAD_PARTS_IN_FLIGHT,
        **storage_options: Any,
    ) -> None:
        checkpoint = checkpoint_uri(path)
        _check_flag("single_file_per_rank", single_file_per_rank)
        _check_flag("overwrite", overwrite)
        _check_count("thread_count", thread_count, 1, "files written at once, one thread each")
        _check_count("per_thread_copy_ahead", per_thread_copy_ahead, 0, "bytes copied from the GPU ahead")
        settings = UploadSettings(upload_part_size, upload_parts_in_flight)
        super().__init__(
            filesystem_url(checkpoint),
            single_file_per_rank=single_file_per_rank,
            sync_files=False,  # fsync is for local disks; an S3 object exists only once complete
            thread_count=thread_count,
            per_thread_copy_ahead=per_thread_copy_ahead,
            overwrite=overwrite,
            **storage_options,
        )
        filesystem = self.fs.fs
        self.fs = _UploadingFileSystem(filesystem, dataclasses.replace(settings, retry_policy=filesystem.retry_policy))
        self.path = checkpoint

    @property
    def upload_settings(self) -> UploadSettings:
        """How each file is uploaded: part size, parts in flight, and the filesystem's retry policy."""
        settings: UploadSettings = self.fs.settings
        return settings

    def reset(self, checkpoint_id: str | os.PathLike[str] | None = None) -> None:
        super().reset(None)
        self._move_to(checkpoint_id)

    def prepare_global_plan(self, plans: list[SavePlan]) -> list[SavePlan]:
        # Runs once per save (on the coordinator, or on each rank that writes
        # its own metadata), before any rank receives its plan and writes a
        # file: the old checkpoint stops claiming to be complete before its
        # files are replaced.
        path = self._metadata_path_of_this_save()
        if self.fs.exists(path):
            logger.info("removing %s: a new checkpoint replaces the one saved there", path)
            self.fs.rm_file(path)
        prepared: list[SavePlan] = super().prepare_global_plan(plans)
        return prepared

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future[list[WriteResult]]:
        """torch's writing of this rank's files, and a failure in any of its threads raised here.

        torch starts ``thread_count - 1`` threads and joins them, but an
        exception in one of them ends only that thread: the save would go on
        to write a ``.metadata`` for items that were never stored.
        """
        started = time.perf_counter()
        self.fs.failures.clear()
        written: Future[list[WriteResult]] = super().write_data(plan, planner)
        if self.fs.failures:
            raise self.fs.failures[0]
        results = written.value()
        if len(results) != len(plan.items):
            raise RuntimeError(
                f"saving {self.path}: only {len(results)} of this rank's {len(plan.items)} items were written "
                "(a writer thread failed; its error is on stderr); no .metadata was written"
            )
        files = {result.storage_data.relative_path for result in results}
        logger.info(
            "saved %d items in %d files (%d bytes) to %s in %.2f s",
            len(results),
            len(files),
            sum(result.storage_data.length for result in results),
            self.path,
            time.perf_counter() - started,
        )
        return written

    def finish(self, metadata: Metadata, results: list[list[WriteResult]]) -> None:
        """Write ``.metadata`` as one ``PutObject``: it appears whole, and only after every file is complete.

        The same metadata torch's ``finish`` writes, without its temporary
        file and rename (on S3 a copy and two deletes).
        """
        metadata.version = CURRENT_DCP_VERSION
        metadata.storage_data = {result.index: result.storage_data for rank in results for result in rank}
        metadata.storage_meta = self.storage_meta()
        with self.fs.create_stream(self._metadata_path_of_this_save(), "wb") as stream:
            pickle.dump(metadata, stream)

    def _metadata_path_of_this_save(self) -> Any:
        """``.metadata``, or ``__<rank>.metadata`` when each rank writes its own (``use_collectives=False``)."""
        if not self.use_collectives and self.rank is not None:
            return self._get_metadata_path(self.rank)
        return self._get_metadata_path()
