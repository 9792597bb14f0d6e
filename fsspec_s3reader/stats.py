"""Counting what a filesystem sent and received: requests by kind, body bytes fetched, bytes handed to callers.

One ``TransferCounter`` per filesystem; ``fs.stats`` reads a frozen
``TransferStats`` snapshot of it. Requests are recorded where they are sent,
body bytes as they are read (``CountingBody``), delivered bytes by the readers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .forking import ForkSafeLock


@dataclass(frozen=True)
class TransferStats:
    """Requests a filesystem sent, body bytes it received, and bytes its readers handed to their callers.

    A snapshot: later traffic does not change it. Subtract two snapshots to
    get the traffic in between (``after - before``).
    """

    get_requests: int = 0
    head_requests: int = 0
    other_requests: int = 0
    """Listing, writing and the like: s3fs's own calls through this filesystem."""
    bytes_fetched: int = 0
    """Body bytes received from S3."""
    bytes_delivered: int = 0
    """Bytes the readers handed to their callers (``read``, ``readinto``, ``readline``)."""
    peak_bytes_ahead: int = 0
    """The most bytes one file held fetched ahead of its reads at once (the parquet prefetch, bounded by
    ``parquet_prefetch_bytes``), over the files closed since the counter started: a peak, not a count, so a
    difference of two snapshots keeps the later one's."""

    @property
    def requests(self) -> int:
        return self.get_requests + self.head_requests + self.other_requests

    @property
    def read_amplification(self) -> float:
        """Bytes fetched per byte delivered: 1.0 is ideal, more means bytes fetched in vain."""
        return self.bytes_fetched / self.bytes_delivered if self.bytes_delivered else float("nan")

    def __sub__(self, other: TransferStats) -> TransferStats:
        return TransferStats(
            get_requests=self.get_requests - other.get_requests,
            head_requests=self.head_requests - other.head_requests,
            other_requests=self.other_requests - other.other_requests,
            bytes_fetched=self.bytes_fetched - other.bytes_fetched,
            bytes_delivered=self.bytes_delivered - other.bytes_delivered,
            peak_bytes_ahead=self.peak_bytes_ahead,
        )


class TransferCounter:
    """The one place where requests and bytes are counted; safe across threads.

    The filesystem records every S3 call it makes (``record_request``),
    wraps every response body in a :class:`CountingBody`, so the readers'
    ranged GETs and s3fs's own calls (``info``, ``cat_file``, ...) are counted
    alike, and has each reader it opens report what it hands to its caller
    (``record_delivered``) and, as it closes, the most it held fetched ahead
    (``record_held_ahead``).
    """

    def __init__(self) -> None:
        # a forked child finds it free, even if a parent thread was counting at the fork
        self._lock = ForkSafeLock()
        self._stats = TransferStats()

    def record_request(self, method: str) -> None:
        with self._lock:
            stats = self._stats
            if method == "get_object":
                self._stats = dataclasses.replace(stats, get_requests=stats.get_requests + 1)
            elif method == "head_object":
                self._stats = dataclasses.replace(stats, head_requests=stats.head_requests + 1)
            else:
                self._stats = dataclasses.replace(stats, other_requests=stats.other_requests + 1)

    def record_bytes(self, count: int) -> None:
        with self._lock:
            self._stats = dataclasses.replace(self._stats, bytes_fetched=self._stats.bytes_fetched + count)

    def record_delivered(self, count: int) -> None:
        with self._lock:
            self._stats = dataclasses.replace(self._stats, bytes_delivered=self._stats.bytes_delivered + count)

    def record_held_ahead(self, peak: int) -> None:
        """A closing file's most bytes held fetched ahead at once: the counter keeps the largest."""
        with self._lock:
            if peak > self._stats.peak_bytes_ahead:
                self._stats = dataclasses.replace(self._stats, peak_bytes_ahead=peak)

    def snapshot(self) -> TransferStats:
        with self._lock:
            return self._stats

    def reset(self) -> None:
        with self._lock:
            self._stats = TransferStats()


class CountingBody:
    """An S3 response body that records every byte read from it, then passes it on unchanged."""

    def __init__(self, body: Any, counter: TransferCounter) -> None:
        self._body = body
        self._counter = counter

    async def read(self, amt: int | None = None) -> bytes:
        data: bytes = await self._body.read(amt)
        self._counter.record_bytes(len(data))
        return data

    def close(self) -> None:
        self._body.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._body, name)
