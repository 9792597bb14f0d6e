"""What the responses so far say about the link: how long a GET waits for its first byte, what one connection carries.

A DCP load sizes its parts, its parts in flight and its coalescing gap from
these rather than from constants fitted to one network. Every GET of a
transport that carries an estimate records into it (``ObjectRequests``)::

    send ──── first byte ────────────── last byte
         first_byte_latency   body_bytes / body_seconds -> connection_throughput

The latency is the shortest wait of the recent responses (a GET that queued
behind others, at the server or on a busy client, waited longer than the
link makes it). The very first response also paid for setting up the client,
and counts only until another arrives. The throughput is the median of the
first ``TIMED_BODIES`` long bodies: the pace a connection gets when a load's
GETs travel together. Bodies smaller than ``SMALLEST_TIMED_BODY`` tell the
latency only (their first bytes may arrive with the headers, and their pace
is mostly the request's own overhead).

``fit_to_link`` turns an estimate and a memory budget into how long each GET
is and how many are in flight.
"""

from __future__ import annotations

import statistics
import threading
from collections import deque
from dataclasses import dataclass

MIB = 1024 * 1024

SMALLEST_TIMED_BODY = 4 * MIB
"""A body at least this long says how fast one connection delivers; a shorter one says little."""

READ_TIMED_BODY = 1 * MIB
"""What a filesystem's estimate times: its reads (a parquet column chunk, say) are shorter than a load's parts."""

TIMED_BODIES = 4
"""How many of the first long bodies say what one connection carries."""

RECENT_RESPONSES = 32
"""How many of the latest responses the latency is taken over: recent enough to follow the link."""

PARTS_PER_WAIT = 4
"""A part takes this many first-byte waits to arrive: a connection then spends a fifth of its time waiting at most."""

PARTS_IN_FLIGHT = 16
"""GETs in flight at most, as the budget allows: 1.4 GB/s at 90 MB/s per connection."""

SMALLEST_READ_PART = 2 * MIB
"""A read the caller waits for is cut into parts no shorter than this: shorter ones cost more than they save."""

FAR_LATENCY = 0.010
"""A first byte this late says the server is far (S3 answers after 10-50 ms), where each connection's pace is the
bound; one that answers sooner is near (the same host or rack), where the bound is the work every request costs
the machines, and more requests only add to it."""

SMALLEST_PART = 1 * MIB
LARGEST_PART = 32 * MIB
FIRST_PART = 8 * MIB
"""The part size before any response has timed the link."""


@dataclass(frozen=True)
class LinkSample:
    """The estimate at one moment: ``None`` where no response has told it yet."""

    first_byte_latency: float | None
    """Seconds from sending a GET to its first byte: the shortest wait of the recent responses."""
    connection_throughput: float | None
    """Bytes per second a connection carried once its body flowed (the median of the first long bodies)."""
    responses: int
    """Responses recorded so far."""


class LinkEstimate:
    """The recent responses' shortest time to first byte, the first long bodies' throughput; safe across threads."""

    def __init__(self, smallest_timed_body: int = SMALLEST_TIMED_BODY) -> None:
        self._smallest_timed_body = smallest_timed_body
        """Bodies at least this long time a connection's pace (a filesystem's reads are often shorter than a load's)."""
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=RECENT_RESPONSES)
        self._first_latency: float | None = None
        self._throughputs: list[float] = []
        self._responses = 0

    def record(self, first_byte_seconds: float, body_bytes: int, body_seconds: float) -> None:
        """One response: its wait for the first byte, and how long its body of ``body_bytes`` took to arrive."""
        with self._lock:
            self._responses += 1
            if self._responses == 1:
                self._first_latency = max(0.0, first_byte_seconds)
            else:
                self._latencies.append(max(0.0, first_byte_seconds))
            if body_bytes >= self._smallest_timed_body and body_seconds > 0 and len(self._throughputs) < TIMED_BODIES:
                self._throughputs.append(body_bytes / body_seconds)

    def sample(self) -> LinkSample:
        with self._lock:
            latency = min(self._latencies) if self._latencies else self._first_latency
            throughput = statistics.median(self._throughputs) if self._throughputs else None
            return LinkSample(latency, throughput, self._responses)

    def __repr__(self) -> str:
        sample = self.sample()
        latency = "?" if sample.first_byte_latency is None else f"{sample.first_byte_latency * 1000:.1f} ms"
        throughput = "?" if sample.connection_throughput is None else f"{sample.connection_throughput / 1e6:.0f} MB/s"
        return f"<LinkEstimate first byte {latency}, {throughput} per connection, {sample.responses} responses>"


