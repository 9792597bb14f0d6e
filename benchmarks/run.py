"""Run every workload against every contender on a local moto S3 server, and write the results table.

    python -m benchmarks.run            # the published table: docs/benchmarks.md (a few minutes)
    python -m benchmarks.run --quick    # a smoke run in well under a minute

Raw results go to ``benchmarks/results/`` as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:
    # Run as a script (python benchmarks/run.py): make the package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import s3fs

from benchmarks.config import MIB, Context, Sizes
from benchmarks.environment import describe_machine, load_average
from benchmarks.measure import RunResult
from benchmarks.report import ContenderRuns, RunInfo, WorkloadRuns, render_page, runs_from_json, runs_to_json
from benchmarks.runners import REPO_ROOT, BenchmarkFailed, Runner, start_runner
from benchmarks.server import probe_server, start_server, warn_if_unpatched
from benchmarks.trial import Contender, Workload
from benchmarks.workloads import WORKLOAD_KEYS, get_workload

BUCKET = "fsspec-s3reader-bench"
RESULTS_DIRECTORY = REPO_ROOT / "benchmarks" / "results"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Compare our reader strategies with s3fs and torch's FsspecReader on a local moto S3 server.",
    )
    parser.add_argument("--quick", action="store_true", help="small data, 1 repeat, in-process: a smoke run")
    parser.add_argument("--repeats", type=int, help="measured runs per contender (default 3; quick 1)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs per contender first (default 1)")
    parser.add_argument("--object-mib", type=int, help="size of the object of workloads 1 and 2 (default 256)")
    parser.add_argument("--random-reads", type=int, help="number of small reads in workload 2 (default 200)")
    parser.add_argument("--random-read-kib", type=int, help="size of each small read (default 4)")
    parser.add_argument("--parquet-rows", type=int, help="rows of the 16-column float table (default 640000)")
    parser.add_argument("--dcp-layers", type=int, help="Linear layers in the checkpointed model (default 6)")
    parser.add_argument("--dcp-width", type=int, help="width of each Linear layer (default 2048)")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOAD_KEYS, default=list(WORKLOAD_KEYS))
    parser.add_argument(
        "--contenders",
        nargs="+",
        metavar="KEY",
        help="run only these contender keys (each workload keeps its baseline)",
    )
    isolation = parser.add_mutually_exclusive_group()
    isolation.add_argument(
        "--isolate", dest="isolate", action="store_true", default=None, help="a process per contender (default)"
    )
    isolation.add_argument(
        "--in-process", dest="isolate", action="store_false", help="all in this process (quick's default)"
    )
    parser.add_argument("--unpatched-moto", action="store_true", help="serve ranged GETs as stock moto does (slow)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument(
        "--markdown", type=Path, help="where the page goes (default docs/benchmarks.md; quick: results dir)"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIRECTORY)
    parser.add_argument(
        "--render-only",
        type=Path,
        metavar="JSON",
        help="run nothing: rewrite the page from a results file this script saved (its numbers and command)",
    )
    args = parser.parse_args(argv)
    if args.isolate is None:
        args.isolate = not args.quick
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.markdown is None:
        args.markdown = (
            RESULTS_DIRECTORY / "benchmarks-quick.md" if args.quick else REPO_ROOT / "docs" / "benchmarks.md"
        )
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be at least 1 and --warmup at least 0")
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
        "random_read_bytes": args.random_read_kib * 1024 if args.random_read_kib else None,
        "parquet_rows": args.parquet_rows,
        "dcp_layers": args.dcp_layers,
        "dcp_width": args.dcp_width,
    }
    return dataclasses.replace(sizes, **{name: value for name, value in overrides.items() if value is not None})


def selected_contenders(workload: Workload, wanted: Sequence[str] | None) -> list[Contender]:
    if not wanted:
        return list(workload.contenders)
    return [c for c in workload.contenders if c.key in wanted or c.key == workload.baseline]


def _take_turns(runners: list[tuple[Contender, Runner]], runs: dict[str, list[RunResult]], repeats: int) -> None:
    """Measured runs, one per contender per round, each round starting one contender later."""
    for round_number in range(repeats):
        shift = round_number % len(runners)
        for contender, runner in runners[shift:] + runners[:shift]:
            cap = contender.measured_runs
            if cap is not None and len(runs[contender.key]) >= cap:
                continue
            result = runner.run()
            runs[contender.key].append(result)
            print(
                f"    {contender.key:<20} {result.seconds:8.3f} s  GET {result.get_requests:<5} "
                f"HEAD {result.head_requests:<3} {result.get_bytes / MIB:9.1f} MiB",
                flush=True,
            )


def _warm_up(runners: list[tuple[Contender, Runner]], count: int) -> dict[str, list[RunResult]]:
    """Unmeasured runs: connections opened, lazy imports done, caches of the libraries filled."""
    warmups: dict[str, list[RunResult]] = {}
    for contender, runner in runners:
        runs = 0 if contender.measured_runs is not None else count
        warmups[contender.key] = [runner.run() for _ in range(runs)]
    return warmups


def run_workload(workload: Workload, ctx: Context, args: argparse.Namespace, needed_bytes: int) -> WorkloadRuns:
    contenders = selected_contenders(workload, args.contenders)
    started = time.perf_counter()
    print(f"== {workload.key}: {len(contenders)} contenders", flush=True)
    runners: list[tuple[Contender, Runner]] = []
    try:
        for contender in contenders:  # workers start side by side and set up while the others do
            runners.append((contender, start_runner(workload.key, contender.key, ctx, isolate=args.isolate)))
        for _, runner in runners:
            runner.wait_ready()
        warmups = _warm_up(runners, args.warmup)
        measured: dict[str, list[RunResult]] = {c.key: [] for c in contenders}
        _take_turns(runners, measured, args.repeats)
    finally:
        for _, runner in runners:
            runner.close()
    print(f"   {workload.key} took {time.perf_counter() - started:.1f} s", flush=True)
    return WorkloadRuns(
        workload=workload,
        needed_bytes=needed_bytes,
        contenders=[
            ContenderRuns(c.key, c.label, warmups[c.key], measured[c.key], memory_isolated=args.isolate)
            for c in contenders
        ],
    )


def prepare_data(ctx: Context, workloads: list[Workload]) -> dict[str, int]:
    """Store every workload's data once, and learn how many bytes each needs at the least."""
    # Checksums on upload only slow moto down; the benchmark verifies every byte it reads anyway.
    fs = s3fs.S3FileSystem(
        skip_instance_cache=True,
        config_kwargs={"request_checksum_calculation": "when_required"},
        **ctx.storage_options,
    )
    if not fs.exists(ctx.bucket):
        fs.mkdir(ctx.bucket)
    return {workload.key: workload.prepare(ctx, fs) for workload in workloads}


