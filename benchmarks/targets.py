"""The performance targets the library holds itself to, checked against one run's numbers.

Each target names the contenders it compares, on which endpoint (loopback or
the link), and the bound. The page shows every target with what this run
measured and whether it is met, so a missed target is visible, with its gap,
wherever the page is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fsspec_s3reader.readers.parquet_prefetch import DEFAULT_PARQUET_PREFETCH_BYTES

from .config import MIB
from .paired import CONFIDENCE, paired_ratio
from .report import Summary, WorkloadRuns, higher_floor, memory_cell, summarize_workload

LOOPBACK = "s3rver"
LINK = "link"


@dataclass(frozen=True)
class Measured:
    value: float | None
    """None: measured, but not a number to hold against the bound (a measuring error); ``shown`` says why."""
    shown: str


@dataclass(frozen=True)
class Target:
    workload: str
    what: str
    bound: float
    """The measured value must be at most this."""
    measure: Callable[[dict[str, Summary], WorkloadRuns, dict[str, Any]], Measured | None]


Measure = Callable[[dict[str, Summary], WorkloadRuns, dict[str, Any]], Measured | None]


def _time_ratio(ours: str, peer: str, endpoint: str) -> Measure:
    def measure(rows: dict[str, Summary], result: WorkloadRuns, sizes: dict[str, Any]) -> Measured | None:
        mine, theirs = rows.get(ours), rows.get(peer)
        if mine is None or theirs is None or endpoint not in mine.timings or endpoint not in theirs.timings:
            return None
        a, b = mine.timings[endpoint].seconds, theirs.timings[endpoint].seconds
        paired = paired_ratio(_timed_seconds(result, ours, endpoint), _timed_seconds(result, peer, endpoint))
        interval = f"; {paired.shown()}" if paired is not None else ""
        return Measured(a / b, f"{a / b:.2f}x ({a:.2f} s vs {b:.2f} s{interval})")

    return measure


def _timed_seconds(result: WorkloadRuns, key: str, endpoint: str) -> list[float]:
    """A contender's measured runs on ``endpoint``, in the order of the rounds."""
    for contender in result.contenders:
        if contender.key == key:
            return [run.seconds for run in contender.timed.get(endpoint, [])]
    return []


def _floor_ratio(ours: str, endpoint: str) -> Measure:
    def measure(rows: dict[str, Summary], result: WorkloadRuns, sizes: dict[str, Any]) -> Measured | None:
        mine, floor = rows.get(ours), higher_floor(result, endpoint)
        if mine is None or floor is None or endpoint not in mine.timings:
            return None
        a, (runs, b) = mine.timings[endpoint].seconds, floor
        return Measured(a / b, f"{a / b:.2f}x ({a:.2f} s vs {b:.2f} s, {runs.kind.replace('-', ' ')})")

    return measure


def _amplification(ours: str) -> Measure:
    def measure(rows: dict[str, Summary], result: WorkloadRuns, sizes: dict[str, Any]) -> Measured | None:
        row = rows.get(ours)
        if row is None or row.amplification is None or row.get_bytes is None:
            return None
        shown = f"{row.amplification:.3f}x ({row.get_bytes / MIB:.1f} of {result.needed_bytes / MIB:.1f} MiB)"
        return Measured(row.amplification, shown)

    return measure


def _per_object(ours: str, field: str) -> Measure:
    """Requests of one kind per small object read (counted on the loopback set of objects)."""

    def measure(rows: dict[str, Summary], result: WorkloadRuns, sizes: dict[str, Any]) -> Measured | None:
        row = rows.get(ours)
        value = getattr(row, field, None) if row is not None else None
        if value is None:
            return None
        objects = int(sizes["small_objects"])
        return Measured(value / objects, f"{value / objects:.2f} ({value} for {objects} objects)")

    return measure


def _cpu_per_request(ours: str) -> Measure:
    def measure(rows: dict[str, Summary], result: WorkloadRuns, sizes: dict[str, Any]) -> Measured | None:
        row = rows.get(ours)
        if row is None or row.cpu_ms_per_request is None or row.cpu_seconds is None:
            return None
        shown = f"{row.cpu_ms_per_request:.2f} ms ({row.cpu_seconds:.2f} s for {row.requests} requests)"
        return Measured(row.cpu_ms_per_request, shown)

    return measure


