"""From raw runs to what a reader needs: medians, ratios to the fastest peer and the ceiling, a markdown page."""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from typing import Any

from .config import MIB
from .measure import RunResult
from .trial import Kind, Workload

TIE = 0.05
"""Within 5% of the fastest peer counts as a tie: less than the noise of one run on a shared machine."""


@dataclass(frozen=True)
class ContenderRuns:
    key: str
    kind: Kind
    label: str
    warmup: dict[str, list[RunResult]]
    """Unmeasured runs, by timing endpoint."""
    timed: dict[str, list[RunResult]]
    """Measured runs, by timing endpoint (``s3rver``, ``s3rver+20ms``)."""
    counted: RunResult | None
    """The one run on the counting server (moto)."""
    memory_isolated: bool


@dataclass(frozen=True)
class WorkloadRuns:
    workload: Workload
    needed_bytes: int
    timing_endpoints: list[str]
    contenders: list[ContenderRuns]


@dataclass(frozen=True)
class Timing:
    """One contender's time on one timing endpoint."""

    runs: int
    seconds: float
    vs_peer: float | None
    """Over the fastest peer's median on the same endpoint (None without peers)."""
    vs_ceiling: float | None


@dataclass(frozen=True)
class Summary:
    """One row of a table."""

    key: str
    kind: Kind
    label: str
    timings: dict[str, Timing]
    cpu_seconds: float | None
    peak_rss_growth: int | None
    get_requests: int | None
    head_requests: int | None
    other_requests: int | None
    get_bytes: int | None
    amplification: float | None
    counts_agree: bool | None
    """Did the client-side counter and ``fs.stats`` (where there are any) tell what the server counted?"""


def _median_seconds(runs: list[RunResult]) -> float:
    return statistics.median(r.seconds for r in runs)


def _fastest(result: WorkloadRuns, endpoint: str, kind: Kind) -> float | None:
    times = [_median_seconds(c.timed[endpoint]) for c in result.contenders if c.kind == kind and c.timed.get(endpoint)]
    return min(times) if times else None


def summarize_workload(result: WorkloadRuns) -> list[Summary]:
    summaries = []
    for runs in result.contenders:
        timings = {}
        for endpoint in result.timing_endpoints:
            measured = runs.timed.get(endpoint) or []
            if not measured:
                continue
            seconds = _median_seconds(measured)
            peer, ceiling = _fastest(result, endpoint, "peer"), _fastest(result, endpoint, "ceiling")
            timings[endpoint] = Timing(
                runs=len(measured),
                seconds=seconds,
                vs_peer=seconds / peer if peer else None,
                vs_ceiling=seconds / ceiling if ceiling else None,
            )
        base = runs.timed.get(result.timing_endpoints[0]) or []
        peaks = [r.peak_rss_growth for r in base if r.peak_rss_growth is not None]
        server = runs.counted.server_counts if runs.counted is not None else None
        summaries.append(
            Summary(
                key=runs.key,
                kind=runs.kind,
                label=runs.label,
                timings=timings,
                cpu_seconds=statistics.median(r.cpu_seconds for r in base) if base else None,
                peak_rss_growth=max(peaks) if peaks and runs.memory_isolated else None,
                get_requests=server["get_requests"] if server else None,
                head_requests=server["head_requests"] if server else None,
                other_requests=server["other_requests"] if server else None,
                get_bytes=server["get_bytes"] if server else None,
                amplification=server["get_bytes"] / result.needed_bytes if server and result.needed_bytes else None,
                counts_agree=runs.counted.counts_agree() if runs.counted is not None else None,
            )
        )
    return summaries


# -- markdown ---------------------------------------------------------------------------


def latency_label(endpoint: str) -> str:
    return "0 ms" if endpoint == "s3rver" else endpoint.removeprefix("s3rver+").replace("ms", " ms")


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def _count(value: int | None) -> str:
    return str(value) if value is not None else "-"


def _agreement(summary: Summary) -> str:
    if summary.counts_agree is None:
        return "-"
    return "yes" if summary.counts_agree else "**no**"


