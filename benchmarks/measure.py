"""Run a trial once and record what it cost: wall and CPU seconds, peak memory growth, client-side counts.

Peak memory comes from Linux's high-water mark, reset before each run
(``/proc/self/clear_refs``), so it is the growth during that run alone. In a
worker that has run before, that growth understates what a load needs: the
allocator hands out again memory the last run freed, without the resident set
growing. ``measure_fresh`` is the honest number: one run in a process that has
run nothing, its baseline taken before the run's target is even allocated.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsspec_s3reader import TransferStats

from .counting import RequestCounts
from .trial import Trial

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class RunResult:
    """What one run of one contender cost on one endpoint; counts from the server where it counts."""

    endpoint: str
    seconds: float
    cpu_seconds: float
    """User + system time of the client process, all its threads: the work done, whoever waited."""
    peak_rss_growth: int | None
    """Bytes the resident set grew by at its peak during the run; None where Linux cannot tell."""
    client_counts: dict[str, int] | None
    """What the client-side counter saw (s3fs and ours only): a cross-check of the server's count."""
    own_stats: dict[str, int] | None
    """Our filesystems' ``fs.stats`` over the same run (None for everyone else)."""
    server_counts: dict[str, int] | None = None
    """What the counting server answered during the timed call (``RequestCounts``); on the counting server only."""
    extras: dict[str, float] | None = None
    """The trial's own numbers for this run (``Trial.extra_metrics``), read after the timed call."""
    server_cpu_seconds: float | None = None
    """CPU s3rver used while the driver waited for this run (loopback and link; None on the counting server):
    the server's share of the work, told by the driver, which alone knows the server's process."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(raw: dict[str, Any]) -> RunResult:
        return RunResult(**raw)

    def counts_agree(self) -> bool | None:
        """Do the client's own counts tell what the server counted? None with nothing to compare.

        Ours are checked with ``fs.stats``: our GETs and HEADs do not pass
        through botocore (the lean request path), so botocore's event hooks
        see only s3fs's own calls of ours; requests must match exactly, bytes
        received may fall short of the bytes sent. Everyone else's, with those hooks.
        """
        server = self.server_counts
        if server is None or (self.client_counts is None and self.own_stats is None):
            return None
        own = self.own_stats
        if own is not None:
            # A GET cancelled under way (a read-ahead no longer wanted) was sent in full by the
            # server and received in part by us: our bytes may fall short, never exceed.
            return (
                own["get_requests"] == server["get_requests"]
                and own["head_requests"] == server["head_requests"]
                and own["bytes_fetched"] <= server["get_bytes"]
            )
        assert self.client_counts is not None
        return all(self.client_counts[f] == server[f] for f in ("get_requests", "head_requests", "get_bytes"))


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> int | None:
    """Make the high-water mark the current RSS; return that RSS in bytes, or None if unsupported."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return None
    rss = _status_kib("VmRSS")
    return rss * 1024 if rss is not None else None


def peak_rss() -> int | None:
    peak = _status_kib("VmHWM")
    return peak * 1024 if peak is not None else None


def _stats_delta(after: TransferStats | None, before: TransferStats | None) -> dict[str, int] | None:
    if after is None:
        return None
    delta = after - before if before is not None else after
    return dataclasses.asdict(delta)


def measure(trial: Trial, endpoint: str, server_counts: Callable[[], RequestCounts] | None = None) -> RunResult:
    """Run ``trial`` once, verify what it read (outside the clock) and return the run's costs.

    ``server_counts`` reads the counting server's totals: called just before
    and just after the timed call, so that what ``before_run`` and ``verify``
    send (a save's check reads the save back) is not counted.
    """
    trial.before_run()
    gc.collect()  # the last run's garbage must not be collected on this run's clock
    counts_before = trial.counter.snapshot() if trial.counter is not None else None
    own_before = trial.own_stats()
    server_before = server_counts() if server_counts is not None else None
    rss_at_start = reset_peak_rss()
    cpu_start = time.process_time()
    start = time.perf_counter()
    result = trial.run()
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    peak = peak_rss()
    server = server_counts() - server_before if server_counts is not None and server_before is not None else None
    client_counts = None
    if trial.counter is not None and counts_before is not None:
        client_counts = dataclasses.asdict(trial.counter.snapshot() - counts_before)
    own = _stats_delta(trial.own_stats(), own_before)
    extras = trial.extra_metrics()
    trial.verify(result)
    return RunResult(
        endpoint=endpoint,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        peak_rss_growth=peak - rss_at_start if peak is not None and rss_at_start is not None else None,
        client_counts=client_counts,
        own_stats=own,
        server_counts=dataclasses.asdict(server) if server is not None else None,
        extras=extras,
    )


@dataclass(frozen=True)
class FreshMemory:
    """One run in a fresh process: its resident memory before anything of the run existed, and at its peak."""

    baseline_rss: int
    """Resident bytes after imports and the trial's build, before the run's target was allocated."""
    peak_rss: int
    kept_bytes: int
    """What the result rightfully holds (the loaded state dict's bytes)."""
    seconds: float

    @property
    def beyond_kept(self) -> int:
        """Peak growth beyond what the result holds: the reader's own memory. Below zero is a measuring error."""
        return self.peak_rss - self.baseline_rss - self.kept_bytes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(raw: dict[str, Any]) -> FreshMemory:
        return FreshMemory(**raw)


def measure_fresh(trial: Trial) -> FreshMemory:
    """Run ``trial`` once in this process, which must have run nothing before, and verify it after the peak is read."""
    gc.collect()
    baseline = reset_peak_rss()
    started = time.perf_counter()
    trial.before_run()  # the target is allocated here: part of what the peak covers
    result = trial.run()
    seconds = time.perf_counter() - started
    peak = peak_rss()
    kept = trial.kept_bytes()
    if baseline is None or peak is None or kept is None:
        raise RuntimeError("peak memory needs Linux's /proc/self/status and clear_refs, and a trial that keeps bytes")
    trial.verify(result)
    return FreshMemory(baseline_rss=baseline, peak_rss=peak, kept_bytes=kept, seconds=seconds)
