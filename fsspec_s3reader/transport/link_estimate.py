"""What the responses so far say about the link: how long a GET waits for its first byte, what one connection delivers.

A DCP load sizes its parts, its parts in flight and its coalescing gap from
these rather than from constants fitted to one network. Every GET of a
transport that carries an estimate records into it (``ObjectRequests``)::

    send ──── first byte ────────────── last byte
         first_byte_latency   body_bytes / body_seconds = connection_throughput

Both are medians of the recent responses, so one slow answer (a retry, a GET
that queued behind others) moves them little. Bodies smaller than
``SMALLEST_TIMED_BODY`` tell the latency only: their speed is mostly the
request's own overhead.
"""

from __future__ import annotations

import math
import statistics
import threading
from collections import deque
from dataclasses import dataclass

MIB = 1024 * 1024

SMALLEST_TIMED_BODY = 1 * MIB
"""A body at least this long says how fast one connection delivers; a shorter one says little."""

RECENT_RESPONSES = 32
"""How many of the latest responses the medians are taken over: recent enough to follow the link, enough to be calm."""

PARTS_PER_WAIT = 4
"""A part takes this many first-byte waits to arrive: a connection then spends a fifth of its time waiting at most."""


@dataclass(frozen=True)
class LinkSample:
    """The estimate at one moment: ``None`` where no response has told it yet."""

    first_byte_latency: float | None
    """Seconds from sending a GET to its first byte (median of the recent responses)."""
    connection_throughput: float | None
    """Bytes per second one connection delivered once its body flowed (median of the recent long bodies)."""
    responses: int
    """Responses recorded so far."""


class LinkEstimate:
    """Medians of the recent responses' time to first byte and per-connection throughput; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=RECENT_RESPONSES)
        self._throughputs: deque[float] = deque(maxlen=RECENT_RESPONSES)
        self._responses = 0

    def record(self, first_byte_seconds: float, body_bytes: int, body_seconds: float) -> None:
        """One response: its wait for the first byte, and how long its body of ``body_bytes`` took to arrive."""
        with self._lock:
            self._responses += 1
            self._latencies.append(max(0.0, first_byte_seconds))
            if body_bytes >= SMALLEST_TIMED_BODY and body_seconds > 0:
                self._throughputs.append(body_bytes / body_seconds)

    def sample(self) -> LinkSample:
        with self._lock:
            latency = statistics.median(self._latencies) if self._latencies else None
            throughput = statistics.median(self._throughputs) if self._throughputs else None
            return LinkSample(latency, throughput, self._responses)

    def __repr__(self) -> str:
        sample = self.sample()
        latency = "?" if sample.first_byte_latency is None else f"{sample.first_byte_latency * 1000:.1f} ms"
        throughput = "?" if sample.connection_throughput is None else f"{sample.connection_throughput / 1e6:.0f} MB/s"
        return f"<LinkEstimate first byte {latency}, {throughput} per connection, {sample.responses} responses>"


def part_size_for(first_byte_latency: float, connection_throughput: float, *, least: int, most: int) -> int:
    """A part long enough that a connection waits for its first byte at most a fifth of the time, in whole MiB.

    ``PARTS_PER_WAIT`` first-byte waits' worth of bytes at the connection's
    throughput, kept within ``[least, most]``: a link with 20 ms to the first
    byte and 90 MB/s per connection gets 7 MiB parts, one with 50 ms, 17 MiB.
    """
    wanted = PARTS_PER_WAIT * first_byte_latency * connection_throughput
    whole_mib = max(1, math.ceil(wanted / MIB)) * MIB
    return max(least, min(most, whole_mib))