def _header(endpoints: list[str]) -> str:
    cells = ["contender", "whose"]
    for endpoint in endpoints:
        at = f" @{latency_label(endpoint)}"
        cells += [f"s (median){at}", f"vs fastest peer{at}", f"vs ceiling{at}"]
    cells += ["GET", "HEAD", "MiB fetched", "fetched / needed", "peak RSS Δ MiB", "client CPU s", "counts agree"]
    aligns = ["---", ":-:"] + ["--:"] * (len(cells) - 3) + [":-:"]
    return "| " + " | ".join(cells) + " |\n|" + "|".join(aligns) + "|"


def _row(summary: Summary, endpoints: list[str]) -> str:
    label = summary.label
    cells = [label, summary.kind]
    for endpoint in endpoints:
        timing = summary.timings.get(endpoint)
        if timing is None:
            cells += ["-", "-", "-"]
            continue
        runs = f" ({timing.runs} run)" if timing.runs == 1 else ""
        seconds = f"{timing.seconds:.3f}{runs}"
        cells += [f"**{seconds}**" if summary.kind == "ours" else seconds, _ratio(timing.vs_peer)]
        cells.append(_ratio(timing.vs_ceiling))
    cells += [
        _count(summary.get_requests),
        _count(summary.head_requests),
        f"{summary.get_bytes / MIB:.1f}" if summary.get_bytes is not None else "-",
        f"{summary.amplification:.2f}" if summary.amplification is not None else "-",
        f"{summary.peak_rss_growth / MIB:.0f}" if summary.peak_rss_growth is not None else "-",
        f"{summary.cpu_seconds:.2f}" if summary.cpu_seconds is not None else "-",
        _agreement(summary),
    ]
    return "| " + " | ".join(cells) + " |"


def table(result: WorkloadRuns, summaries: list[Summary]) -> str:
    return "\n".join([_header(result.timing_endpoints), *[_row(s, result.timing_endpoints) for s in summaries]])


@dataclass(frozen=True)
class Verdict:
    """Ours against the peers on one workload at one latency."""

    endpoint: str
    ours: Summary
    peer: Summary
    ratio: float
    """Our fastest's time over the fastest peer's."""

    @property
    def word(self) -> str:
        if self.ratio < 1 - TIE:
            return "wins"
        if self.ratio > 1 + TIE:
            return "loses"
        return "ties"


def verdicts(summaries: list[Summary], endpoints: list[str]) -> list[Verdict]:
    found = []
    for endpoint in endpoints:
        timed = [s for s in summaries if endpoint in s.timings]
        ours = [s for s in timed if s.kind == "ours"]
        peers = [s for s in timed if s.kind == "peer"]
        if not ours or not peers:
            continue
        best = min(ours, key=lambda s: s.timings[endpoint].seconds)
        peer = min(peers, key=lambda s: s.timings[endpoint].seconds)
        found.append(Verdict(endpoint, best, peer, best.timings[endpoint].seconds / peer.timings[endpoint].seconds))
    return found


def _bytes_line(summaries: list[Summary], needed_bytes: int) -> str | None:
    counted = [s for s in summaries if s.get_bytes is not None]
    if not counted:
        return None
    fewest = min(counted, key=lambda s: s.get_bytes or 0)
    most = max(counted, key=lambda s: s.get_bytes or 0)
    if fewest.get_bytes == most.get_bytes:
        return (
            f"Every contender fetched the same {(most.get_bytes or 0) / MIB:.1f} MiB ({needed_bytes / MIB:.1f} needed)."
        )
    return (
        f"Bytes ({needed_bytes / MIB:.1f} MiB needed): fewest {(fewest.get_bytes or 0) / MIB:.1f} MiB by "
        f"{fewest.label}; most {(most.get_bytes or 0) / MIB:.1f} MiB ({most.amplification or 0:.1f}x) by {most.label}."
    )


