"""From raw runs to what a reader needs: medians, ratios to the baseline, and a markdown page."""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from typing import Any

from .config import MIB
from .measure import RunResult
from .trial import Workload


@dataclass(frozen=True)
class ContenderRuns:
    key: str
    label: str
    warmup: list[RunResult]
    measured: list[RunResult]
    memory_isolated: bool


@dataclass(frozen=True)
class WorkloadRuns:
    workload: Workload
    needed_bytes: int
    contenders: list[ContenderRuns]


@dataclass(frozen=True)
class Summary:
    """One row of a table."""

    key: str
    label: str
    runs: int
    seconds: float
    ratio: float | None
    cpu_seconds: float
    get_requests: int
    head_requests: int
    other_requests: int
    get_bytes: int
    amplification: float | None
    peak_rss_growth: int | None
    counts_stable: bool
    """Did every measured run send the same requests and fetch the same bytes?"""
    own_stats_agree: bool | None
    own_get_requests: int | None
    own_bytes: int | None


def _median_int(values: list[int]) -> int:
    return int(statistics.median(values))


def _median_own(runs: list[RunResult], field: str) -> int | None:
    values = [r.own_stats[field] for r in runs if r.own_stats is not None]
    return _median_int(values) if values else None


def summarize(runs: ContenderRuns, needed_bytes: int, baseline_seconds: float | None) -> Summary:
    measured = runs.measured
    seconds = statistics.median(r.seconds for r in measured)
    counts = {(r.get_requests, r.head_requests, r.other_requests, r.get_bytes) for r in measured}
    agreement = [r.own_stats_agree() for r in measured]
    peaks = [r.peak_rss_growth for r in measured if r.peak_rss_growth is not None]
    get_bytes = _median_int([r.get_bytes for r in measured])
    return Summary(
        key=runs.key,
        label=runs.label,
        runs=len(measured),
        seconds=seconds,
        ratio=seconds / baseline_seconds if baseline_seconds else None,
        cpu_seconds=statistics.median(r.cpu_seconds for r in measured),
        get_requests=_median_int([r.get_requests for r in measured]),
        head_requests=_median_int([r.head_requests for r in measured]),
        other_requests=_median_int([r.other_requests for r in measured]),
        get_bytes=get_bytes,
        amplification=get_bytes / needed_bytes if needed_bytes else None,
        peak_rss_growth=max(peaks) if peaks and runs.memory_isolated else None,
        counts_stable=len(counts) == 1,
        own_stats_agree=None if agreement[0] is None else all(agreement),
        own_get_requests=_median_own(measured, "get_requests"),
        own_bytes=_median_own(measured, "bytes_fetched"),
    )


def summarize_workload(result: WorkloadRuns) -> list[Summary]:
    baseline = next((c for c in result.contenders if c.key == result.workload.baseline), None)
    baseline_seconds = statistics.median(r.seconds for r in baseline.measured) if baseline else None
    return [summarize(c, result.needed_bytes, baseline_seconds) for c in result.contenders]


# -- markdown ---------------------------------------------------------------------------

_HEADER = (
    "| contender | seconds (median) | time vs baseline | GET | HEAD | other req. | MiB fetched "
    "| fetched / needed | client CPU s | peak RSS Δ MiB | `fs.stats` agrees |\n"
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|"
)


def _format_ratio(summary: Summary, baseline_key: str) -> str:
    if summary.key == baseline_key:
        return "1.00x (baseline)"
    return f"{summary.ratio:.2f}x" if summary.ratio is not None else "-"


def _agreement(summary: Summary) -> str:
    if summary.own_stats_agree is None:
        return "-"
    return "yes" if summary.own_stats_agree else "**no**"


def _row(summary: Summary, baseline_key: str) -> str:
    label = summary.label + (f" ({summary.runs} run)" if summary.runs == 1 else "")
    marker = "" if summary.counts_stable else " ‡"
    peak = f"{summary.peak_rss_growth / MIB:.0f}" if summary.peak_rss_growth is not None else "-"
    amplification = f"{summary.amplification:.2f}" if summary.amplification is not None else "-"
    cells = [
        label,
        f"{summary.seconds:.3f}",
        _format_ratio(summary, baseline_key),
        f"{summary.get_requests}{marker}",
        str(summary.head_requests),
        str(summary.other_requests),
        f"{summary.get_bytes / MIB:.1f}",
        amplification,
        f"{summary.cpu_seconds:.2f}",
        peak,
        _agreement(summary),
    ]
    return "| " + " | ".join(cells) + " |"


