"""Run a trial once and record what it cost: wall and CPU seconds, peak memory growth, client-side counts.

Peak memory comes from Linux's high-water mark, reset before each run
(``/proc/self/clear_refs``), so it is the growth during that run alone.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsspec_s3reader import TransferStats

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
    """What the counting server answered during the run (``ServerCounts``); set by the driver."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(raw: dict[str, Any]) -> RunResult:
        return RunResult(**raw)

    def counts_agree(self) -> bool | None:
        """Do the client-side counter and ``fs.stats`` tell what the server counted? None with nothing to compare."""
        server = self.server_counts
        if server is None or (self.client_counts is None and self.own_stats is None):
            return None
        fields = ("get_requests", "head_requests", "get_bytes")
        if self.client_counts is not None and any(self.client_counts[f] != server[f] for f in fields):
            return False
        own = self.own_stats
        if own is None:
            return True
        return (
            own["get_requests"] == server["get_requests"]
            and own["head_requests"] == server["head_requests"]
            and own["bytes_fetched"] == server["get_bytes"]
        )


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


def measure(trial: Trial, endpoint: str) -> RunResult:
    """Run ``trial`` once, verify what it read (outside the clock) and return the run's costs."""
    trial.before_run()
    gc.collect()  # the last run's garbage must not be collected on this run's clock
    counts_before = trial.counter.snapshot() if trial.counter is not None else None
    own_before = trial.own_stats()
    rss_at_start = reset_peak_rss()
    cpu_start = time.process_time()
    start = time.perf_counter()
    result = trial.run()
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    peak = peak_rss()
    client_counts = None
    if trial.counter is not None and counts_before is not None:
        client_counts = dataclasses.asdict(trial.counter.snapshot() - counts_before)
    own = _stats_delta(trial.own_stats(), own_before)
    trial.verify(result)
    return RunResult(
        endpoint=endpoint,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        peak_rss_growth=peak - rss_at_start if peak is not None and rss_at_start is not None else None,
        client_counts=client_counts,
        own_stats=own,
    )
