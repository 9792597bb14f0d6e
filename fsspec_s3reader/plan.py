"""A DCP load plan as byte ranges: which bytes of which checkpoint file a load reads, and how they share GETs.

The one place that reads torch's plan. It reads torch's ``ReadItem`` and
storage metadata by their attributes only, so it imports nothing of torch,
the filesystem or the network: the storage reader computes a
:class:`PlannedLoad` once per load, and the DCP reader, the load report and
the ``plan`` command all read that one result::

    LoadPlan items ──┐
    storage_data ────┼─> PlannedLoad: items in storage order, one plan per file,
    checkpoint URI ──┘                {"s3://bucket/ckpt/__0_0.distcp": [ItemRange, ...]}
                                                  │
    range_groups(ranges, max_gap_size) <──────────┘  one GET stream per group
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .uris import object_uri

if TYPE_CHECKING:
    from torch.distributed.checkpoint.planner import LoadPlan, ReadItem

DEFAULT_FIRST_BYTE_LATENCY = 0.02
"""Seconds a new GET waits for its first byte on S3 (typically 10-30 ms)."""

DEFAULT_CONNECTION_THROUGHPUT = 100_000_000
"""Bytes per second one S3 connection delivers (typically 80-100 MB/s)."""


def check_cost(name: str, value: float) -> float:
    """A first-byte latency (seconds) or a throughput (bytes per second): a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def break_even_gap(first_byte_latency: float, connection_throughput: float) -> int:
    """The gap, in bytes, that takes as long to read as a new request takes to start.

    A smaller gap is cheaper to read through than to skip with a second GET;
    a larger one is cheaper to skip. With the defaults: 2 MB.
    """
    latency = check_cost("first_byte_latency", first_byte_latency)
    return int(latency * check_cost("connection_throughput", connection_throughput))


DEFAULT_MAX_GAP_SIZE = break_even_gap(DEFAULT_FIRST_BYTE_LATENCY, DEFAULT_CONNECTION_THROUGHPUT)
"""Ranges closer than this share one GET: the break-even gap for S3's typical latency and throughput."""


def validate_max_gap_size(max_gap_size: float) -> float:
    """``max_gap_size`` in bytes: non-negative; ``float("inf")`` coalesces every range of a file."""
    if isinstance(max_gap_size, bool) or not isinstance(max_gap_size, int | float) or math.isnan(max_gap_size):
        raise TypeError(f"max_gap_size must be a number of bytes (or float('inf')), got {max_gap_size!r}")
    if max_gap_size < 0:
        raise ValueError(f"max_gap_size must be >= 0 bytes (float('inf') coalesces all), got {max_gap_size}")
    return max_gap_size


def check_max_gap_size(name: str, max_gap_size: float | None) -> float | None:
    """``max_gap_size`` as an option: ``None`` (the break-even gap) or a number of bytes."""
    return None if max_gap_size is None else validate_max_gap_size(max_gap_size)


def gap_size(max_gap_size: float | None, first_byte_latency: float, connection_throughput: float) -> float:
    """The gap up to which two ranges share a GET: ``max_gap_size`` when given, else the break-even gap."""
    computed = break_even_gap(first_byte_latency, connection_throughput)  # checks both costs, always
    return computed if max_gap_size is None else validate_max_gap_size(max_gap_size)


