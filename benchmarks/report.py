"""From raw runs to what a reader needs: medians, ratios to the fastest peer and to the floors, a markdown page."""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from typing import Any

from .config import MIB
from .measure import FreshMemory, RunResult
from .trial import Kind, Workload, is_floor

TIE = 0.05
"""Within 5% of the fastest peer counts as a tie: less than the noise of one run on a shared machine."""

ENDPOINT_LABELS = {"s3rver": "loopback", "link": "link"}


@dataclass(frozen=True)
class ContenderRuns:
    key: str
    kind: Kind
    label: str
    warmup: dict[str, list[RunResult]]
    """Unmeasured runs, by timing endpoint."""
    timed: dict[str, list[RunResult]]
    """Measured runs, by timing endpoint (``s3rver`` on loopback, ``link`` through the link)."""
    counted: RunResult | None
    """The one run on the counting server (moto)."""
    memory_isolated: bool
    fresh: FreshMemory | None = None
    """One run in a fresh process, for its memory (the DCP loads)."""


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
    vs_floor: float | None
    """Over the higher floor's median on the same endpoint (None without floors)."""


@dataclass(frozen=True)
class Summary:
    """One row of a table."""

    key: str
    kind: Kind
    label: str
    timings: dict[str, Timing]
    cpu_seconds: float | None
    server_cpu_seconds: float | None
    """s3rver's CPU during a loopback run (median): near the run's time, the server bounds it, not the client."""
    peak_rss_growth: int | None
    """Growth during a timed run in a worker that ran before (warm); None where not isolated."""
    fresh_beyond: int | None
    """Peak beyond the state dict in a fresh process (``FreshMemory.beyond_kept``); below zero is an error."""
    get_requests: int | None
    head_requests: int | None
    other_requests: int | None
    get_bytes: int | None
    amplification: float | None
    cpu_ms_per_request: float | None
    """Client CPU of a loopback run over the requests the server counted for the same work."""
    counts_agree: bool | None
    """Did the client-side counter and ``fs.stats`` (where there are any) tell what the server counted?"""
    as_shipped: bool = False
    extras: dict[str, float] = dataclasses.field(default_factory=dict)
    """Medians of the trial's own numbers (``Workload.extra_columns``) over the measured runs on the first endpoint."""

    @property
    def requests(self) -> int | None:
        if self.get_requests is None or self.head_requests is None or self.other_requests is None:
            return None
        return self.get_requests + self.head_requests + self.other_requests


def _median_seconds(runs: list[RunResult]) -> float:
    return statistics.median(r.seconds for r in runs)


def _fastest(result: WorkloadRuns, endpoint: str, kind: Kind) -> float | None:
    times = [_median_seconds(c.timed[endpoint]) for c in result.contenders if c.kind == kind and c.timed.get(endpoint)]
    return min(times) if times else None


def higher_floor(result: WorkloadRuns, endpoint: str) -> tuple[ContenderRuns, float] | None:
    """The slower of the workload's floors on ``endpoint`` (the one no client can beat), with its median."""
    floors = [
        (c, _median_seconds(c.timed[endpoint])) for c in result.contenders if is_floor(c.kind) and c.timed.get(endpoint)
    ]
    return max(floors, key=lambda pair: pair[1]) if floors else None


def _median_extras(runs: list[RunResult], metrics: tuple[tuple[str, str, str], ...]) -> dict[str, float]:
    found = {}
    for metric, _, _ in metrics:
        values = [r.extras[metric] for r in runs if r.extras and metric in r.extras]
        if values:
            found[metric] = statistics.median(values)
    return found