def table(result: WorkloadRuns, summaries: list[Summary]) -> str:
    rows = [_row(s, result.workload.baseline) for s in summaries]
    return "\n".join([_HEADER, *rows])


def _fastest_line(summaries: list[Summary], baseline: Summary) -> str:
    fastest = min(summaries, key=lambda s: s.seconds)
    if fastest is baseline:
        return f"Fastest: the baseline, {baseline.label}, {baseline.seconds:.3f} s."
    ratio = fastest.seconds / baseline.seconds
    return f"Fastest: {fastest.label}, {fastest.seconds:.3f} s, {ratio:.2f}x the baseline's time."


def _bytes_line(summaries: list[Summary], needed_bytes: int) -> str:
    fewest = min(s.get_bytes for s in summaries)
    most = max(s.get_bytes for s in summaries)
    if fewest == most:
        return f"Every contender fetched the same {fewest / MIB:.1f} MiB ({needed_bytes / MIB:.1f} MiB needed)."
    leanest = "; ".join(s.label for s in summaries if s.get_bytes == fewest)
    heaviest = "; ".join(s.label for s in summaries if s.get_bytes == most)
    return (
        f"Fewest bytes: {fewest / MIB:.1f} MiB ({needed_bytes / MIB:.1f} MiB needed), by {leanest}. "
        f"Most: {most / MIB:.1f} MiB, {most / needed_bytes:.1f}x what is needed, by {heaviest}."
    )


def observations(result: WorkloadRuns, summaries: list[Summary]) -> list[str]:
    """Facts of this run worth a sentence, computed, so that the page never contradicts its table."""
    baseline = next(s for s in summaries if s.key == result.workload.baseline)
    lines = [_fastest_line(summaries, baseline), _bytes_line(summaries, result.needed_bytes)]
    slower = [s for s in summaries if s.ratio is not None and s.ratio > 1.05 and s is not baseline]
    if slower:
        names = "; ".join(f"{s.label} {s.ratio:.2f}x" for s in slower)
        lines.append(f"Slower than the baseline: {names}.")
    for s in summaries:
        if s.own_stats_agree is False and s.own_bytes is not None:
            lines.append(
                f"`fs.stats` of {s.label} disagrees with the neutral count (medians): it counted {s.own_get_requests} "
                f"GETs and {s.own_bytes / MIB:.1f} MiB received, the server {s.get_requests} GETs and "
                f"{s.get_bytes / MIB:.1f} MiB sent."
            )
    unstable = [s.label for s in summaries if not s.counts_stable]
    if unstable:
        lines.append(f"‡ requests or bytes varied between runs (medians shown): {', '.join(unstable)}.")
    return lines


def workload_section(result: WorkloadRuns) -> str:
    summaries = summarize_workload(result)
    workload = result.workload
    parts = [
        f"## {workload.title}",
        "",
        f"What: {workload.what}. Bytes needed at the least: {result.needed_bytes / MIB:.1f} MiB. "
        f"Baseline: {workload.contender(workload.baseline).label}.",
        "",
        table(result, summaries),
        "",
        *[f"- {line}" for line in observations(result, summaries)],
        "",
        workload.notes,
        "",
    ]
    return "\n".join(parts)


def runs_from_json(raw: dict[str, Any], workload: Workload) -> WorkloadRuns:
    """The inverse of ``runs_to_json`` (the summary is recomputed), to render a page from saved results."""
    return WorkloadRuns(
        workload=workload,
        needed_bytes=raw["needed_bytes"],
        contenders=[
            ContenderRuns(
                key=c["key"],
                label=c["label"],
                warmup=[RunResult.from_dict(r) for r in c["warmup"]],
                measured=[RunResult.from_dict(r) for r in c["measured"]],
                memory_isolated=c["memory_isolated"],
            )
            for c in raw["contenders"]
        ],
    )