@dataclass(frozen=True)
class PartPlan:
    """How a load fetches now: this many bytes per GET, at most this many GETs in flight."""

    part_size: int
    parts_in_flight: int


def fit_to_link(sample: LinkSample, *, budget: int, readers: int) -> PartPlan:
    """The part size that suits the link, and the parts in flight, for a load of ``readers`` within ``budget`` bytes.

    A part is long enough that a connection waits for its first byte at
    most a fifth of the time: ``PARTS_PER_WAIT`` waits' worth of bytes at the
    pace a connection gets (7 MiB at 20 ms and 90 MB/s, 17 MiB at 50 ms).
    Where memory allows, it is longer still, up to the budget's share of one
    part when ``PARTS_IN_FLIGHT`` travel and each reader holds about three
    (fewer requests: they cost the client, the server and the bill); always
    within ``[SMALLEST_PART, LARGEST_PART]``. ``FIRST_PART`` until a response
    has timed the link.

    Up to ``PARTS_IN_FLIGHT`` parts are in flight, as many as the budget
    holds: on a link that one connection cannot fill, throughput grows with
    the connections; on one whose server or proxy is the limit, the
    connections share it and more of them cost only their requests.
    """
    share = budget // (PARTS_IN_FLIGHT + 3 * readers)
    latency, throughput = sample.first_byte_latency, sample.connection_throughput
    if latency is None or throughput is None:
        size = FIRST_PART
    else:
        size = max(share, int(PARTS_PER_WAIT * latency * throughput))
    whole_mib = (size // MIB) * MIB
    return PartPlan(max(SMALLEST_PART, min(LARGEST_PART, whole_mib)), PARTS_IN_FLIGHT)


def is_far(sample: LinkSample) -> bool:
    """Whether the server answers after a wait that costs more than the work of fetching ahead (``FAR_LATENCY``).

    From a near server, fetching what a caller will ask for later takes
    CPU and connections from the reads it is waiting for now, and saves
    only a short wait: unknown latency counts as near.
    """
    return sample.first_byte_latency is not None and sample.first_byte_latency >= FAR_LATENCY


NEAR_AHEAD_PART = 32 * 1024 * 1024
"""The shortest part of a stream fetched ahead from a near server: pyarrow's own largest coalesced read."""


def part_fetched_ahead(sample: LinkSample, *, largest: int) -> int:
    """How long each part of a stream fetched ahead is: ``largest`` (``part_size``), or more from a near server.

    Nobody waits for the first bytes of a stream fetched ahead, so a far
    server gets parts of ``part_size``, several in flight. A near server is
    bound by its own work, and that is mostly per request (s3rver on
    loopback: about 1.3 ms of its CPU per GET, whatever its length): parts of
    at least ``NEAR_AHEAD_PART`` (all 20 columns of a parquet file on
    loopback, 41 GETs of up to 8 MiB became 12 of up to 32 MiB: 1.15-1.19x
    pyarrow's native client's time became 1.02-1.08x). Until the link is timed,
    ``largest``.
    """
    if sample.first_byte_latency is None or is_far(sample):
        return largest
    return max(largest, NEAR_AHEAD_PART)


def part_for_a_read(sample: LinkSample, length: int, *, largest: int, parts_in_flight: int) -> int:
    """How long each part of a read of ``length`` bytes is, when the caller waits for all of it at once.

    From a far server (``FAR_LATENCY``: S3 answers after 10-50 ms), one
    connection would deliver the read after one first-byte wait plus
    ``length`` at its pace; parts side by side cut the second term. A part is
    about what one connection carries during one first-byte wait (the link's
    bandwidth-delay product, 1.8 MB at 20 ms and 90 MB/s), at least
    ``SMALLEST_READ_PART``, the read cut evenly into as many such parts as
    may be in flight at once, no more: pyarrow reads whole row groups of all
    columns in reads of up to 32 MiB, and 33 MB through a link of 20 ms and
    90 MB/s in eight parts takes 65 ms, in four parts of 8 MiB 115 ms. Never
    longer than ``largest`` (``part_size``).

    From a near server (the same host or rack) the machines' work per
    request is the bound, not a connection's pace, and every part is one
    more request: parts of ``largest`` (all 20 columns of a parquet file on
    loopback: 0.34 s -> 0.31 s). Until the link is timed, ``largest``.
    """
    latency, throughput = sample.first_byte_latency, sample.connection_throughput
    if latency is None or throughput is None or length <= SMALLEST_READ_PART:
        return largest
    if not is_far(sample):
        return largest
    fitted = max(SMALLEST_READ_PART, int(latency * throughput))
    parts = min(parts_in_flight, -(-length // fitted))
    return min(largest, -(-length // parts))
