"""The performance targets the library holds itself to, checked against one run's numbers.

Each target names the contenders it compares, on which server, and the bound.
The page shows every target with what this run measured and whether it is
met, so a missed target is visible, with its gap, wherever the page is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import MIB
from .report import Summary, WorkloadRuns, summarize_workload

NO_LATENCY = "s3rver"
WITH_LATENCY = "s3rver+20ms"


@dataclass(frozen=True)
class Measured:
    value: float
    shown: str


@dataclass(frozen=True)
class Target:
    workload: str
    what: str
    bound: float
    """The measured value must be at most this."""
    measure: Callable[[dict[str, Summary], WorkloadRuns, dict[str, Any]], Measured | None]


def _time_ratio(ours: str, peer: str, endpoint: str) -> Callable[..., Measured | None]:
    def measure(rows: dict[str, Summary], result: WorkloadRuns, sizes: dict[str, Any]) -> Measured | None:
        mine, theirs = rows.get(ours), rows.get(peer)
        if mine is None or theirs is None or endpoint not in mine.timings or endpoint not in theirs.timings:
            return None
        a, b = mine.timings[endpoint].seconds, theirs.timings[endpoint].seconds
        return Measured(a / b, f"{a / b:.2f}x ({a:.2f} s vs {b:.2f} s)")

    return measure


def _amplification(ours: str) -> Callable[..., Measured | None]:
    def measure(rows: dict[str, Summary], result: WorkloadRuns, sizes: dict[str, Any]) -> Measured | None:
        row = rows.get(ours)
        if row is None or row.amplification is None or row.get_bytes is None:
            return None
        shown = f"{row.amplification:.3f}x ({row.get_bytes / MIB:.1f} of {result.needed_bytes / MIB:.1f} MiB)"
        return Measured(row.amplification, shown)

    return measure


def _per_read(ours: str, field: str) -> Callable[..., Measured | None]:
    def measure(rows: dict[str, Summary], result: WorkloadRuns, sizes: dict[str, Any]) -> Measured | None:
        row = rows.get(ours)
        value = getattr(row, field, None) if row is not None else None
        if value is None:
            return None
        reads = int(sizes["random_reads"])
        if field == "get_bytes":
            return Measured(value / reads / 1024, f"{value / reads / 1024:.1f} KiB per read")
        return Measured(value, f"{value} for {reads} reads")

    return measure


def _memory_beyond_state(ours: str) -> Callable[..., Measured | None]:
    def measure(rows: dict[str, Summary], result: WorkloadRuns, sizes: dict[str, Any]) -> Measured | None:
        row = rows.get(ours)
        if row is None or row.peak_rss_growth is None:
            return None
        beyond = (row.peak_rss_growth - result.needed_bytes) / MIB
        return Measured(beyond, f"{beyond:.0f} MiB (peak growth {row.peak_rss_growth / MIB:.0f} MiB)")

    return measure


TARGETS = (
    Target(
        "dcp_full",
        "DCP full load: time vs s3tc `dcp_optimized`",
        1.0,
        _time_ratio("dcp_optimized", "s3tc-dcp_optimized", NO_LATENCY),
    ),
    Target(
        "dcp_full",
        "DCP full load: time vs torch `FsspecReader` on s3fs",
        0.25,
        _time_ratio("dcp_optimized", "torch-s3fs", NO_LATENCY),
    ),
    Target(
        "dcp_partial",
        "DCP model-only load: bytes fetched / needed, default settings",
        1.1,
        _amplification("dcp_optimized"),
    ),
    Target(
        "dcp_partial",
        "DCP model-only load: time vs s3tc `dcp_optimized`",
        0.6,
        _time_ratio("dcp_optimized", "s3tc-dcp_optimized", NO_LATENCY),
    ),
    Target(
        "dcp_full",
        "DCP full load at 20 ms first-byte latency: time vs s3tc",
        0.8,
        _time_ratio("dcp_optimized", "s3tc-dcp_optimized", WITH_LATENCY),
    ),
    Target(
        "dcp_partial",
        "DCP model-only load at 20 ms: time vs s3tc",
        0.8,
        _time_ratio("dcp_optimized", "s3tc-dcp_optimized", WITH_LATENCY),
    ),
    Target("parquet", "parquet, our defaults: bytes fetched / needed", 1.25, _amplification("adaptive")),
    Target("parquet", "parquet, our defaults: time vs s3fs defaults", 0.5, _time_ratio("adaptive", "s3fs", NO_LATENCY)),
    Target(
        "parquet",
        "parquet, our defaults: time vs s3fs hand-tuned (1 MiB blocks)",
        1.0,
        _time_ratio("adaptive", "s3fs-1m", NO_LATENCY),
    ),
    Target("random_reads", "random 4 KiB reads, default `adaptive`: GETs", 200, _per_read("adaptive", "get_requests")),
    Target(
        "random_reads",
        "random 4 KiB reads, default `adaptive`: HEADs (one per open)",
        1,
        _per_read("adaptive", "head_requests"),
    ),
    Target(
        "random_reads",
        "random 4 KiB reads, default `adaptive`: bytes per read (KiB)",
        64,
        _per_read("adaptive", "get_bytes"),
    ),
    Target(
        "full_read",
        "sequential 256 MiB, default `adaptive`: time vs the boto3 ceiling (<= 1.25x is >= 0.8x its throughput)",
        1.25,
        _time_ratio("adaptive", "ceiling", NO_LATENCY),
    ),
    Target(
        "dcp_full",
        "DCP full load: peak RSS growth beyond the state dict's bytes (MiB)",
        256,
        _memory_beyond_state("dcp_optimized"),
    ),
)


def targets_section(results: list[WorkloadRuns], sizes: dict[str, Any]) -> str:
    """A table of every target: the bound, what this run measured, met or missed."""
    by_key = {r.workload.key: r for r in results}
    lines = [
        "## Targets",
        "",
        "What the library aims for, checked against this run (the bound is an upper limit; seconds are medians). "
        "[Performance](performance.md) explains, with measurements, what bounds the targets a run misses. The "
        "memory row is the worker's peak growth during a measured run minus the state dict's bytes; after the "
        "warm-up the allocator reuses memory the previous load freed, so it can be below zero.",
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
        met = "yes" if measured.value <= target.bound else "**no**"
        lines.append(f"| {target.what} | {target.bound:g} | {measured.shown} | {met} |")
    return "\n".join(lines) + "\n"
