"""PyTorch Distributed Checkpoint on S3: a storage reader that fetches only what the load plan needs.

``S3StorageReader`` is torch's ``FsspecReader`` on the ``s3reader`` filesystem,
plus two things: before torch reads a byte, it sorts the plan by file and
offset and hands the ranges to the DCP-optimized reader; and it stages what it
reads until the whole plan has arrived, so a failed load leaves the caller's
state dict as it was. ``S3StorageWriter`` (in ``saving.py``, importable from
here too) saves with the same storage options.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import fnmatch
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader
from torch.distributed.checkpoint.metadata import Metadata, TensorStorageMetadata
from torch.distributed.checkpoint.planner import LoadPlan, LoadPlanner
from torch.futures import Future

from .checkpoint_location import METADATA_FILE as _METADATA_FILE
from .checkpoint_location import S3CheckpointLocation as _S3CheckpointLocation
from .checkpoint_location import checkpoint_uri as _checkpoint_uri
from .checkpoint_location import filesystem_url as _filesystem_url
from .constructor import DCPOptimizedConstructor, ReaderConstructor
from .load_pipeline import DEFAULT_MEMORY_BUDGET, LoadPipeline, gap_for_link
from .load_report import LoadReport, Progress, validate_progress
from .metadata_fallback import metadata_after_failure, raise_if_unread
from .plan import PlannedLoad
from .readers.dcp_optimized import DCPOptimizedS3Reader
from .saving import S3StorageWriter as S3StorageWriter  # its home is saving.py; imported from here too
from .staging import StagedLoad
from .transport.link_estimate import LinkEstimate
from .uris import object_uri

logger = logging.getLogger(__name__)

DEFAULT_FILES_IN_FLIGHT = 2
"""Checkpoint files a load reads at once: one being deserialized while the next one's bytes arrive."""

METADATA_KEPT_SECONDS = 10.0
"""How long the ``.metadata`` bytes fetched by the reader's check may serve torch's first read of it.

Long enough for the load that follows the reader's construction; a reader
built long before its load reads ``.metadata`` again, so that it never plans
with the metadata of a checkpoint saved over since.
"""


def _reader_choice(reader_constructor: ReaderConstructor | None, named: Any) -> Any:
    """What a storage reader hands its filesystem as ``reader``: the object, the name, or ``dcp_optimized``.

    Strategy options stay in the storage options, where the filesystem reads
    them as it does for any fsspec user. A DCP-optimized constructor object is
    copied, so the one the caller holds never receives a load's ranges.
    """
    if reader_constructor is not None and named is not None:
        raise ValueError(
            "choose the strategy once: pass reader_constructor=..., or reader='name' with its options, not both"
        )
    choice = reader_constructor if reader_constructor is not None else named
    if choice is None:
        return DCPOptimizedS3Reader.strategy
    return choice.fresh() if isinstance(choice, DCPOptimizedConstructor) else choice