def observations(result: WorkloadRuns, summaries: list[Summary]) -> list[str]:
    """Facts of this run worth a sentence, computed, so that the page never contradicts its table."""
    lines = []
    for verdict in verdicts(summaries, result.timing_endpoints):
        ours_s = verdict.ours.timings[verdict.endpoint].seconds
        peer_s = verdict.peer.timings[verdict.endpoint].seconds
        lines.append(
            f"At {latency_label(verdict.endpoint)}: ours **{verdict.word}**: our fastest, {verdict.ours.label}, "
            f"{ours_s:.3f} s, is {verdict.ratio:.2f}x the fastest peer, {verdict.peer.label}, {peer_s:.3f} s."
        )
    bytes_line = _bytes_line(summaries, result.needed_bytes)
    if bytes_line:
        lines.append(bytes_line)
    for s in summaries:
        if s.counts_agree is False:
            lines.append(
                f"The client-side count or `fs.stats` of {s.label} disagrees with the server's count (see the JSON): "
                "for a reader that cancels GETs under way, `fs.stats` counts bytes received, the server bytes sent."
            )
    return lines


def workload_section(result: WorkloadRuns) -> str:
    summaries = summarize_workload(result)
    workload = result.workload
    parts = [
        f"## {workload.title}",
        "",
        f"What: {workload.what}. Bytes needed at the least: {result.needed_bytes / MIB:.1f} MiB.",
        "",
        table(result, summaries),
        "",
        *[f"- {line}" for line in observations(result, summaries)],
        "",
        workload.notes,
        "",
    ]
    return "\n".join(parts)


# -- JSON -------------------------------------------------------------------------------


def runs_to_json(result: WorkloadRuns) -> dict[str, Any]:
    return {
        "workload": result.workload.key,
        "needed_bytes": result.needed_bytes,
        "timing_endpoints": result.timing_endpoints,
        "contenders": [
            {
                "key": c.key,
                "kind": c.kind,
                "label": c.label,
                "memory_isolated": c.memory_isolated,
                "warmup": {e: [r.to_dict() for r in runs] for e, runs in c.warmup.items()},
                "timed": {e: [r.to_dict() for r in runs] for e, runs in c.timed.items()},
                "counted": c.counted.to_dict() if c.counted is not None else None,
            }
            for c in result.contenders
        ],
        "summary": [dataclasses.asdict(s) for s in summarize_workload(result)],
    }


def runs_from_json(raw: dict[str, Any], workload: Workload) -> WorkloadRuns:
    """The inverse of ``runs_to_json`` (the summary is recomputed), to render a page from saved results."""
    return WorkloadRuns(
        workload=workload,
        needed_bytes=raw["needed_bytes"],
        timing_endpoints=raw["timing_endpoints"],
        contenders=[
            ContenderRuns(
                key=c["key"],
                kind=c["kind"],
                label=c["label"],
                warmup={e: [RunResult.from_dict(r) for r in runs] for e, runs in c["warmup"].items()},
                timed={e: [RunResult.from_dict(r) for r in runs] for e, runs in c["timed"].items()},
                counted=RunResult.from_dict(c["counted"]) if c["counted"] is not None else None,
                memory_isolated=c["memory_isolated"],
            )
            for c in raw["contenders"]
        ],
    )


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
    """``ServerProbe`` as a dict: what one request costs on the timing server."""
    latencies_ms: list[int]
    isolated: bool
    warmup: int
    repeats: int
    sizes: dict[str, Any]


def describe_sizes(sizes: dict[str, Any]) -> str:
    return (
        f"a checkpoint of {sizes['dcp_layers']} x `nn.Linear({sizes['dcp_width']}, {sizes['dcp_width']})` and their "
        f"Adam state after one step, saved with `S3StorageWriter(thread_count=4)`; a parquet file of "
        f"{sizes['parquet_rows']:,} rows x {sizes['parquet_columns']} random float64 columns in "
        f"{sizes['parquet_row_groups']} row groups; one {sizes['object_bytes'] / MIB:.0f} MiB object of random bytes "
        f"({sizes['random_reads']} reads of {sizes['random_read_bytes'] // 1024} KiB at random offsets, and a full "
        f"read); {sizes['small_objects']} objects of {sizes['small_object_bytes'] // 1024} KiB"
    )


def _versions(machine: dict[str, Any]) -> str:
    return ", ".join(f"{name} {version}" for name, version in machine["packages"].items())