def runs_to_json(result: WorkloadRuns) -> dict[str, Any]:
    return {
        "workload": result.workload.key,
        "baseline": result.workload.baseline,
        "needed_bytes": result.needed_bytes,
        "contenders": [
            {
                "key": c.key,
                "label": c.label,
                "memory_isolated": c.memory_isolated,
                "warmup": [r.to_dict() for r in c.warmup],
                "measured": [r.to_dict() for r in c.measured],
            }
            for c in result.contenders
        ],
        "summary": [dataclasses.asdict(s) for s in summarize_workload(result)],
    }


# -- the page -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """Everything the page says about how this run was made."""

    command: str
    date: str
    wall_seconds: float
    machine: dict[str, Any]
    load_before: list[float] | None
    load_after: list[float] | None
    probe: dict[str, float]
    """``ServerProbe`` as a dict: what one request costs on this server."""
    moto_patched: bool
    isolated: bool
    warmup: int
    repeats: int
    sizes: dict[str, Any]


def describe_sizes(sizes: dict[str, Any]) -> str:
    return (
        f"one {sizes['object_bytes'] / MIB:.0f} MiB object of random bytes (workloads 1 and 2, "
        f"{sizes['random_reads']} reads of {sizes['random_read_bytes'] // 1024} KiB in workload 2); a parquet file of "
        f"{sizes['parquet_rows']:,} rows x {sizes['parquet_columns']} random float64 columns in row groups of "
        f"{sizes['parquet_row_group_rows']:,} rows; a checkpoint of {sizes['dcp_layers']} x "
        f"`nn.Linear({sizes['dcp_width']}, {sizes['dcp_width']})` and their Adam state after one step"
    )


def _versions(machine: dict[str, Any]) -> str:
    return ", ".join(f"{name} {version}" for name, version in machine["packages"].items())


def _patch_sentence(moto_patched: bool) -> str:
    if not moto_patched:
        return (
            "It runs **stock moto** (`--unpatched-moto`): every GET, ranged or not, costs server time in proportion "
            "to the whole object's size, which punishes strategies in proportion to their request count."
        )
    return (
        "It runs with `benchmarks/moto_patch/sitecustomize.py`: stock moto reads the whole object out of its "
        "spooled temporary file on every GET and only then slices out the requested range, so a 4 KiB ranged GET "
        "of a 256 MiB object costs ~0.25 s of server time. Real S3 has no such cost, and it would punish every "
        "strategy in proportion to its request count. The patch keeps each object's bytes after the first read "
        "(until it is written again); the bytes served are unchanged."
    )