def summarize_workload(result: WorkloadRuns) -> list[Summary]:
    summaries = []
    shipped = {c.key for c in result.workload.contenders if c.as_shipped}
    for runs in result.contenders:
        timings = {}
        for endpoint in result.timing_endpoints:
            measured = runs.timed.get(endpoint) or []
            if not measured:
                continue
            seconds = _median_seconds(measured)
            peer, floor = _fastest(result, endpoint, "peer"), higher_floor(result, endpoint)
            timings[endpoint] = Timing(
                runs=len(measured),
                seconds=seconds,
                vs_peer=seconds / peer if peer else None,
                vs_floor=seconds / floor[1] if floor else None,
            )
        base = runs.timed.get(result.timing_endpoints[0]) or []
        peaks = [r.peak_rss_growth for r in base if r.peak_rss_growth is not None]
        server = runs.counted.server_counts if runs.counted is not None else None
        cpu = statistics.median(r.cpu_seconds for r in base) if base else None
        server_cpus = [r.server_cpu_seconds for r in base if r.server_cpu_seconds is not None]
        requests = sum(server[f] for f in ("get_requests", "head_requests", "other_requests")) if server else 0
        summaries.append(
            Summary(
                key=runs.key,
                kind=runs.kind,
                label=runs.label,
                timings=timings,
                cpu_seconds=cpu,
                server_cpu_seconds=statistics.median(server_cpus) if server_cpus else None,
                peak_rss_growth=max(peaks) if peaks and runs.memory_isolated else None,
                fresh_beyond=runs.fresh.beyond_kept if runs.fresh is not None else None,
                get_requests=server["get_requests"] if server else None,
                head_requests=server["head_requests"] if server else None,
                other_requests=server["other_requests"] if server else None,
                get_bytes=server["get_bytes"] if server else None,
                amplification=server["get_bytes"] / result.needed_bytes if server and result.needed_bytes else None,
                cpu_ms_per_request=cpu * 1000 / requests if cpu is not None and requests else None,
                counts_agree=runs.counted.counts_agree() if runs.counted is not None else None,
                as_shipped=runs.key in shipped,
                extras=_median_extras(base, result.workload.extra_columns),
            )
        )
    return summaries


# -- markdown ---------------------------------------------------------------------------


def endpoint_label(endpoint: str) -> str:
    return ENDPOINT_LABELS.get(endpoint, endpoint)


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def _count(value: int | None) -> str:
    return str(value) if value is not None else "-"


