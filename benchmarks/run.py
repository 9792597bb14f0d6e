"""Run every workload against every contender on local S3 servers, and write the results page and plot.

    python -m benchmarks.run            # the published page: docs/benchmarks.md and .png (20-25 min on 2 cores)
    python -m benchmarks.run --quick    # a smoke run in about 2 minutes

Timed runs go to s3rver, on loopback and through the S3-shaped link
(``link.py``: first-byte delay and a paced bandwidth per connection); one
counted run per contender goes to moto; the DCP loads also get one fresh
process per contender for their memory. Raw results go to
``benchmarks/results/`` as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:
    # Run as a script (python benchmarks/run.py): make the package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import s3fs

from benchmarks.clients import UPLOAD_OPTIONS
from benchmarks.config import MIB, Context, Endpoint, Sizes
from benchmarks.environment import describe_machine, load_average
from benchmarks.link import LinkProxy
from benchmarks.measure import FreshMemory, RunResult
from benchmarks.probe import LinkProbe, probe_link
from benchmarks.report import ContenderRuns, RunInfo, WorkloadRuns, render_page, runs_from_json, runs_to_json
from benchmarks.runners import REPO_ROOT, BenchmarkFailed, Runner, WorkerProcessRunner, start_runner
from benchmarks.servers import (
    S3rver,
    ServerProbe,
    link_endpoint,
    moto_endpoint,
    probe_server,
    s3rver_endpoint,
    start_moto,
)
from benchmarks.trial import Contender, Workload
from benchmarks.workloads import WORKLOAD_KEYS, get_workload

BUCKET = "fsspec-s3reader-bench"
RESULTS_DIRECTORY = REPO_ROOT / "benchmarks" / "results"
PROBE_OBJECT_BYTES = 64 * MIB
"""What the probes read: small GETs (whose cost on s3rver does not depend on the object's size) and whole-object
and parallel reads, long enough through the link (0.7 s at 90 MB/s) for the pace to show."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Compare our reader strategies with s3fs, torch's FsspecReader, s3torchconnector, pyarrow, "
        "obstore and two floors on local S3 servers (s3rver timed on loopback and through an S3-shaped link, "
        "moto counted).",
    )
    parser.add_argument("--quick", action="store_true", help="small data, 1 repeat, in-process: a smoke run")
    parser.add_argument("--repeats", type=int, help="measured runs per contender and endpoint (default 3; quick 1)")
    parser.add_argument(
        "--link-ms", type=float, default=20.0, help="the link's delay to each response's first byte (default 20)"
    )
    parser.add_argument(
        "--link-mbps", type=float, default=90.0, help="the link's bandwidth per connection, MB/s; 0: none (default 90)"
    )
    parser.add_argument("--no-link", action="store_true", help="time on loopback only")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs per contender first (default 1)")
    parser.add_argument("--object-mib", type=int, help="size of the object of workloads 1 and 2 (default 256)")
    parser.add_argument("--random-reads", type=int, help="small reads at random offsets on loopback (default 200)")
    parser.add_argument("--random-reads-link", type=int, help="... of them through the link (default 50)")
    parser.add_argument("--random-read-kib", type=int, help="size of each small read (default 4)")
    parser.add_argument("--parquet-rows", type=int, help="rows of the 20-column float table (default 1415000)")
    parser.add_argument("--dcp-layers", type=int, help="Linear layers in the checkpointed model (default 8)")
    parser.add_argument("--small-objects", type=int, help="number of small objects read on loopback (default 300)")
    parser.add_argument("--small-objects-link", type=int, help="... read through the link (default 100)")
    parser.add_argument("--dcp-width", type=int, help="width of each Linear layer (default 2048)")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOAD_KEYS, default=list(WORKLOAD_KEYS))
    parser.add_argument(
        "--contenders",
        nargs="+",
        metavar="KEY",
        help="run only these contender keys",
    )
    isolation = parser.add_mutually_exclusive_group()
    isolation.add_argument(
        "--isolate", dest="isolate", action="store_true", default=None, help="a process per contender (default)"
    )
    isolation.add_argument(
        "--in-process", dest="isolate", action="store_false", help="all in this process (quick's default; no peak RSS)"
    )
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument(
        "--markdown", type=Path, help="where the page goes (default docs/benchmarks.md; quick: results dir)"
    )
    parser.add_argument("--plot", type=Path, help="where the figure goes (default: beside the page, .png)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIRECTORY)
    parser.add_argument(
        "--render-only",
        type=Path,
        metavar="JSON",
        help="run nothing: rewrite the page from a results file this script saved (its numbers and command)",
    )
    args = parser.parse_args(argv)
    if args.isolate is None:
        # Quick: one interpreter imports torch once, instead of one per contender (peak RSS is then not reported).
        args.isolate = not args.quick
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.markdown is None:
        args.markdown = (
            RESULTS_DIRECTORY / "benchmarks-quick.md" if args.quick else REPO_ROOT / "docs" / "benchmarks.md"
        )
    if args.plot is None:
        args.plot = args.markdown.with_suffix(".png")
    if args.repeats < 1 or args.warmup < 0 or args.link_ms < 0 or args.link_mbps < 0:
        parser.error("--repeats must be at least 1, --warmup, --link-ms and --link-mbps at least 0")
    known = {c.key for key in args.workloads for c in get_workload(key).contenders}
    unknown = sorted(set(args.contenders or ()) - known)
    if unknown:
        parser.error(f"no selected workload has contender(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return args


def sizes_from_args(args: argparse.Namespace) -> Sizes:
    sizes = Sizes.quick() if args.quick else Sizes.default()
    overrides = {
        "object_bytes": args.object_mib * MIB if args.object_mib else None,
        "random_reads": args.random_reads,
        "random_reads_link": args.random_reads_link,
        "random_read_bytes": args.random_read_kib * 1024 if args.random_read_kib else None,
        "parquet_rows": args.parquet_rows,
        "dcp_layers": args.dcp_layers,
        "small_objects": args.small_objects,
        "small_objects_link": args.small_objects_link,
        "dcp_width": args.dcp_width,
    }
    sizes = dataclasses.replace(sizes, **{name: value for name, value in overrides.items() if value is not None})
    return dataclasses.replace(
        sizes,
        small_objects_link=min(sizes.small_objects_link, sizes.small_objects),
        random_reads_link=min(sizes.random_reads_link, sizes.random_reads),
    )


def selected_contenders(workload: Workload, wanted: Sequence[str] | None) -> list[Contender]:
    if not wanted:
        return list(workload.contenders)
    return [c for c in workload.contenders if c.key in wanted]


Runners = list[tuple[Contender, Runner]]
ServerCpu = Callable[[], float | None]
"""s3rver's CPU seconds so far (``S3rver.cpu_seconds``): sampled around each measured run."""


def _print_run(contender: Contender, endpoint: str, result: RunResult, note: str = "") -> None:
    counts = result.server_counts
    counted = (
        f"  GET {counts['get_requests']:<5} HEAD {counts['head_requests']:<3} other {counts['other_requests']:<4}"
        f" {counts['get_bytes'] / MIB:9.1f} MiB"
        if counts is not None
        else note
    )
    if result.extras:
        counted += "  " + " ".join(f"{name} {value:.3g}" for name, value in result.extras.items())
    print(
        f"    {contender.key:<24} {endpoint:<8} {result.seconds:8.3f} s  cpu {result.cpu_seconds:6.2f}{counted}",
        flush=True,
    )


def _run_cap(contender: Contender, endpoint: Endpoint) -> int | None:
    """At most this many measured runs of ``contender`` on ``endpoint`` (None: as many as asked)."""
    return contender.link_runs if endpoint.link else contender.measured_runs


def _build(runners: Runners, endpoint: Endpoint) -> None:
    """Every trial that runs on ``endpoint`` built before the first run there: outside the clock and the count."""
    for contender, runner in runners:
        if _run_cap(contender, endpoint) != 0:
            runner.build(endpoint.name)


def _repeats(workload: Workload, args: argparse.Namespace) -> int:
    """Measured runs per contender: as asked, or the workload's least where it needs more to be told apart."""
    repeats: int = args.repeats
    return repeats if args.quick else max(repeats, workload.least_repeats)


def _take_turns(
    runners: Runners, endpoint: Endpoint, repeats: int, server_cpu: ServerCpu
) -> dict[str, list[RunResult]]:
    """Measured runs, one per contender per round, each round starting one contender later.

    Each run also records the server's CPU while the driver waited for it:
    a reading trial sends requests only in its timed call, so that is the
    server's work for it (``run_workload`` passes no sampler for a workload
    that writes, whose check reads the written files back).
    """
    runs: dict[str, list[RunResult]] = {contender.key: [] for contender, _ in runners}
    for round_number in range(repeats):
        shift = round_number % len(runners)
        for contender, runner in runners[shift:] + runners[:shift]:
            cap = _run_cap(contender, endpoint)
            if cap is not None and len(runs[contender.key]) >= cap:
                continue
            before = server_cpu()
            result = runner.run(endpoint.name)
            after = server_cpu()
            if before is not None and after is not None and after >= before:
                result = dataclasses.replace(result, server_cpu_seconds=after - before)
            runs[contender.key].append(result)
            _print_run(contender, endpoint.name, result)
    return runs


def _warm_up(runners: Runners, endpoint: Endpoint, count: int) -> dict[str, list[RunResult]]:
    """Unmeasured runs: connections opened, lazy imports done, caches of the libraries filled."""
    warmups: dict[str, list[RunResult]] = {}
    for contender, runner in runners:
        warmups[contender.key] = []
        for _ in range(0 if _run_cap(contender, endpoint) is not None else count):
            warmups[contender.key].append(runner.run(endpoint.name))
            _print_run(contender, endpoint.name, warmups[contender.key][-1], "  (warm-up)")
    return warmups


def _count(runners: Runners, counting: Endpoint) -> dict[str, RunResult]:
    """One run per contender on the counting server, with what the server counted during its timed call."""
    _build(runners, counting)
    counted = {}
    for contender, runner in runners:
        counted[contender.key] = runner.run(counting.name)
        _print_run(contender, counting.name, counted[contender.key])
    return counted


def _fresh_memory(workload: Workload, contenders: list[Contender], ctx: Context) -> dict[str, FreshMemory]:
    """One load per contender, each in a new worker that has run nothing else: memory no earlier run left behind."""
    found = {}
    for contender in contenders:
        if contender.kind == "network-floor":
            continue  # it loads nothing: there is no state dict to compare its memory with
        runner = WorkerProcessRunner(workload.key, contender.key, ctx)
        try:
            runner.wait_ready()
            found[contender.key] = runner.fresh("s3rver")
        finally:
            runner.close()
        fresh = found[contender.key]
        beyond = fresh.beyond_kept / MIB
        print(f"    {contender.key:<24} fresh    {fresh.seconds:8.3f} s  peak beyond the state dict {beyond:7.0f} MiB")
    return found


def timing_endpoints(ctx: Context) -> list[Endpoint]:
    return [e for e in ctx.endpoints if not e.counted]


def run_workload(
    workload: Workload, ctx: Context, args: argparse.Namespace, needed_bytes: int, server_cpu: ServerCpu
) -> WorkloadRuns:
    contenders = selected_contenders(workload, args.contenders)
    started = time.perf_counter()
    print(f"== {workload.key}: {len(contenders)} contenders", flush=True)
    runners: Runners = []
    endpoints = timing_endpoints(ctx)
    try:
        for contender in contenders:  # workers start side by side and set up while the others do
            runners.append((contender, start_runner(workload.key, contender.key, ctx, isolate=args.isolate)))
        for _, runner in runners:
            runner.wait_ready()
        warmups, timed = {}, {}
        for endpoint in endpoints:
            _build(runners, endpoint)
            # On every endpoint: each builds its clients anew (a filesystem, its connections, what it learned of
            # the link, its window of requests), so a second endpoint's first run would be as cold as the first's.
            warmups[endpoint.name] = _warm_up(runners, endpoint, args.warmup)
            sampler = (lambda: None) if workload.uploads else server_cpu
            timed[endpoint.name] = _take_turns(runners, endpoint, _repeats(workload, args), sampler)
        counted = _count(runners, next(e for e in ctx.endpoints if e.counted))
    finally:
        for _, runner in runners:
            runner.close()
    fresh = _fresh_memory(workload, contenders, ctx) if workload.fresh_memory and args.isolate else {}
    print(f"   {workload.key} took {time.perf_counter() - started:.1f} s", flush=True)
    names = [e.name for e in endpoints]
    return WorkloadRuns(
        workload=workload,
        needed_bytes=needed_bytes,
        timing_endpoints=names,
        contenders=[
            ContenderRuns(
                key=c.key,
                kind=c.kind,
                label=c.label,
                warmup={e: warmups[e][c.key] for e in names},
                timed={e: timed[e][c.key] for e in names},
                counted=counted[c.key],
                memory_isolated=args.isolate,
                fresh=fresh.get(c.key),
            )
            for c in contenders
        ],
    )


def upload_filesystem(endpoint: Endpoint) -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(skip_instance_cache=True, **endpoint.storage_options, **UPLOAD_OPTIONS)


def prepare_data(ctx: Context, workloads: list[Workload]) -> dict[str, int]:
    """Store every workload's data on each server, and learn how many bytes each needs at the least."""
    needed: dict[str, int] = {}
    for endpoint in ctx.endpoints:
        if endpoint.link:
            continue  # the same server as the direct endpoint
        fs = upload_filesystem(endpoint)
        if not fs.exists(ctx.bucket):
            fs.mkdir(ctx.bucket)
        for workload in workloads:
            count = workload.prepare(ctx, endpoint, fs)
            if needed.setdefault(workload.key, count) != count:
                raise BenchmarkFailed(f"{workload.key}: the data stored on {endpoint.name} differs in layout")
    return needed


@contextlib.contextmanager
def servers(args: argparse.Namespace) -> Iterator[tuple[tuple[Endpoint, ...], int, ServerCpu]]:
    """moto (counted), s3rver (timed) and the link before s3rver; all stopped after. Also s3rver's port and CPU."""
    with contextlib.ExitStack() as stack:
        moto = start_moto()
        stack.callback(moto.stop)
        s3rver = S3rver(BUCKET)
        s3rver.start()
        stack.callback(s3rver.stop)
        endpoints = [moto_endpoint(moto.endpoint_url), s3rver_endpoint(s3rver.endpoint_url)]
        if not args.no_link:
            link = LinkProxy(s3rver.port, args.link_ms, args.link_mbps)
            stack.callback(link.stop)
            endpoints.append(link_endpoint(link.endpoint_url))
        yield tuple(endpoints), s3rver.port, s3rver.cpu_seconds


@contextlib.contextmanager
def memory_folder() -> Iterator[str]:
    """A folder in tmpfs (``/dev/shm`` where there is one) for the memory floors' copies; removed after."""
    shm = Path("/dev/shm")
    folder = tempfile.mkdtemp(prefix="fsspec_s3reader-bench-", dir=shm if shm.is_dir() else None)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_outputs(args: argparse.Namespace, info: RunInfo, results: list[WorkloadRuns]) -> Path:
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path: Path = args.results_dir / f"{stamp}-{'quick' if args.quick else 'full'}.json"
    payload: dict[str, Any] = {"run": dataclasses.asdict(info), "workloads": [runs_to_json(r) for r in results]}
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    write_page(args.markdown, args.plot, info, results)
    return json_path


def write_page(markdown: Path, plot: Path, info: RunInfo, results: list[WorkloadRuns]) -> None:
    from benchmarks.plot import write_plot

    markdown.parent.mkdir(parents=True, exist_ok=True)
    write_plot(results, plot)
    relative = plot.name if plot.parent.resolve() == markdown.parent.resolve() else str(plot.resolve())
    markdown.write_text(render_page(info, results, relative))


def render_saved(results_file: Path, markdown: Path, plot: Path) -> None:
    """Write the page and plot for a saved run: its numbers, its command line, its date."""
    payload = json.loads(results_file.read_text())
    info = RunInfo(**payload["run"])
    results = [runs_from_json(raw, get_workload(raw["workload"])) for raw in payload["workloads"]]
    write_page(markdown, plot, info, results)


def main(argv: Sequence[str] | None = None, invoked_as: str = "python -m benchmarks.run") -> int:
    args = parse_args(argv)
    if args.render_only:
        render_saved(args.render_only, args.markdown, args.plot)
        print(f"wrote {args.markdown} and {args.plot} from {args.render_only}")
        return 0
    started = time.perf_counter()
    load_before = load_average()
    machine = describe_machine()  # before the run: the code measured is the code at its start
    sizes = sizes_from_args(args)
    workloads = [get_workload(key) for key in args.workloads]
    try:
        with servers(args) as (endpoints, s3rver_port, server_cpu), memory_folder() as local:
            ctx = Context(endpoints=endpoints, bucket=BUCKET, sizes=sizes, seed=args.seed, local_directory=local)
            print(f"servers: {', '.join(f'{e.name} {e.url}' for e in endpoints)}; storing the data ...", flush=True)
            needed = prepare_data(ctx, workloads)
            print(f"stored in {time.perf_counter() - started:.1f} s", flush=True)
            probe, link_probe = _probe(ctx, s3rver_port, PROBE_OBJECT_BYTES // (4 if args.quick else 1))
            results = [run_workload(w, ctx, args, needed[w.key], server_cpu) for w in workloads]
    except BenchmarkFailed as failure:
        print(f"BENCHMARK FAILED, nothing written: {failure}", file=sys.stderr)
        return 1
    info = RunInfo(
        command=" ".join([invoked_as, *map(shlex.quote, sys.argv[1:] if argv is None else argv)]),
        date=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        wall_seconds=time.perf_counter() - started,
        machine=machine,
        load_before=load_before,
        load_after=load_average(),
        probe=dataclasses.asdict(probe),
        link={"delay_ms": args.link_ms, "mbps": args.link_mbps} if not args.no_link else None,
        link_probe=dataclasses.asdict(link_probe),
        isolated=args.isolate,
        warmup=args.warmup,
        repeats=args.repeats,
        sizes=dataclasses.asdict(sizes),
        quick=args.quick,
    )
    json_path = write_outputs(args, info, results)
    print(f"wrote {args.markdown}, {args.plot} and {json_path} in {info.wall_seconds:.0f} s")
    return 0


def _probe(ctx: Context, s3rver_port: int, object_bytes: int) -> tuple[ServerProbe, LinkProbe]:
    fs = upload_filesystem(ctx.endpoint("s3rver"))
    path = f"{ctx.bucket}/probe.bin"
    fs.pipe_file(path, bytes(object_bytes))
    probe = probe_server(fs, path)
    print(
        f"s3rver: ranged 4 KiB GET {probe.small_get_ms:.1f} ms ({probe.concurrent_small_get_ms:.1f} ms each when "
        f"concurrent), HEAD {probe.head_ms:.1f} ms",
        flush=True,
    )
    link = next((e for e in ctx.endpoints if e.link), None)
    bucket, _, key = path.partition("/")
    costs = probe_link(ctx.endpoint("s3rver"), link, s3rver_port, bucket, key, object_bytes)
    for name, path_costs in (("direct", costs.direct), ("passthrough", costs.passthrough), ("link", costs.link)):
        if path_costs is not None:
            print(
                f"{name:>11}: 4 KiB GET {path_costs.small_get_ms:.1f} ms, one connection "
                f"{path_costs.one_connection_mbs:.0f} MB/s, 8 connections {path_costs.parallel_mbs:.0f} MB/s",
                flush=True,
            )
    return probe, costs


if __name__ == "__main__":
    sys.exit(main(invoked_as="python -m benchmarks.run" if __package__ else "python benchmarks/run.py"))
