"""What a DCP load tells its user: a progress bar of the bytes loaded, and a one-line summary when it is done.

Both are read off the load plan and the filesystem's counters; neither changes
what is fetched or when.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, TextIO, cast

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.planner import LoadPlanner, ReadItem

from .plan import PlannedLoad
from .staging import ForwardingPlanner
from .units import format_bytes

Progress = bool | Literal["always"]
"""``False`` (no bar), ``True`` (a bar when the output is a terminal), ``"always"`` (a bar wherever stderr goes)."""


def validate_progress(progress: Any) -> Progress:
    if progress is True or progress is False or progress == "always":
        return cast(Progress, progress)
    raise ValueError(f"progress must be True, False or 'always', got {progress!r}")


def current_rank() -> int:
    """This process's rank in the default process group, 0 without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def wants_progress_bar(progress: Progress, rank: int, stdout: TextIO, stderr: TextIO) -> bool:
    """Whether this process draws the bar: rank 0 only, and with ``True`` only when a person is watching.

    The bar is drawn on stderr. With ``True`` it needs both stdout and stderr
    to be terminals, so a job whose output goes to a log file or a pipe gets
    no carriage-return noise in it; ``"always"`` draws it regardless.
    """
    if progress is False or rank != 0:
        return False
    if progress == "always":
        return True
    return _is_terminal(stdout) and _is_terminal(stderr)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def _progress_bar(total: int, description: str) -> Any:
    try:
        from tqdm import tqdm
    except ImportError as exc:
        raise ImportError(
            "progress=True needs tqdm: pip install tqdm (it comes with pip install 'fsspec_s3reader[dcp]')"
        ) from exc
    return tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr)


class _ProgressPlanner(ForwardingPlanner):
    """Advances the bar by an item's stored length each time torch hands the planner a loaded item."""

    def __init__(self, planner: LoadPlanner, bar: Any, lengths: Mapping[Any, int]) -> None:
        super().__init__(planner)
        self._bar = bar
        self._lengths = lengths

    def commit_tensor(self, read_item: ReadItem, tensor: torch.Tensor) -> None:
        super().commit_tensor(read_item, tensor)
        self._bar.update(self._lengths[read_item.storage_index])

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        super().load_bytes(read_item, value)
        self._bar.update(self._lengths[read_item.storage_index])


class LoadReport:
    """One ``read_data`` call: draws the bar while it runs, and says afterwards what the load cost.

    The summary counts the data files only (``.metadata`` is read before
    ``read_data``): files the plan touches, GET requests and body bytes from
    the filesystem's counters, the bytes the plan needs (the sum of its items'
    stored lengths) and the seconds ``read_data`` took. Fetched well above
    needed means gaps were coalesced or a strategy read ahead.
    """

    def __init__(self, planned: PlannedLoad, filesystem: Any, progress: Progress) -> None:
        self._checkpoint = planned.checkpoint
        self._filesystem = filesystem
        self._lengths = planned.item_lengths
        self._files = len(planned.files)
        self._needed = planned.bytes_needed
        self._rank = current_rank()
        self._progress = progress
        self._bar: Any = None
        self._before: Any = None
        self._delta: Any = None
        self._started = 0.0
        self._seconds = 0.0

    def __enter__(self) -> LoadReport:
        if wants_progress_bar(self._progress, self._rank, sys.stdout, sys.stderr):
            self._bar = _progress_bar(self._needed, f"loading {self._checkpoint}")
        self._before = self._filesystem.stats
        self._started = time.perf_counter()
        return self

    def watch(self, planner: LoadPlanner) -> LoadPlanner:
        """The planner to hand torch: ``planner`` itself, or one that also advances the bar."""
        return planner if self._bar is None else _ProgressPlanner(planner, self._bar, self._lengths)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._seconds = time.perf_counter() - self._started
        self._delta = self._filesystem.stats - self._before
        if self._bar is not None:
            self._bar.close()

    def summary(self) -> str:
        """``loaded s3://b/ckpt: 3 files, 9 GETs, 4.0 MiB fetched for 4.0 MiB needed (1.00x), 0.12 s``."""
        if self._delta is None:
            raise RuntimeError("the load has not finished; read the summary after the with block")
        rank = f"rank {self._rank}: " if dist.is_available() and dist.is_initialized() else ""
        fetched = self._delta.bytes_fetched
        ratio = f" ({fetched / self._needed:.2f}x)" if self._needed else ""
        return (
            f"{rank}loaded {self._checkpoint}: {self._files} files, {self._delta.get_requests} GETs, "
            f"{format_bytes(fetched)} fetched for {format_bytes(self._needed)} needed{ratio}, {self._seconds:.2f} s"
        )