def _runs(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


def _method_lines(info: RunInfo) -> list[str]:
    isolation = (
        "Each contender runs in a worker process of its own (`benchmarks/worker.py`)"
        if info.isolated
        else "All contenders run in the driver's process (`--in-process`; peak RSS is not reported)"
    )
    return [
        f"- {isolation}: built once, warmed up with {_runs(info.warmup)} not measured, then measured for "
        f"{_runs(info.repeats)}. The contenders of a workload take turns run by run, in a rotating order, so "
        "drift in the machine's load reaches all of them alike. *seconds* is the median over the measured runs "
        "of the timed call (opening the file or building the storage reader included, checking the result not).",
        "- Requests and bytes are counted the same way for every contender: each filesystem, s3fs or ours, is "
        "given `session=` an aiobotocore session carrying botocore event handlers (`before-send.s3.*` counts HTTP "
        "requests by operation, `after-call.s3.GetObject` adds up the responses' `ContentLength`). *MiB fetched* "
        "is what the server answered GETs with, including the body of a GET the client abandoned halfway (a "
        "part fetched ahead, then cancelled when the file was closed). *other req.* are listings and bucket "
        "lookups. For our filesystems, *`fs.stats` agrees* says whether their own counters (which count the "
        "bytes a reader received) told the same, run by run.",
        "- *fetched / needed*: MiB fetched over the least the workload needs. *client CPU s*: user + system CPU "
        "time of the client process during the run. *peak RSS Δ MiB*: how much the worker's resident memory grew "
        "at its peak during the run (Linux `VmHWM` after `clear_refs`), including what the run returns.",
        "- Every run's result is compared bit for bit with the stored data (regenerated from the same seed in "
        "each worker); a mismatch stops the benchmark before any table is written.",
        f"- Data: {describe_sizes(info.sizes)}.",
    ]


def _loopback_lines(info: RunInfo, cores: int) -> list[str]:
    probe = info.probe
    return [
        "### What loopback on two cores means for these numbers",
        "",
        f"- A request is not free here, but its cost is CPU, not waiting: a ranged 4 KiB GET takes "
        f"{probe['small_get_ms']:.1f} ms one at a time and still {probe['concurrent_small_get_ms']:.1f} ms each "
        f"when many are in flight (a HEAD: {probe['head_ms']:.1f} ms), nearly all of it moto's and botocore's "
        "Python. On real S3 a small GET costs tens of milliseconds of mostly waiting, which concurrency hides; "
        "here it cannot. Request counts are the portable measure for request-heavy strategies, not their seconds.",
        f"- Throughput is CPU-bound: the client and the server share {cores} cores, and both spend CPU on every "
        "byte (moto serves a large body at a few hundred MiB/s). Parallel ranged GETs cannot multiply bandwidth "
        "as they do against S3, where one connection tops out around 100 MB/s; here they mostly add per-request "
        "work, and every copy into freshly allocated memory shows (page faults are costly in this VM).",
        "- Requests and bytes do not depend on the machine: they carry over to any S3 endpoint. Seconds compare "
        "contenders within one table, on this machine, and nothing more.",
        "",
    ]


def _setup_section(info: RunInfo) -> str:
    machine = info.machine
    cores = machine["cpu_count"]
    lines = [
        "## Machine and method",
        "",
        f"- Machine: {cores} CPU cores ({machine['cpu']}), {machine['memory_gib']} GiB memory, "
        f"{machine['platform']}, Python {machine['python']}.",
        f"- Versions: {_versions(machine)}.",
        f"- Load average (1, 5, 15 min) at start {info.load_before}, at end {info.load_after}. The benchmark's "
        "client and server together account for up to about 2; more means something else competed for the "
        f"{cores} cores, and the seconds are noisier for it.",
        "- Server: moto on 127.0.0.1 through `fsspec_s3reader.local_server.LocalS3Server(separate_process=True)`, "
        "so it does not share the client's GIL, but it does share the machine's cores. "
        + _patch_sentence(info.moto_patched),
        *_method_lines(info),
        "",
        *_loopback_lines(info, cores),
    ]
    return "\n".join(lines)


def _glance_line(result: WorkloadRuns) -> str:
    summaries = summarize_workload(result)
    baseline = next(s for s in summaries if s.key == result.workload.baseline)
    ours = [s for s in summaries if s.own_stats_agree is not None]  # only our filesystems keep fs.stats
    if not ours:
        return f"- **{result.workload.title}**: no contender of ours ran."
    fastest = min(ours, key=lambda s: s.seconds)
    leanest = min(ours, key=lambda s: (s.get_bytes, s.seconds))
    line = (
        f"- **{result.workload.title}**: baseline {baseline.seconds:.2f} s, {baseline.get_bytes / MIB:.1f} MiB. "
        f"Our fastest: {fastest.label}, {fastest.ratio or 0:.2f}x the time, {fastest.get_bytes / MIB:.1f} MiB."
    )
    if leanest is not fastest:
        line += f" Our leanest: {leanest.label}, {leanest.get_bytes / MIB:.1f} MiB, {leanest.ratio or 0:.2f}x the time."
    return line


def _glance_section(results: list[WorkloadRuns]) -> str:
    lines = [
        "## At a glance",
        "",
        "Time relative to each table's baseline (below 1.00x is faster) and MiB fetched; details, caveats and the "
        "other contenders in the tables further down.",
        "",
        *[_glance_line(r) for r in results],
        "",
    ]
    return "\n".join(lines)


def render_page(info: RunInfo, results: list[WorkloadRuns]) -> str:
    header = "\n".join(
        [
            "# Benchmarks",
            "",
            "Our reader strategies side by side with plain s3fs and torch's `FsspecReader`, in one run, on a local "
            "moto S3 server. This page is written by `benchmarks/run.py`; rerun it rather than editing by hand. "
            "The raw numbers of every run are in `benchmarks/results/` (not committed).",
            "",
            "Produced by:",
            "",
            "```bash",
            info.command,
            "```",
            "",
            f"on {info.date}, in {info.wall_seconds / 60:.1f} minutes including setup.",
            "",
        ]
    )
    sections = [header, _glance_section(results), _setup_section(info), *[workload_section(r) for r in results]]
    return "\n".join(sections).rstrip() + "\n"