def _fresh_memory(ours: str) -> Measure:
    def measure(rows: dict[str, Summary], result: WorkloadRuns, sizes: dict[str, Any]) -> Measured | None:
        row = rows.get(ours)
        if row is None or row.fresh_beyond is None:
            return None
        if row.fresh_beyond < 0:
            return Measured(None, f"{memory_cell(row.fresh_beyond)} MiB: not a result")
        return Measured(row.fresh_beyond / MIB, f"{row.fresh_beyond / MIB:.0f} MiB")

    return measure


def _extra(ours: str, metric: str, form: str) -> Measure:
    """One of the trial's own numbers (``Workload.extra_columns``), its median on the first timing endpoint."""

    def measure(rows: dict[str, Summary], result: WorkloadRuns, sizes: dict[str, Any]) -> Measured | None:
        row = rows.get(ours)
        if row is None or metric not in row.extras:
            return None
        return Measured(row.extras[metric], form.format(row.extras[metric]))

    return measure


def _held_ahead(ours: str) -> Measure:
    """The most one open file held fetched ahead, over the default ``parquet_prefetch_bytes``."""
    budget = DEFAULT_PARQUET_PREFETCH_BYTES / MIB

    def measure(rows: dict[str, Summary], result: WorkloadRuns, sizes: dict[str, Any]) -> Measured | None:
        row = rows.get(ours)
        if row is None or "held_ahead_mib" not in row.extras:
            return None
        held = row.extras["held_ahead_mib"]
        return Measured(held / budget, f"{held / budget:.2f} ({held:.0f} of {budget:.0f} MiB)")

    return measure


def _both(workload: str, what: str, bound: float, make: Callable[[str], Measure]) -> tuple[Target, Target]:
    """The same target on loopback and through the link."""
    return (
        Target(workload, f"{what}, loopback", bound, make(LOOPBACK)),
        Target(workload, f"{what}, link", bound, make(LINK)),
    )


