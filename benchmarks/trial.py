"""What a workload is made of: contenders, each of which builds a trial that runs and verifies.

A ``Trial`` lives in one worker process for a whole workload, one per endpoint
it runs against: built once (outside the clock and the counts, so a build may
send requests), run once to warm up, then run for every measured repeat (on
the timing server) or once (on the counting server). ``run`` is the timed
part; ``verify`` checks the result bit for bit outside the clock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from fsspec_s3reader import TransferStats

from .config import Context, Endpoint
from .counting import RequestCounter

Kind = Literal["ours", "peer", "memory-floor", "network-floor"]
"""Whose reader a contender is: ours, another library's (what ratios compare with), or a floor: the same work from
local memory (``memory-floor``), or every needed byte fetched by a plain parallel client and nothing parsed
(``network-floor``). No client can beat the higher of the two on this machine; floors are not peers."""

FLOOR_KINDS: tuple[Kind, ...] = ("memory-floor", "network-floor")


def is_floor(kind: str) -> bool:
    return kind in FLOOR_KINDS


class WrongDataError(AssertionError):
    """A contender returned bytes that differ from what was stored: the benchmark must stop."""


class Trial(ABC):
    """One contender's way of doing one workload on one endpoint, with the client-side counter if it has one."""

    def __init__(self, counter: RequestCounter | None = None) -> None:
        self.counter = counter

    def before_run(self) -> None:  # noqa: B027 - an optional hook, empty unless a trial needs it
        """Reset state a run must not inherit from the last one; called outside the clock."""

    @abstractmethod
    def run(self) -> Any:
        """Do the workload once and return what it read; this is the only timed call."""

    @abstractmethod
    def verify(self, result: Any) -> None:
        """Raise ``WrongDataError`` unless ``result`` is exactly the stored data."""

    def own_stats(self) -> TransferStats | None:
        """Our filesystems' own counters so far (cumulative), to cross-check the neutral count; None for others."""
        return None

    def kept_bytes(self) -> int | None:
        """Bytes of memory the result rightfully holds (a loaded state dict), for the fresh-process memory run."""
        return None

    def extra_metrics(self) -> dict[str, float] | None:
        """The last run's numbers beyond time and counts (a throttled share), named as ``Workload.extra_columns``."""
        return None


Build = Callable[[Context, Endpoint], Trial]


@dataclass(frozen=True)
class Contender:
    """One way of doing a workload: a library, a strategy and its options."""

    key: str
    """Stable id, used on the command line and in the JSON results."""
    kind: Kind
    label: str
    """How the table names it."""
    build: Build
    measured_runs: int | None = None
    """At most this many measured runs on loopback (and no warm-up) for a contender too slow to repeat."""
    as_shipped: bool = False
    """Ours with no option changed from the library's defaults: what a user gets without tuning."""
    link_runs: int | None = None
    """At most this many measured runs through the link; 0: not timed through the link (it would take minutes)."""


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    what: str
    """What is read, in one sentence, for the table's heading."""
    contenders: tuple[Contender, ...]
    notes: str
    """How to read the table: the mechanisms behind the numbers, true for any run."""
    prepare: Callable[[Context, Endpoint, Any], int]
    """Run by the driver before any contender, once per server: store the data if missing (given
    the endpoint and an s3fs filesystem on it) and return how many bytes the workload needs at the least."""
    per_request_cpu: bool = False
    """Show the client's CPU per request: workloads of many small requests, where that CPU is the cost."""
    fresh_memory: bool = False
    """Also measure each contender's peak memory in a fresh process, one load per process (``measure_fresh``)."""
    uploads: bool = False
    """The workload writes: its table counts requests, not bytes fetched."""
    extra_columns: tuple[tuple[str, str, str], ...] = ()
    """``(metric, heading, format)`` of the table's extra columns (``"{:.0%}"``), each the median of
    ``Trial.extra_metrics()[metric]`` over the measured runs on the first timing endpoint."""
    least_repeats: int = 0
    """At least this many measured runs per contender and endpoint (``--quick`` aside): a workload whose runs take
    a fraction of a second, where one run's time varies by more than the gaps between contenders on a shared
    machine, so the median of three would be a coin toss."""

    def contender(self, key: str) -> Contender:
        for contender in self.contenders:
            if contender.key == key:
                return contender
        raise KeyError(f"workload {self.key!r} has no contender {key!r}; it has {[c.key for c in self.contenders]}")


class OwnFilesystems:
    """Our filesystems a trial's readers or writers went through, each once: their counters are the trial's own.

    A trial makes a storage reader or writer per run; torch's file system
    wrapper (``.fs``) holds the fsspec filesystem (``.fs.fs``), which fsspec
    may hand to every run alike.
    """

    def __init__(self) -> None:
        self._seen: list[Any] = []

    def remember(self, storage: Any) -> None:
        fs = getattr(getattr(storage, "fs", None), "fs", None)
        if hasattr(fs, "stats") and all(fs is not known for known in self._seen):
            self._seen.append(fs)

    def stats(self) -> TransferStats | None:
        """What they sent and received so far, together; None before any of ours was used."""
        return sum_stats([fs.stats for fs in self._seen]) if self._seen else None


def sum_stats(stats: list[TransferStats]) -> TransferStats:
    """Several filesystems' counters as one (``TransferStats`` subtracts but does not add)."""
    return TransferStats(
        get_requests=sum(s.get_requests for s in stats),
        head_requests=sum(s.head_requests for s in stats),
        other_requests=sum(s.other_requests for s in stats),
        bytes_fetched=sum(s.bytes_fetched for s in stats),
    )
