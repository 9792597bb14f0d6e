"""What a workload is made of: contenders, each of which builds a trial that runs and verifies.

A ``Trial`` lives in one worker process for a whole workload, one per endpoint
it runs against: built once, run once to warm up, then run for every measured
repeat (on the timing server) or once (on the counting server). ``run`` is
the timed part; ``verify`` checks the result bit for bit outside the clock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from fsspec_s3reader import TransferStats

from .config import Context, Endpoint
from .counting import RequestCounter

Kind = Literal["ours", "peer", "ceiling"]
"""Whose reader a contender is: ours, another library's (what ratios compare with), or the hand-written ceiling."""


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
    """At most this many measured runs (and no warm-up) for a contender too slow to repeat."""
    as_shipped: bool = False
    """Ours with no option changed from the library's defaults: what a user gets without tuning."""


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
    latency_sensitive: bool = False
    """Also timed through the latency proxy (``--latency-ms``): workloads whose request pattern,
    not only their bytes, decides how long they take on S3."""

    def contender(self, key: str) -> Contender:
        for contender in self.contenders:
            if contender.key == key:
                return contender
        raise KeyError(f"workload {self.key!r} has no contender {key!r}; it has {[c.key for c in self.contenders]}")


def sum_stats(stats: list[TransferStats]) -> TransferStats:
    """Several filesystems' counters as one (``TransferStats`` subtracts but does not add)."""
    return TransferStats(
        get_requests=sum(s.get_requests for s in stats),
        head_requests=sum(s.head_requests for s in stats),
        other_requests=sum(s.other_requests for s in stats),
        bytes_fetched=sum(s.bytes_fetched for s in stats),
    )
