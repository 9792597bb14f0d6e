"""Counting what a filesystem sent and received: requests by kind, body bytes fetched, bytes handed to callers.

One ``TransferCounter`` per filesystem; ``fs.stats`` reads a frozen
``TransferStats`` snapshot of it. Requests are recorded where they are sent,
body bytes as they are read (``CountingBody``), delivered bytes by the readers.
"""

from __future__ import annotations

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
        # plain counts, made into a TransferStats only when asked: a body's every piece is counted
        self._requests = {"get_object": 0, "head_object": 0, "other": 0}
        self._fetched = 0
        self._delivered = 0
        self._peak_ahead = 0

    def record_request(self, method: str) -> None:
        kind = method if method in ("get_object", "head_object") else "other"
        with self._lock:
            self._requests[kind] += 1

    def record_bytes(self, count: int) -> None:
        with self._lock:
            self._fetched += count

    def record_delivered(self, count: int) -> None:
        with self._lock:
            self._delivered += count

    def record_held_ahead(self, peak: int) -> None:
        """A closing file's most bytes held fetched ahead at once: the counter keeps the largest."""
        with self._lock:
            self._peak_ahead = max(self._peak_ahead, peak)

    def snapshot(self) -> TransferStats:
        with self._lock:
            return TransferStats(
                get_requests=self._requests["get_object"],
                head_requests=self._requests["head_object"],
                other_requests=self._requests["other"],
                bytes_fetched=self._fetched,
                bytes_delivered=self._delivered,
                peak_bytes_ahead=self._peak_ahead,
            )

    def reset(self) -> None:
        with self._lock:
            self._requests = dict.fromkeys(self._requests, 0)
            self._fetched = self._delivered = self._peak_ahead = 0


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


class CountingBodyInto(CountingBody):
    """A :class:`CountingBody` over a body that also receives straight into a buffer (``receive_into``)."""

    async def receive_into(self, buffer: memoryview, *, idle_timeout: float | None = None) -> int:
        count: int = await self._body.receive_into(buffer, idle_timeout=idle_timeout)
        self._counter.record_bytes(count)
        return count