class S3StorageReader(_S3CheckpointLocation, FsspecReader):
    """Loads a DCP checkpoint from S3, fetching only the byte ranges the load plan reads.

    Args:
        path: the checkpoint's URI, ``s3://bucket/prefix`` or ``s3reader://bucket/prefix``.
        reader_constructor: how files are read; default
            ``S3ReaderConstructor.dcp_optimized()``. A DCP-optimized constructor
            is copied, so readers never share a load's ranges. A strategy may
            also be named in the storage options instead (``reader="range_based",
            buffer_size=0``).
        atomic: keep the loaded tensors and objects aside until every read
            has succeeded, then write them into the state dict. A failed load
            then leaves the state dict untouched. Costs CPU memory for the
            tensors this rank loads, held until the end (no extra copy); pass
            ``False`` to write each one in place as soon as it is read, as
            torch's own readers do.
        files_in_flight: how many of the checkpoint's files are read at once
            (default 2), each in a thread of its own; every file adds up to
            ``part_size * max_parts_in_flight`` bytes in flight (64 MiB by
            default), plus the ``prefetch_bytes`` of the ``dcp_optimized``
            strategy (32 MiB by default). 1 reads them one after another.
            torch then calls the planner from several threads at once; with
            ``atomic=False`` and a planner of your own that is not
            thread-safe, pass 1.
        progress: draw a progress bar of the bytes loaded (on stderr, rank 0
            only, needs tqdm). ``True`` draws it only when stdout and stderr
            are terminals, so logs and pipes stay clean; ``"always"`` draws
            it wherever stderr goes. Off by default.
        storage_options: s3fs options (``endpoint_url``, ``key``, ``secret``,
            ``client_kwargs``, ...) and filesystem options (``part_size``,
            ``read_attempts``, ``read_timeout``, ``retry_backoff``, ...).

    Raises ``FileNotFoundError`` at once when no checkpoint is at ``path``.
    Each load logs one line at INFO on this module's logger: files, GET
    requests, bytes fetched against bytes the plan needs, and seconds.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        reader_constructor: ReaderConstructor | None = None,
        *,
        atomic: bool = True,
        files_in_flight: int = DEFAULT_FILES_IN_FLIGHT,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        progress: Progress = False,
        **storage_options: Any,
    ) -> None:
        checkpoint = _checkpoint_uri(path)
        if not isinstance(atomic, bool):
            raise TypeError(f"atomic must be True or False, got {atomic!r}")
        if isinstance(memory_budget, bool) or not isinstance(memory_budget, int):
            raise TypeError(f"memory_budget must be an int number of bytes, got {memory_budget!r}")
        if memory_budget < 0:
            raise ValueError(
                f"memory_budget must be >= 0 bytes (0 fetches only what torch waits for), got {memory_budget}"
            )
        reader = _reader_choice(reader_constructor, storage_options.pop("reader", None))
        if isinstance(files_in_flight, bool) or not isinstance(files_in_flight, int):
            raise TypeError(f"files_in_flight must be an int (1 reads one file at a time), got {files_in_flight!r}")
        if files_in_flight < 1:
            raise ValueError(f"files_in_flight must be >= 1 (1 reads one file at a time), got {files_in_flight}")
        self._atomic = atomic
        self._files_in_flight = files_in_flight
        self._memory_budget = memory_budget
        self._progress = validate_progress(progress)
        # Fixed by the caller, or learned from the link by each load.
        self._part_size: int | None = storage_options.get("part_size")
        self._parts_in_flight: int | None = storage_options.get("max_parts_in_flight")
        self._link = LinkEstimate()
        self._metadata_kept_at = 0.0
        self.last_load: Any = None
        """The last load's fetching (``PipelineStats``: budget, peak bytes held, part sizes, the link), or None."""
        # A filesystem of our own (not fsspec's shared instance), so this load's
        # constructor and its ranges are seen by no other load.
        super().__init__(_filesystem_url(checkpoint), reader=reader, skip_instance_cache=True, **storage_options)
        self._reader_constructor: ReaderConstructor = self.filesystem.reader_constructor
        self.path = checkpoint
        self._metadata_failure: Exception | None = None
        self._require_checkpoint()

    @property
    def reader_constructor(self) -> ReaderConstructor:
        return self._reader_constructor

    def reset(self, checkpoint_id: str | os.PathLike[str] | None = None) -> None:
        super().reset(None)
        if isinstance(self._reader_constructor, DCPOptimizedConstructor):
            self._reader_constructor.clear()
        self.last_load = None
        if checkpoint_id:
            self._move_to(checkpoint_id)
            self._require_checkpoint()

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        """The checkpoint's ``.metadata`` (torch's per-rank ``__<rank>.metadata`` with ``rank=``).

        torch's load catches any error of the first call, tries the per-rank
        file, and when that fails too raises an ``AssertionError`` that keeps
        only the messages. So after ``.metadata`` failed for any reason but
        its absence (retries spent, access denied, a corrupt file), the
        per-rank call sends no request and returns a stand-in that raises the
        original error at its first use, still inside torch's planning step:
        torch then reports that very error in ``CheckpointException.failures``,
        and the read was retried once (``read_attempts`` requests), not twice.
        """
        if kwargs.get("rank") is None:
            self._metadata_failure = None
            if time.monotonic() - self._metadata_kept_at > METADATA_KEPT_SECONDS:
                self._use_sources({})
            try:
                return self._read_metadata_file(*args, **kwargs)
            except Exception as exc:
                self._metadata_failure = exc
                raise
            finally:
                self._use_sources({})  # the bytes fetched with the check serve one read: later ones ask again
        failure = self._metadata_failure
        if failure is None:  # not torch's fallback after a failed read: read the per-rank file
            return self._read_metadata_file(*args, **kwargs)
        return metadata_after_failure(failure, lambda: self._read_metadata_file(*args, **kwargs), self.path)

    def set_up_storage_reader(self, metadata: Metadata, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        raise_if_unread(metadata)
        super().set_up_storage_reader(metadata, is_coordinator, *args, **kwargs)

    def _read_metadata_file(self, *args: Any, **kwargs: Any) -> Metadata:
        try:
            return super().read_metadata(*args, **kwargs)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                errno.ENOENT, f"no DCP checkpoint metadata at {self.path}", str(exc.filename or self.path)
            ) from exc

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        # The plan read once: the DCP strategy gets its ranges from it, the
        # report its sizes, and the files are read front to back in its order
        # while the pipeline fetches them ahead.
        planned = PlannedLoad.of(plan, self.storage_data, self.path)
        with LoadReport(planned, self.filesystem, self._progress) as report, self._pipeline(planned) as pipeline:
            if not self._atomic:
                self._read_files(planned, report.watch(planner))
            else:
                staged = StagedLoad(planner)
                self._read_files(planned, report.watch(staged))
                staged.commit()
        self._use_sources({})
        if pipeline is not None:
            self.last_load = pipeline.stats
        logger.info("%s", report.summary())
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def _read_files(self, planned: PlannedLoad, planner: LoadPlanner) -> None:
        """torch's reading of each file, up to ``files_in_flight`` files at a time.

        While one file's tensors are deserialized, the next files' bytes are
        already travelling. Each file is read by torch's own ``read_data`` on a
        plan of that file's items alone; the first error stops files not yet
        started and is raised once the running ones have finished.
        """
        file_plans = [file.plan for file in planned.files]
        if self._files_in_flight == 1 or len(file_plans) <= 1:
            for file_plan in file_plans:
                self._read_one_file(file_plan, planner)
            return
        workers = min(self._files_in_flight, len(file_plans))
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="s3reader-dcp") as pool:
            futures = [pool.submit(self._read_one_file, file_plan, planner) for file_plan in file_plans]
            concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
            for future in futures:
                future.cancel()
        for future in futures:
            if not future.cancelled() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]

    def _read_one_file(self, file_plan: LoadPlan, planner: LoadPlanner) -> None:
        super().read_data(file_plan, planner).wait()

    def _pipeline(self, planned: PlannedLoad) -> contextlib.AbstractContextManager[LoadPipeline | None]:
        """The load's fetching ahead, for the DCP strategy (others fetch their own way): nothing to do otherwise."""
        constructor = self._reader_constructor
        if not isinstance(constructor, DCPOptimizedConstructor):
            return contextlib.nullcontext()
        constructor.set_ranges(planned.ranges_by_object)
        pipeline = LoadPipeline(
            planned,
            self.filesystem,
            budget=self._memory_budget,
            readers=min(self._files_in_flight, max(1, len(planned.files))),
            max_gap_size=gap_for_link(constructor.given_options, self._link),
            link=self._link,
            part_size=self._part_size,
            max_parts_in_flight=self._parts_in_flight,
        )
        self._use_sources(pipeline.sources, pipeline.max_gap_size)
        return pipeline

    def _use_sources(self, sources: dict[str, Any], max_gap_size: float | None = None) -> None:
        if isinstance(self._reader_constructor, DCPOptimizedConstructor):
            self._reader_constructor.set_sources(sources, max_gap_size)

    def _require_checkpoint(self) -> None:
        """Fail now, not inside torch's collective, when nothing is stored at the path.

        ``.metadata`` is looked up through this filesystem's transport (one
        HEAD, tried ``read_attempts`` times, as every request of a load): an
        endpoint that keeps failing raises ``ReadRetriesExhaustedError``, a
        refusal ``PermissionError``, both naming the file.
        """
        fs = self.filesystem
        location = object_uri(self.path)
        bucket, key, _ = fs.split_path(f"{location}/{_METADATA_FILE}")
        # A GET of its first bytes rather than a HEAD: the answer that says the checkpoint is there
        # also brings .metadata (all of it, when small), which torch reads next.
        transport = fs.object_transport(bucket, key, link_estimate=self._link, reads_fit_link=False)
        try:
            transport.get_object_info()
            self._use_sources({f"{location}/{_METADATA_FILE}": transport})
            self._metadata_kept_at = time.monotonic()
            return
        except FileNotFoundError:
            pass
        if fs.exists(location):  # no .metadata, but objects: per-rank metadata, or a save that did not finish
            return
        raise FileNotFoundError(
            errno.ENOENT,
            f"no DCP checkpoint at {self.path} (no {_METADATA_FILE} file or objects under it)",
            self.path,
        )


def local_load_plan(metadata: Metadata, keys: Sequence[str]) -> LoadPlan:
    """The plan torch's default planner makes for loading ``keys`` of a checkpoint, without a state dict.

    The target is shaped like the stored one for ``keys``: meta tensors (no
    memory) and stand-ins for objects. Nothing is read.
    """
    from torch.distributed.checkpoint.default_planner import create_default_local_load_plan

    target: dict[str, Any] = {}
    for fqn in keys:
        stored = metadata.state_dict_metadata[fqn]
        if isinstance(stored, TensorStorageMetadata):
            target[fqn] = torch.empty(stored.size, dtype=stored.properties.dtype, device="meta")
        else:
            target[fqn] = None
    return create_default_local_load_plan(target, metadata)


def matching_keys(metadata: Metadata, patterns: Sequence[str]) -> list[str]:
    """The checkpoint's dotted keys that match any of the ``fnmatch`` globs ``patterns`` (``"model.*"``)."""
    return [fqn for fqn in metadata.state_dict_metadata if any(fnmatch.fnmatchcase(fqn, p) for p in patterns)]