@dataclass(frozen=True)
class ItemRange:
    """The bytes ``[start, end)`` of one planned item in a file."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise ValueError(f"invalid item range [{self.start}, {self.end}): need 0 <= start <= end")


@dataclass(frozen=True)
class RangeGroup:
    """Consecutive items served by one ranged GET stream over ``[start, end)``."""

    start: int
    end: int
    items: tuple[ItemRange, ...]


def merge_overlapping(ranges: Iterable[ItemRange]) -> list[ItemRange]:
    """Sort ranges and merge those that overlap, so each byte belongs to one item.

    Two read items can name the same stored bytes (two shards of one rank
    reading one saved chunk); they become one item that both reads are served
    from. Ranges that only touch stay separate items; empty ones are dropped.
    """
    merged: list[ItemRange] = []
    for item in sorted(ranges, key=lambda r: (r.start, r.end)):
        if item.start == item.end:
            continue  # an empty item has no bytes to fetch or to serve
        if merged and item.start < merged[-1].end:
            last = merged[-1]
            merged[-1] = ItemRange(last.start, max(last.end, item.end))
        else:
            merged.append(item)
    return merged


def coalesce_ranges(items: Sequence[ItemRange], max_gap_size: float) -> list[RangeGroup]:
    """Group sorted, non-overlapping items whose gap to the previous one is ``<= max_gap_size``."""
    validate_max_gap_size(max_gap_size)
    groups: list[list[ItemRange]] = []
    for item in items:
        if groups and item.start - groups[-1][-1].end <= max_gap_size:
            groups[-1].append(item)
        else:
            groups.append([item])
    return [RangeGroup(group[0].start, group[-1].end, tuple(group)) for group in groups]


def range_groups(ranges: Iterable[ItemRange], max_gap_size: float) -> list[RangeGroup]:
    """The GET streams that serve ``ranges``: overlaps merged, then gaps up to ``max_gap_size`` read through."""
    return coalesce_ranges(merge_overlapping(ranges), max_gap_size)


# -- torch's plan, read once -------------------------------------------------------------


def _stored(item: ReadItem, storage_data: Mapping[Any, Any]) -> Any:
    try:
        return storage_data[item.storage_index]
    except KeyError:
        raise ValueError(
            f"read item {item.storage_index} is not in storage_data; "
            "the plan and the metadata come from different checkpoints"
        ) from None


def _check_storage_data(items: Sequence[ReadItem], storage_data: Mapping[Any, Any]) -> None:
    if items and not storage_data:
        raise ValueError(
            f"the load plan has {len(items)} items but storage_data is empty; "
            "pass the checkpoint metadata's storage_data (set_up_storage_reader receives it)"
        )


def ranges_by_object(
    items: Iterable[ReadItem], storage_data: Mapping[Any, Any], checkpoint: str | os.PathLike[str]
) -> dict[str, list[ItemRange]]:
    """Per checkpoint file (``s3://bucket/ckpt/file``), the byte ranges that ``items`` read, sorted.

    ``storage_data`` is the checkpoint metadata's map from storage index to
    ``(relative_path, offset, length)``. An empty plan reads nothing.
    """
    items = list(items)
    _check_storage_data(items, storage_data)
    base = object_uri(checkpoint)
    ranges: dict[str, list[ItemRange]] = {}
    for item in items:
        stored = _stored(item, storage_data)
        uri = object_uri(f"{base}/{stored.relative_path}")
        ranges.setdefault(uri, []).append(ItemRange(stored.offset, stored.offset + stored.length))
    for file_ranges in ranges.values():
        file_ranges.sort(key=lambda r: (r.start, r.end))
    return ranges


def _storage_position(stored: Any) -> tuple[str, int]:
    return stored.relative_path, stored.offset


@dataclass(frozen=True)
class PlannedFile:
    """One checkpoint file of a load: its items, in storage order, and the keys each stored range holds."""

    relative_path: str
    uri: str
    plan: LoadPlan
    """torch's plan, cut down to this file's items (sorted by offset)."""
    ranges: tuple[ItemRange, ...]
    """One range per item, sorted (two items may name the same bytes)."""
    keys: Mapping[ItemRange, tuple[str, ...]]
    """The state-dict keys read from each range."""

    @property
    def bytes_needed(self) -> int:
        return sum(r.end - r.start for r in self.ranges)


@dataclass(frozen=True)
class PlannedLoad:
    """One rank's load plan, read once: its items in storage order, per file, as byte ranges."""

    checkpoint: str
    plan: LoadPlan
    """torch's plan with its items sorted by file and offset, so each file is read front to back."""
    files: tuple[PlannedFile, ...]
    """The files the plan touches, in the order their first item appears."""
    item_lengths: Mapping[Any, int]
    """Each read item's stored length, by storage index."""

    @classmethod
    def of(cls, plan: LoadPlan, storage_data: Mapping[Any, Any], checkpoint: str) -> PlannedLoad:
        _check_storage_data(plan.items, storage_data)
        stored = {item.storage_index: _stored(item, storage_data) for item in plan.items}
        items = sorted(plan.items, key=lambda item: _storage_position(stored[item.storage_index]))
        per_file: dict[str, list[ReadItem]] = {}
        for item in items:
            per_file.setdefault(stored[item.storage_index].relative_path, []).append(item)
        ranges = ranges_by_object(items, storage_data, checkpoint)
        files = []
        for relative_path, file_items in per_file.items():
            uri = object_uri(f"{object_uri(checkpoint)}/{relative_path}")
            keys: dict[ItemRange, tuple[str, ...]] = {}
            for item in file_items:
                info = stored[item.storage_index]
                span = ItemRange(info.offset, info.offset + info.length)
                keys[span] = (*keys.get(span, ()), item.storage_index.fqn)
            file_plan = dataclasses.replace(plan, items=file_items)
            files.append(PlannedFile(relative_path, uri, file_plan, tuple(ranges[uri]), keys))
        lengths = {index: info.length for index, info in stored.items()}
        return cls(checkpoint, dataclasses.replace(plan, items=items), tuple(files), lengths)

    @property
    def ranges_by_object(self) -> dict[str, list[ItemRange]]:
        """``{"s3://bucket/ckpt/file": [ItemRange, ...]}``, what the DCP reader is built from."""
        return {file.uri: list(file.ranges) for file in self.files}

    @property
    def bytes_needed(self) -> int:
        """The sum of the items' stored lengths: what a load must fetch at the least."""
        return sum(self.item_lengths[item.storage_index] for item in self.plan.items)