def _runs(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


def _servers_lines(info: RunInfo) -> list[str]:
    probe = info.probe
    latencies = [ms for ms in info.latencies_ms if ms > 0]
    proxy = (
        f"- Latency: the workloads whose request pattern decides their time on S3 (DCP and parquet) are also timed "
        f"through `benchmarks/latency_proxy.py`, a TCP proxy that holds back the first byte of each response until "
        f"{' / '.join(map(str, latencies))} ms after the first byte of its request (S3's time to first byte is "
        "tens of ms; loopback's is none). It models first-byte latency only: no bandwidth limit, no per-packet "
        "delay. Columns marked @0 ms are s3rver direct."
        if latencies
        else "- Latency: none added (`--latency-ms 0`); loopback answers at once, S3 after tens of ms."
    )
    return [
        "- Timing server: [s3rver](https://www.npmjs.com/package/s3rver) 3.7.1 (Node.js) on 127.0.0.1, installed "
        "by the suite with npm into a cache folder. It serves a ranged GET in time proportional to the range "
        f"(here a 4 KiB GET took {probe['small_get_ms']:.1f} ms one at a time, {probe['concurrent_small_get_ms']:.1f}"
        f" ms each with many in flight; a HEAD {probe['head_ms']:.1f} ms), and several connections deliver more "
        "than one, as on S3. All seconds come from s3rver.",
        "- Counting server: moto on 127.0.0.1 in a process of its own, wrapped (`benchmarks/moto_patch/"
        "sitecustomize.py`) so that the server counts the GET and HEAD requests on objects it answers and the body "
        "bytes of its successful object GETs (their `Content-Length`: what it set out to send, also to a client that "
        "hung up halfway). Every contender, whatever its HTTP stack (s3torchconnector's native client and boto3 "
        "included), is counted the same way, in one run on moto after its timed runs; moto reads an object whole "
        "for every GET, so its seconds are not used. *counts agree* says whether the client-side count "
        "(botocore event hooks on the session of s3fs and ours) and our `fs.stats` told the same as the server.",
        proxy,
    ]


def _method_lines(info: RunInfo) -> list[str]:
    isolation = (
        "Each contender runs in a worker process of its own (`benchmarks/worker.py`)"
        if info.isolated
        else "All contenders run in the driver's process (`--in-process`; peak RSS is not reported)"
    )
    return [
        f"- {isolation}: warmed up with {_runs(info.warmup)} not measured, then measured for {_runs(info.repeats)} on "
        "each timing endpoint, the contenders of a workload taking turns run by run in a rotating order. "
        "*s (median)* is the median of the timed call (opening the file or building the storage reader included, "
        "checking the result not). *vs fastest peer*: over the fastest contender that is not ours and not the "
        "ceiling (below 1.00x we are faster). *vs ceiling*: over boto3 fetching exactly the needed ranges on 8 "
        "connections, the best a hand-written loader can do; the ceiling is not a peer.",
        "- *fetched / needed*: bytes the server sent over the least the workload needs. *peak RSS Δ MiB*: how much "
        "the worker's resident memory grew at its peak during a timed run (Linux `VmHWM` after `clear_refs`), "
        "including what the run returns. *client CPU s*: user + system CPU of the worker during a timed run.",
        "- Every run's result, timed or counted, is compared bit for bit with the stored data (regenerated from the "
        "same seed in each worker); a mismatch stops the benchmark before anything is written.",
        f"- Data: {describe_sizes(info.sizes)}.",
        "- Caveat: client and servers share this machine's cores; the seconds compare contenders within one table, "
        "on this machine, and nothing more. Requests and bytes do not depend on the machine.",
    ]


def _setup_section(info: RunInfo) -> str:
    machine = info.machine
    cores = machine["cpu_count"]
    lines = [
        "## Machine and method",
        "",
        f"- Machine: {cores} CPU cores ({machine['cpu']}), {machine['memory_gib']} GiB memory, "
        f"{machine['platform']}, Python {machine['python']}, Node.js {machine.get('node', 'unknown')}.",
        f"- Code measured: `fsspec_s3reader` at commit {machine.get('commit', 'unknown')}. "
        f"Versions: {_versions(machine)}.",
        f"- Load average (1, 5, 15 min) at start {info.load_before}, at end {info.load_after}. Client and servers "
        f"together account for up to about 2; more means something else competed for the {cores} cores, and the "
        "seconds are noisier for it.",
        *_servers_lines(info),
        *_method_lines(info),
        "",
    ]
    return "\n".join(lines)


def _as_shipped_sentence(result: WorkloadRuns, verdict: Verdict) -> str:
    """How ours does untuned, when our fastest had options changed: the number a user sees first."""
    shipped = [c.key for c in result.workload.contenders if c.as_shipped]
    summaries = {s.key: s for s in summarize_workload(result)}
    timings = [(summaries[key], summaries[key].timings.get(verdict.endpoint)) for key in shipped if key in summaries]
    untuned = [(summary, timing) for summary, timing in timings if timing is not None and timing.vs_peer is not None]
    if not untuned or any(summary.key == verdict.ours.key for summary, _ in untuned):
        return ""
    summary, timing = min(untuned, key=lambda pair: pair[1].seconds)
    return f" Untuned, {summary.label}: {timing.vs_peer:.2f}x."


def _glance_section(results: list[WorkloadRuns]) -> str:
    wins: list[str] = []
    losses: list[str] = []
    ties: list[str] = []
    for result in results:
        for verdict in verdicts(summarize_workload(result), result.timing_endpoints):
            line = (
                f"- **{result.workload.title}** @{latency_label(verdict.endpoint)}: our fastest, {verdict.ours.label}, "
                f"takes {verdict.ratio:.2f}x the time of the fastest peer, {verdict.peer.label}."
                + _as_shipped_sentence(result, verdict)
            )
            {"wins": wins, "loses": losses, "ties": ties}[verdict.word].append(line)
    lines = ["## At a glance", ""]
    lines += [
        "Our fastest reader against the fastest peer (s3fs, torch's `FsspecReader`, s3torchconnector), per workload "
        f"and latency; within {TIE:.0%} is a tie. Where our fastest has options changed, *untuned* gives ours with "
        "the library's defaults. Details, bytes and the ceiling in the tables further down.",
        "",
    ]
    for title, group in (("Where ours loses", losses), ("Where ours ties", ties), ("Where ours wins", wins)):
        lines += [f"**{title}** ({len(group)}):", "", *(group or ["- nowhere in this run"]), ""]
    return "\n".join(lines)


def _running_section() -> str:
    lines = [
        "## Running it",
        "",
        "Needs the `dcp`, `demo` and `bench` extras and Node.js (18 or newer); the suite installs s3rver "
        "3.7.1 with npm into `~/.cache/fsspec_s3reader-bench/` (or `$XDG_CACHE_HOME`) on first use, starts both "
        "servers and the latency proxy on 127.0.0.1, and stops them when it ends.",
        "",
        "```bash",
        'pip install torch==2.13.0 && pip install -e ".[dcp,demo,bench]"',
        "python -m benchmarks.run --quick  # a smoke run: small data, 1 run each, all in one process",
        "python -m benchmarks.run  # this page, docs/benchmarks.png and a JSON file in benchmarks/results/",
        "python -m benchmarks.run --workloads parquet --latency-ms 0 50  # one workload, other latencies",
        "python -m benchmarks.run --render-only benchmarks/results/RUN.json  # the page again from saved numbers",
        "```",
        "",
        "A contender is one line in its workload's table (`benchmarks/workloads/`); an option the installed "
        "library does not know fails the run rather than being skipped.",
        "",
    ]
    return "\n".join(lines)


def render_page(info: RunInfo, results: list[WorkloadRuns], plot_name: str | None) -> str:
    header = [
        "# Benchmarks",
        "",
        "Our reader strategies side by side with s3fs, torch's `FsspecReader` and s3torchconnector (s3tc), and a "
        "boto3 ceiling, in one run, on local S3 servers. This page is written by `benchmarks/run.py`; rerun it "
        "rather than editing by hand. The raw numbers of every run are in `benchmarks/results/` (not committed).",
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
    if plot_name:
        header += [f"![median seconds per workload and reader]({plot_name})", ""]
    from .targets import targets_section  # it builds on this module's summaries

    sections = ["\n".join(header), _glance_section(results), targets_section(results, info.sizes)]
    sections += [_setup_section(info), _running_section()]
    sections += [workload_section(r) for r in results]
    return "\n".join(sections).rstrip() + "\n"
