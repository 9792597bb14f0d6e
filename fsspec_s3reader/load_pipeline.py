"""A DCP load as a pipeline: the whole plan's bytes fetched ahead of torch's deserialization, within a memory budget.

torch reads a checkpoint file item after item, and each item waits for its
bytes. The storage reader knows every range before the first read, so it
fetches them all on the event loop, in the order torch will read them, while
torch deserializes what has arrived::

    plan (sorted)   file 0: [g0 ........][g1 ..]  file 1: [g0 ...........]  file 2: ...
    fetched         ══ parts ═══════════════════════════════════════════>  as long as the bytes held fit
                                                                           the budget
    torch, file 0    load item, load item, ...       (reads parts as they arrive)
    torch, file 1        load item, load item, ...   (files_in_flight threads)

The part size, the parts in flight and the coalescing gap come from the link
(``transport/link_estimate.py``): what the responses so far said about the
time to first byte and one connection's throughput, unless the storage
options fix them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from .plan import (
    DEFAULT_CONNECTION_THROUGHPUT,
    DEFAULT_FIRST_BYTE_LATENCY,
    PlannedLoad,
    break_even_gap,
    merge_overlapping,
    range_groups,
)
from .transport.fetch_ahead import AheadObject, FetchAhead, PlannedSpan
from .transport.link_estimate import LinkEstimate, LinkSample, PartPlan, fit_to_link
from .units import format_bytes

logger = logging.getLogger(__name__)

MIB = 1024 * 1024

DEFAULT_MEMORY_BUDGET = 256 * MIB
"""Bytes a load holds in flight and received ahead of torch, at most (besides what it loads into)."""


@dataclass(frozen=True)
class PipelineStats:
    """What one load's fetching did: for the log, and for tests that hold it to its budget."""

    budget: int
    set_aside: int
    """Of the budget, what is left for the tensors torch builds from the items: the largest item, per reader."""
    peak_held: int
    """The most bytes held at once: in flight, or received and not yet passed by torch."""
    part_sizes: dict[int, int]
    """How many parts of each size were cut."""
    link: LinkEstimate


class LoadPipeline:
    """One ``read_data``'s fetching: every file's planned range groups, ahead of torch, within ``budget`` bytes.

    ``sources`` maps each data file's URI to what its reader reads from (the
    DCP constructor builds the reader over it, with ``max_gap_size`` the
    same as here, so the reader's groups are the spans fetched). Use as a
    context manager: leaving it stops whatever is still in flight.
    """

    def __init__(
        self,
        planned: PlannedLoad,
        filesystem: Any,
        *,
        budget: int,
        readers: int,
        max_gap_size: float,
        link: LinkEstimate,
        part_size: int | None = None,
        max_parts_in_flight: int | None = None,
    ) -> None:
        self.max_gap_size = max_gap_size
        self._link = link
        self._budget = budget
        self._readers = readers
        self._fixed = PartPlan(part_size or 0, max_parts_in_flight or 0)
        # What torch builds from an item (its tensor) lives while the item's bytes still do: per reader,
        # the largest item's worth of the budget is left for it.
        largest_item = max((r.end - r.start for file in planned.files for r in file.ranges), default=0)
        self._set_aside = readers * largest_item
        self._fetch = FetchAhead(budget, self._plan, readers=readers, largest_item=largest_item)
        self.sources: dict[str, AheadObject] = {}
        for file in planned.files:
            bucket, key, version_id = filesystem.split_path(file.uri)
            transport = filesystem.object_transport(bucket, key, version_id, link_estimate=link, reads_fit_link=False)
            items = merge_overlapping(file.ranges)
            spans = [
                PlannedSpan(group.start, group.end, tuple((item.start, item.end) for item in group.items))
                for group in range_groups(items, max_gap_size)
            ]
            self.sources[file.uri] = self._fetch.add(transport, spans)

    def _plan(self) -> PartPlan:
        """Part size and parts in flight: the storage options' where given, the link's otherwise."""
        learned = fit_to_link(self._link.sample(), budget=self._budget, readers=self._readers)
        return PartPlan(
            self._fixed.part_size or learned.part_size, self._fixed.parts_in_flight or learned.parts_in_flight
        )

    def __enter__(self) -> LoadPipeline:
        self._fetch.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._fetch.close()
        logger.debug("%s", self.describe())

    @property
    def stats(self) -> PipelineStats:
        return PipelineStats(
            self._budget, self._set_aside, self._fetch.peak_held, dict(self._fetch.part_sizes), self._link
        )

    def describe(self) -> str:
        stats = self.stats
        parts = ", ".join(f"{count} x {format_bytes(size)}" for size, count in stats.part_sizes.items()) or "none"
        rate = self._fetch.delivery_rate
        delivered = f", {rate / 1e6:.0f} MB/s while GETs were in flight" if rate else ""
        return (
            f"fetched ahead within {format_bytes(stats.budget)} (peak {format_bytes(stats.peak_held)} held), "
            f"parts of {parts}{delivered}; {stats.link!r}"
        )


def gap_for_link(given: Mapping[str, Any], link: LinkEstimate) -> float:
    """The coalescing gap: ``max_gap_size`` when given, else the break-even gap of the given or measured costs.

    ``given`` holds the DCP strategy's options as the user gave them (None
    where not given); a cost not given comes from the link estimate, and
    from the defaults while the link has not told it.
    """
    if given.get("max_gap_size") is not None:
        return float(given["max_gap_size"])
    sample = link.sample()
    if sample.responses < 2:  # the first response also paid for setting up the client: not the link's cost
        sample = LinkSample(None, None, sample.responses)
    latency = given.get("first_byte_latency")
    if latency is None:
        latency = sample.first_byte_latency if sample.first_byte_latency is not None else DEFAULT_FIRST_BYTE_LATENCY
    throughput = given.get("connection_throughput")
    if throughput is None:
        measured = sample.connection_throughput
        throughput = measured if measured is not None else DEFAULT_CONNECTION_THROUGHPUT
    return break_even_gap(latency, throughput)