def _seconds(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


def _agreement(summary: Summary) -> str:
    if summary.counts_agree is None:
        return "-"
    return "yes" if summary.counts_agree else "**no**"


def memory_cell(beyond: int | None) -> str:
    """The fresh-process memory beyond the state dict, or the word that it could not be measured."""
    if beyond is None:
        return "-"
    if beyond < 0:
        return f"measuring error ({beyond / MIB:.0f})"
    return f"{beyond / MIB:.0f}"


def _columns(workload: Workload) -> list[str]:
    cells = ["GET", "HEAD", "other"]
    if not workload.uploads:
        cells += ["MiB fetched", "fetched / needed"]
    if workload.per_request_cpu:
        cells.append("CPU ms / request")
    cells.append("beyond state dict MiB (fresh)" if workload.fresh_memory else "peak RSS Δ MiB")
    extra = [heading for _, heading, _ in workload.extra_columns]
    return [*cells, *extra, "client CPU s", "s3rver CPU s", "counts agree"]


def _header(result: WorkloadRuns) -> str:
    cells = ["contender", "whose"]
    for endpoint in result.timing_endpoints:
        at = f" @{endpoint_label(endpoint)}"
        cells += [f"s (median){at}", f"vs fastest peer{at}", f"vs floor{at}"]
    cells += _columns(result.workload)
    aligns = ["---", ":-:"] + ["--:"] * (len(cells) - 3) + [":-:"]
    return "| " + " | ".join(cells) + " |\n|" + "|".join(aligns) + "|"


def _row(summary: Summary, result: WorkloadRuns) -> str:
    workload = result.workload
    cells = [summary.label, summary.kind]
    for endpoint in result.timing_endpoints:
        timing = summary.timings.get(endpoint)
        if timing is None:
            cells += ["not timed", "-", "-"]
            continue
        runs = f" ({timing.runs} run)" if timing.runs == 1 else ""
        seconds = f"{timing.seconds:.3f}{runs}"
        cells += [f"**{seconds}**" if summary.kind == "ours" else seconds, _ratio(timing.vs_peer)]
        cells.append(_ratio(timing.vs_floor))
    cells += [_count(summary.get_requests), _count(summary.head_requests), _count(summary.other_requests)]
    if not workload.uploads:
        cells.append(f"{summary.get_bytes / MIB:.1f}" if summary.get_bytes is not None else "-")
        cells.append(f"{summary.amplification:.2f}" if summary.amplification is not None else "-")
    if workload.per_request_cpu:
        cells.append(f"{summary.cpu_ms_per_request:.2f}" if summary.cpu_ms_per_request is not None else "-")
    if workload.fresh_memory:
        cells.append(memory_cell(summary.fresh_beyond))
    else:
        cells.append(f"{summary.peak_rss_growth / MIB:.0f}" if summary.peak_rss_growth is not None else "-")
    cells += [
        form.format(summary.extras[metric]) if metric in summary.extras else "-"
        for metric, _, form in workload.extra_columns
    ]
    cells += [_seconds(summary.cpu_seconds), _seconds(summary.server_cpu_seconds), _agreement(summary)]
    return "| " + " | ".join(cells) + " |"


def table(result: WorkloadRuns, summaries: list[Summary]) -> str:
    return "\n".join([_header(result), *[_row(s, result) for s in summaries]])


@dataclass(frozen=True)
class Verdict:
    """Ours against the peers, and against the higher floor, on one workload and endpoint."""

    endpoint: str
    ours: Summary
    peer: Summary
    ratio: float
    """Our fastest's time over the fastest peer's."""
    floor: Summary | None
    """The higher floor on this endpoint, if the workload has floors."""

    @property
    def word(self) -> str:
        if self.ratio < 1 - TIE:
            return "wins"
        if self.ratio > 1 + TIE:
            return "loses"
        return "ties"

    @property
    def vs_floor(self) -> float | None:
        return self.ours.timings[self.endpoint].vs_floor


def verdicts(summaries: list[Summary], endpoints: list[str]) -> list[Verdict]:
    found = []
    for endpoint in endpoints:
        timed = [s for s in summaries if endpoint in s.timings]
        ours = [s for s in timed if s.kind == "ours"]
        peers = [s for s in timed if s.kind == "peer"]
        floors = [s for s in timed if is_floor(s.kind)]
        if not ours or not peers:
            continue
        best = min(ours, key=lambda s: s.timings[endpoint].seconds)
        peer = min(peers, key=lambda s: s.timings[endpoint].seconds)
        floor = max(floors, key=lambda s: s.timings[endpoint].seconds) if floors else None
        ratio = best.timings[endpoint].seconds / peer.timings[endpoint].seconds
        found.append(Verdict(endpoint, best, peer, ratio, floor))
    return found


def _bytes_line(summaries: list[Summary], needed_bytes: int) -> str | None:
    counted = [s for s in summaries if s.get_bytes is not None and not is_floor(s.kind)]
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


def _on(endpoint: str) -> str:
    return "Through the link" if endpoint == "link" else f"On {endpoint_label(endpoint)}"


def _floor_sentence(verdict: Verdict) -> str:
    if verdict.floor is None or verdict.vs_floor is None:
        return ""
    floor_s = verdict.floor.timings[verdict.endpoint].seconds
    return (
        f" The higher floor is the {verdict.floor.kind.replace('-', ' ')}, {floor_s:.3f} s: our fastest takes "
        f"{verdict.vs_floor:.2f}x it."
    )


def observations(result: WorkloadRuns, summaries: list[Summary]) -> list[str]:
    """Facts of this run worth a sentence, computed, so that the page never contradicts its table."""
    lines = []
    for verdict in verdicts(summaries, result.timing_endpoints):
        ours_s = verdict.ours.timings[verdict.endpoint].seconds
        peer_s = verdict.peer.timings[verdict.endpoint].seconds
        lines.append(
            f"{_on(verdict.endpoint)}: ours **{verdict.word}**: our fastest, {verdict.ours.label}, "
            f"{ours_s:.3f} s, is {verdict.ratio:.2f}x the fastest peer, {verdict.peer.label}, {peer_s:.3f} s."
            + _floor_sentence(verdict)
        )
    bytes_line = _bytes_line(summaries, result.needed_bytes) if not result.workload.uploads else None
    if bytes_line:
        lines.append(bytes_line)
    for s in summaries:
        if s.counts_agree is False:
            lines.append(
                f"The client-side count or `fs.stats` of {s.label} disagrees with the server's count (see the JSON): "
                "for a reader that cancels GETs under way, `fs.stats` counts bytes received, the server bytes sent."
            )
        if s.fresh_beyond is not None and s.fresh_beyond < 0:
            lines.append(
                f"The fresh-process memory of {s.label} came out {s.fresh_beyond / MIB:.0f} MiB, below the state "
                "dict it holds: that is a measuring error, not a result, and it is not reported as one."
            )
    return lines


def _sizes_sentence(result: WorkloadRuns, sizes: dict[str, Any] | None) -> str:
    if sizes is None:
        return ""
    if result.workload.key == "small_objects":
        return (
            f" {sizes['small_objects']} objects on loopback (and counted), the first {sizes['small_objects_link']} "
            "through the link."
        )
    if result.workload.key == "random_reads":
        return (
            f" {sizes['random_reads']} reads on loopback (and counted), the first {sizes['random_reads_link']} "
            "through the link."
        )
    return ""


def workload_section(result: WorkloadRuns, sizes: dict[str, Any] | None = None) -> str:
    summaries = summarize_workload(result)
    workload = result.workload
    what = "Bytes a save sends" if workload.uploads else "Bytes needed at the least"
    parts = [
        f"## {workload.title}",
        "",
        f"What: {workload.what}. {what}: {result.needed_bytes / MIB:.1f} MiB.{_sizes_sentence(result, sizes)}",
        "",
        table(result, summaries),
        "",
        *[f"- {line}" for line in observations(result, summaries)],
        "",
        workload.notes,
        "",
    ]
    if workload.least_repeats:
        measured = max(len(runs) for contender in result.contenders for runs in contender.timed.values())
        parts[-1:-1] = [
            f"Each contender was measured {_runs(measured)} per endpoint here: a run takes a fraction of a second, "
            "and one run's time varies more than the gaps between contenders.",
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
                "fresh": c.fresh.to_dict() if c.fresh is not None else None,
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
                fresh=FreshMemory.from_dict(c["fresh"]) if c.get("fresh") is not None else None,
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
    link: dict[str, float] | None
    """The link's settings (``delay_ms``, ``mbps``), None when the run timed on loopback only."""
    link_probe: dict[str, Any]
    """``LinkProbe`` as a dict: the proxy's own cost, and the link as measured."""
    isolated: bool
    warmup: int
    repeats: int
    sizes: dict[str, Any]
    quick: bool = False


def describe_sizes(sizes: dict[str, Any]) -> str:
    return (
        f"a checkpoint of {sizes['dcp_layers']} x `nn.Linear({sizes['dcp_width']}, {sizes['dcp_width']})` and their "
        f"Adam state after one step, saved with `S3StorageWriter(thread_count=4)`; a parquet file of "
        f"{sizes['parquet_rows']:,} rows x {sizes['parquet_columns']} random float64 columns in "
        f"{sizes['parquet_row_groups']} row groups, and the same rows as {sizes['dataset_files']} files of one row "
        f"group each; one {sizes['object_bytes'] / MIB:.0f} MiB object of random bytes "
        f"({sizes['random_reads']} reads of {sizes['random_read_bytes'] // 1024} KiB at random offsets, the first "
        f"{sizes['random_reads_link']} of them through the link, and a full read); {sizes['small_objects']} objects "
        f"of {sizes['small_object_bytes'] // 1024} KiB ({sizes['small_objects_link']} of them read through the link)"
    )


def _versions(machine: dict[str, Any]) -> str:
    return ", ".join(f"{name} {version}" for name, version in machine["packages"].items())


def _runs(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


def _path(costs: dict[str, float]) -> str:
    return (
        f"4 KiB GET {costs['small_get_ms']:.1f} ms, one connection {costs['one_connection_mbs']:.0f} MB/s, "
        f"8 connections {costs['parallel_mbs']:.0f} MB/s"
    )


def _link_lines(info: RunInfo) -> list[str]:
    probe = info.link_probe
    size = f"{probe['object_bytes'] / MIB:.0f} MiB"
    overhead = (
        f"- The proxy's own cost, measured before the workloads with boto3 (4 KiB GETs one at a time; one {size} GET "
        f"on one connection; the same {size} as 8 ranges on 8 connections), with the proxy only forwarding (no "
        f"delay, no cap) against s3rver direct: through it {_path(probe['passthrough'])}; direct "
        f"{_path(probe['direct'])}."
    )
    if info.link is None:
        return ["- Link: none in this run (`--no-link`); everything was timed on loopback.", overhead]
    measured = probe["link"]
    return [
        f"- Link: every workload is timed on loopback (s3rver direct, the *@loopback* columns) and through "
        f"`benchmarks/link.py` (*@link*), a user-space TCP proxy in a process of its own that models what S3 "
        f"charges: it holds back each response's first byte until {info.link['delay_ms']:g} ms after the last byte "
        f"of its request (S3 answers after 10-50 ms), and paces each connection, each direction, to "
        f"{info.link['mbps']:g} MB/s with a token bucket of its own (S3 serves one connection at about 85-90 MB/s), "
        "so eight connections get eight times the bandwidth of one, up to what s3rver itself serves. Loopback has "
        "neither: there a client that keeps one connection busy looks as good as one that keeps eight busy.",
        f"- The link as measured with boto3: {_path(measured)}. Where eight connections fall short of eight times "
        "one, this machine is the limit: the link and s3rver share its cores with the client.",
        overhead,
    ]


def _servers_lines(info: RunInfo) -> list[str]:
    probe = info.probe
    return [
        "- Timing server: [s3rver](https://www.npmjs.com/package/s3rver) 3.7.1 (Node.js) on 127.0.0.1, installed "
        "by the suite with npm into a cache folder. It serves a ranged GET in time proportional to the range "
        f"(here a 4 KiB GET took {probe['small_get_ms']:.1f} ms one at a time, {probe['concurrent_small_get_ms']:.1f}"
        f" ms each with many in flight; a HEAD {probe['head_ms']:.1f} ms), and several connections deliver more "
        "than one, as on S3. All seconds come from s3rver.",
        "- Counting server: moto on 127.0.0.1 in a process of its own, wrapped (`benchmarks/moto_patch/"
        "sitecustomize.py`) so that the server counts the GET and HEAD requests on objects it answers, every other "
        "request (listings, uploads), and the body bytes of its successful object GETs (their `Content-Length`: what "
        "it set out to send, also to a client that hung up halfway). Every contender, whatever its HTTP stack (the "
        "native clients of s3torchconnector, pyarrow and obstore, and boto3 included), is counted the same way, in "
        "one run on moto after its timed runs; moto reads an object whole for every GET, so its seconds are not "
        "used. *counts agree* says whether the client-side count (botocore event hooks on the session of s3fs and "
        "ours) and our `fs.stats` told the same as the server.",
        *_link_lines(info),
    ]


def _method_lines(info: RunInfo) -> list[str]:
    isolation = (
        "Each contender runs in a worker process of its own (`benchmarks/worker.py`)"
        if info.isolated
        else "All contenders run in the driver's process (`--in-process`; peak RSS is not reported)"
    )
    return [
        f"- {isolation}: on each timing endpoint, warmed up with {_runs(info.warmup)} not measured (each endpoint "
        f"builds its clients anew), then measured for {_runs(info.repeats)} (more where a workload says so: "
        "runs of a fraction of a second; fewer where a row says so: readers "
        "that would take minutes through the link get one run there and no warm-up, or none), the contenders of a "
        "workload taking turns run by run in a "
        "rotating order. *s (median)* is the median of the timed call (opening the file or building the storage "
        "reader included, checking the result not). *vs fastest peer*: over the fastest contender that is not ours "
        "and not a floor (below 1.00x we are faster).",
        "- Floors, what no client should beat on this machine, each its own row: the *memory floor* does the same "
        "work with every byte already in memory (torch's `FileSystemReader` on a tmpfs copy of the checkpoint; "
        "pyarrow reading the parquet file from a buffer, or the dataset from a tmpfs copy); the *network floor* "
        "fetches every needed byte, ranges known in advance, with boto3 on 8 threads in ranges of at most 16 MiB, "
        "and parses nothing. *vs floor*: over the higher of a workload's floors on the same endpoint. The network "
        "floor is Python: where a request's client CPU is most of its cost (many small requests on loopback), a "
        "native client can beat it, and a single run (`--quick`) can land anywhere.",
        "- *fetched / needed*: bytes the server sent over the least the workload needs. *other*: requests that are "
        "neither GET nor HEAD on an object (listings; for the save, the uploads). *CPU ms / request*: the worker's "
        "user + system CPU during a loopback run, over the requests the server counted for the same work (the "
        "servers run in processes of their own, so this is the client's alone). *peak RSS Δ MiB*: how much the "
        "worker's resident memory grew at its peak during a timed run (Linux `VmHWM` after `clear_refs`), including "
        "what the run returns; a worker that ran before reuses memory it freed, so this understates a first run. "
        "*beyond state dict MiB (fresh)*, for the DCP loads: one load in a new process that ran nothing else, its "
        "peak resident memory minus its memory before the load's target existed, minus the state dict's bytes: "
        "what the reader needs on top of the tensors it fills. A negative number there is a measuring error, and "
        "is shown as one. *client CPU s*: user + system CPU of the worker during a timed run. *s3rver CPU s*: the "
        "server's (one Node.js process) during the same loopback run, sampled by the driver around it (not for the "
        "save, whose check reads the files back): where it is "
        "close to the run's time, the server was busy the whole run, and no client fetching the same bytes in the "
        "same requests could finish sooner.",
        "- Every run's result, timed or counted, is compared bit for bit with the stored data (regenerated from the "
        "same seed in each worker); a mismatch stops the benchmark before anything is written.",
        f"- Data: {describe_sizes(info.sizes)}.",
        "- Caveat: client, servers and the link share this machine's cores; the seconds compare contenders within "
        "one table, on this machine, and nothing more. Requests and bytes do not depend on the machine.",
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
        f"- Load average (1, 5, 15 min) at start {info.load_before}, at end {info.load_after}. Client, servers and "
        f"link together account for up to about 2; more means something else competed for the {cores} cores, and "
        "the seconds are noisier for it.",
        *_servers_lines(info),
        *_method_lines(info),
        "",
    ]
    return "\n".join(lines)


def _as_shipped_sentence(summaries: list[Summary], verdict: Verdict) -> str:
    """How ours does untuned, when our fastest had options changed: the number a user sees first."""
    untuned = [
        (s, s.timings[verdict.endpoint])
        for s in summaries
        if s.as_shipped and verdict.endpoint in s.timings and s.timings[verdict.endpoint].vs_peer is not None
    ]
    if not untuned or any(summary.key == verdict.ours.key for summary, _ in untuned):
        return ""
    summary, timing = min(untuned, key=lambda pair: pair[1].seconds)
    floor = f", {timing.vs_floor:.2f}x the higher floor" if timing.vs_floor is not None else ""
    return f" Untuned, {summary.label}: {timing.vs_peer:.2f}x{floor}."


def _glance_section(results: list[WorkloadRuns]) -> str:
    wins: list[str] = []
    losses: list[str] = []
    ties: list[str] = []
    for result in results:
        summaries = summarize_workload(result)
        for verdict in verdicts(summaries, result.timing_endpoints):
            floor = f"; {verdict.vs_floor:.2f}x the higher floor" if verdict.vs_floor is not None else ""
            line = (
                f"- **{result.workload.title}** @{endpoint_label(verdict.endpoint)}: our fastest, {verdict.ours.label},"
                f" takes {verdict.ratio:.2f}x the time of the fastest peer, {verdict.peer.label}{floor}."
                + _as_shipped_sentence(summaries, verdict)
            )
            {"wins": wins, "loses": losses, "ties": ties}[verdict.word].append(line)
    lines = ["## At a glance", ""]
    lines += [
        "Our fastest reader against the fastest peer (s3fs, torch's `FsspecReader`/`FsspecWriter`, "
        "s3torchconnector, pyarrow's native `S3FileSystem`, `fsspec.parquet`, obstore), per workload, on loopback "
        f"and through the link; within {TIE:.0%} is a tie. Each line also gives our fastest over the higher of the "
        "workload's floors (1.00x would be as fast as any client can be here). Where our fastest has options changed,"
        " *untuned* gives ours with the library's defaults. Details, bytes and the floors in the tables further down.",
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
        "servers and the link on 127.0.0.1, and stops them when it ends.",
        "",
        "```bash",
        'pip install torch==2.13.0 && pip install -e ".[dcp,demo,bench]"',
        "python -m benchmarks.run --quick  # a smoke run: small data, 1 run each, all in one process (~2 minutes)",
        "python -m benchmarks.run  # this page, its plot and a JSON in benchmarks/results/ (20-25 min on 2 cores)",
        "python -m benchmarks.run --workloads parquet --link-ms 50 --link-mbps 60  # one workload, another link",
        "python -m benchmarks.run --render-only benchmarks/results/RUN.json  # the page again from saved numbers",
        "python -m benchmarks.link --upstream-port PORT --delay-ms 20 --mbps 90  # the link alone, before any server",
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
        "Our reader strategies side by side with s3fs, torch's `FsspecReader`, s3torchconnector (s3tc), pyarrow's "
        "native `S3FileSystem`, `fsspec.parquet` and obstore, and with two floors per workload (the same work from "
        "memory, and every needed byte fetched by a plain parallel client), in one run, on local S3 servers, on "
        "loopback and through a link shaped like S3's. This page is written by `benchmarks/run.py`; rerun it rather "
        "than editing by hand. The raw numbers of every run are in `benchmarks/results/` (not committed).",
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
    if info.quick:
        header += [
            "**A quick run** (`--quick`: small data, one run each, all in one process): a smoke test of the suite, "
            "not numbers to quote.",
            "",
        ]
    if plot_name:
        header += [f"![median seconds per workload and reader]({plot_name})", ""]
    from .targets import targets_section  # it builds on this module's summaries

    sections = ["\n".join(header), _glance_section(results), targets_section(results, info.sizes)]
    sections += [_setup_section(info), _running_section()]
    sections += [workload_section(r, info.sizes) for r in results]
    return "\n".join(sections).rstrip() + "\n"