TARGETS: tuple[Target, ...] = (
    *_both(
        "parquet",
        "parquet 2 of 20 columns, our defaults: time vs pyarrow native `S3FileSystem`",
        1.0,
        lambda e: _time_ratio("adaptive", "pyarrow", e),
    ),
    *_both(
        "parquet_all",
        "parquet all 20 columns, our defaults: time vs pyarrow native",
        1.0,
        lambda e: _time_ratio("adaptive", "pyarrow", e),
    ),
    *_both(
        "parquet_dataset",
        "`pyarrow.dataset` over 8 files, our defaults: time vs pyarrow native",
        1.0,
        lambda e: _time_ratio("adaptive", "pyarrow", e),
    ),
    Target("parquet", "parquet 2 of 20 columns, our defaults: bytes fetched / needed", 1.1, _amplification("adaptive")),
    Target(
        "parquet_all",
        "parquet all 20 columns, our defaults: most held ahead per open file / `parquet_prefetch_bytes`",
        1.0,
        _held_ahead("adaptive"),
    ),
    Target(
        "parquet_dataset", "`pyarrow.dataset`, our defaults: bytes fetched / needed", 1.1, _amplification("adaptive")
    ),
    *_both(
        "random_reads",
        "random 4 KiB reads, default `adaptive`: time vs s3tc `range_based(buffer_size=0)`",
        1.2,
        lambda e: _time_ratio("adaptive", "s3tc-range-0", e),
    ),
    Target(
        "random_reads",
        "random 4 KiB reads, default `adaptive`: client CPU per request (ms)",
        1.0,
        _cpu_per_request("adaptive"),
    ),
    Target(
        "small_objects",
        "small objects, `open().read()` each on defaults: time vs s3tc `get_object().read()` each, loopback",
        1.3,
        _time_ratio("adaptive", "s3tc-each", LOOPBACK),
    ),
    Target(
        "small_objects",
        "small objects, `open().read()` each on defaults: time vs s3tc each, link",
        1.1,
        _time_ratio("adaptive", "s3tc-each", LINK),
    ),
    Target(
        "small_objects",
        "small objects, our `fs.cat(list)`: time vs s3tc one at a time, loopback",
        0.6,
        _time_ratio("cat", "s3tc-each", LOOPBACK),
    ),
    Target(
        "small_objects",
        "small objects, our `fs.cat(list)`: time vs s3tc one at a time, link",
        0.2,
        _time_ratio("cat", "s3tc-each", LINK),
    ),
    Target(
        "small_objects",
        "small objects, `open().read()` each on defaults: GETs per object",
        1.0,
        _per_object("adaptive", "get_requests"),
    ),
    Target(
        "small_objects",
        "small objects, `open().read()` each on defaults: HEADs per object",
        0.0,
        _per_object("adaptive", "head_requests"),
    ),
    Target("small_objects", "small objects, `fs.cat(list)`: GETs per object", 1.0, _per_object("cat", "get_requests")),
    Target(
        "small_objects", "small objects, `fs.cat(list)`: HEADs per object", 0.0, _per_object("cat", "head_requests")
    ),
    *_both(
        "dcp_full",
        "DCP full load, defaults: time vs the higher floor",
        1.25,
        lambda e: _floor_ratio("dcp_optimized", e),
    ),
    *_both(
        "dcp_partial",
        "DCP model-only load, defaults: time vs the higher floor",
        1.25,
        lambda e: _floor_ratio("dcp_optimized", e),
    ),
    Target(
        "dcp_full",
        "DCP full load, defaults: time vs s3tc `dcp_optimized`, link",
        0.6,
        _time_ratio("dcp_optimized", "s3tc-dcp_optimized", LINK),
    ),
    Target(
        "dcp_partial",
        "DCP model-only load, defaults: time vs s3tc `dcp_optimized`, link",
        0.45,
        _time_ratio("dcp_optimized", "s3tc-dcp_optimized", LINK),
    ),
    *_both(
        "dcp_save",
        "DCP save, our `S3StorageWriter` on defaults: time vs s3tc `S3StorageWriter` on defaults",
        1.0,
        lambda e: _time_ratio("writer", "s3tc", e),
    ),
    Target(
        "dcp_full",
        "DCP full load, defaults: peak RSS beyond the state dict in a fresh process (MiB)",
        256,
        _fresh_memory("dcp_optimized"),
    ),
    Target(
        "throttle",
        "a storm of 4 processes against a throttling endpoint, defaults: time vs GETs served / rate",
        1.3,
        _extra("adaptive", "vs_rate", "{:.2f}x"),
    ),
    Target(
        "throttle",
        "a storm of 4 processes against a throttling endpoint, defaults: share of GETs throttled",
        0.2,
        _extra("adaptive", "throttled", "{:.2f}"),
    ),
)


def targets_section(results: list[WorkloadRuns], sizes: dict[str, Any]) -> str:
    """A table of every target: the bound, what this run measured, met or missed."""
    by_key = {r.workload.key: r for r in results}
    lines = [
        "## Targets",
        "",
        "What the library aims for, checked against this run (the bound is an upper limit; seconds are medians). "
        "[Performance](performance.md) explains, with measurements, what bounds the targets a run misses. Times "
        "are ours with the library's defaults unless a row names options. The memory row is one load in a fresh "
        "process: its peak resident memory minus the memory before the load's target existed, minus the state "
        "dict's bytes; a number below zero there would be a measuring error, and is not held against the bound. "
        f"A time ratio also gives, *round by round*, the geometric mean of the ratios of the two contenders' runs "
        f"in the same round (the machine's moment cancels out) and a {CONFIDENCE:.0%} bootstrap interval for it: "
        "where the interval spans the bound, this run cannot tell the two apart; *met* goes by the medians.",
        "",
        "| target | bound | measured | met |",
        "|---|--:|--:|:-:|",
    ]
    for target in TARGETS:
        result = by_key.get(target.workload)
        if result is None:
            continue
        rows = {s.key: s for s in summarize_workload(result)}
        measured = target.measure(rows, result, sizes)
        if measured is None:
            lines.append(f"| {target.what} | {target.bound:g} | not measured | - |")
            continue
        if measured.value is None:
            lines.append(f"| {target.what} | {target.bound:g} | {measured.shown} | - |")
            continue
        met = "yes" if measured.value <= target.bound else "**no**"
        lines.append(f"| {target.what} | {target.bound:g} | {measured.shown} | {met} |")
    return "\n".join(lines) + "\n"