def write_outputs(args: argparse.Namespace, info: RunInfo, results: list[WorkloadRuns]) -> Path:
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path: Path = args.results_dir / f"{stamp}-{'quick' if args.quick else 'full'}.json"
    payload: dict[str, Any] = {"run": dataclasses.asdict(info), "workloads": [runs_to_json(r) for r in results]}
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(render_page(info, results))
    return json_path


def render_saved(results_file: Path, markdown: Path) -> None:
    """Write the page for a saved run: its numbers, its command line, its date."""
    payload = json.loads(results_file.read_text())
    info = RunInfo(**payload["run"])
    results = [runs_from_json(raw, get_workload(raw["workload"])) for raw in payload["workloads"]]
    markdown.write_text(render_page(info, results))


def main(argv: Sequence[str] | None = None, invoked_as: str = "python -m benchmarks.run") -> int:
    args = parse_args(argv)
    if args.render_only:
        render_saved(args.render_only, args.markdown)
        print(f"wrote {args.markdown} from {args.render_only}")
        return 0
    started = time.perf_counter()
    load_before = load_average()
    sizes = sizes_from_args(args)
    workloads = [get_workload(key) for key in args.workloads]
    server = start_server(patch_ranges=not args.unpatched_moto)
    try:
        ctx = Context(storage_options=server.storage_options, bucket=BUCKET, sizes=sizes, seed=args.seed)
        print(f"S3 server at {server.endpoint_url}; storing the data ...", flush=True)
        needed = prepare_data(ctx, workloads)
        print(f"stored in {time.perf_counter() - started:.1f} s", flush=True)
        probe = probe_server(s3fs.S3FileSystem(skip_instance_cache=True, **ctx.storage_options), ctx.object_path)
        warn_if_unpatched(probe, patched=not args.unpatched_moto)
        print(
            f"server: ranged 4 KiB GET {probe.small_get_ms:.1f} ms ({probe.concurrent_small_get_ms:.1f} ms each when "
            f"concurrent), HEAD {probe.head_ms:.1f} ms",
            flush=True,
        )
        results = [run_workload(w, ctx, args, needed[w.key]) for w in workloads]
    except BenchmarkFailed as failure:
        print(f"BENCHMARK FAILED, nothing written: {failure}", file=sys.stderr)
        return 1
    finally:
        server.stop()
    info = RunInfo(
        command=" ".join([invoked_as, *map(shlex.quote, sys.argv[1:] if argv is None else argv)]),
        date=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        wall_seconds=time.perf_counter() - started,
        machine=describe_machine(),
        load_before=load_before,
        load_after=load_average(),
        probe=dataclasses.asdict(probe),
        moto_patched=not args.unpatched_moto,
        isolated=args.isolate,
        warmup=args.warmup,
        repeats=args.repeats,
        sizes=dataclasses.asdict(sizes),
    )
    json_path = write_outputs(args, info, results)
    print(f"wrote {args.markdown} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(invoked_as="python -m benchmarks.run" if __package__ else "python benchmarks/run.py"))
