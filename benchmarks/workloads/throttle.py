"""A storm against a throttling endpoint: four processes read the same objects at once, the excess answered 503.

Each run forks four fresh processes (outside the clock), each with its own
client on the endpoint behind ``benchmarks/throttling.py`` and warmed by one
GET; then, at one signal, every process reads every object with ``cat(list)``.
The proxy serves ``RATE`` GETs a second, all processes together, and answers
the rest ``503 SlowDown``. No client can take less than (successful GETs) /
``RATE``: the table gives each run's time over that (*vs rate*), the share of
GETs the proxy refused, and the objects a process gave up on.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

import s3fs

from fsspec_s3reader import S3ReaderFileSystem

from ..config import Context, Endpoint
from ..throttling import ThrottlingProxy
from ..trial import Build, Contender, Trial, Workload, WrongDataError
from .objects import small_objects_data

PROCESSES = 4
RATE = 150.0
"""GETs a second the proxy serves, all processes together."""
BURST = 15.0
DELAY_MS = 100.0
"""Every answer leaves this long after its request arrived: at ``RATE``, 15 requests in flight reach the limit
(S3's 5,500 GET/s at 30 ms is 165), so how many requests each process keeps in flight decides what it asks."""
MOST_OBJECTS = 75
"""Objects each process reads (fewer in a quick run): 300 GETs at least, two seconds at ``RATE``."""


def _object_count(ctx: Context) -> int:
    return min(MOST_OBJECTS, ctx.sizes.small_objects)


def _paths(ctx: Context) -> list[str]:
    return [f"{ctx.small_objects_prefix}/{index:05d}.bin" for index in range(_object_count(ctx))]


def _expected_digests(ctx: Context) -> dict[str, str]:
    data, size = small_objects_data(ctx.sizes, ctx.seed), ctx.sizes.small_object_bytes
    return {
        path: hashlib.sha1(data[index * size : (index + 1) * size]).hexdigest()
        for index, path in enumerate(_paths(ctx))
    }


def _prepare(ctx: Context, endpoint: Endpoint, fs: Any) -> int:
    """The small objects' workload stores the same objects; store the ones read here if it did not run."""
    data, size = small_objects_data(ctx.sizes, ctx.seed), ctx.sizes.small_object_bytes
    paths = _paths(ctx)
    if not fs.exists(paths[-1]):
        fs.pipe({path: data[index * size : (index + 1) * size] for index, path in enumerate(paths)})
    return PROCESSES * len(paths) * size


def _client(kind: str, url: str, endpoint: Endpoint, options: dict[str, Any]) -> Any:
    credentials: dict[str, Any] = {"endpoint_url": url, "key": endpoint.key, "secret": endpoint.secret}
    if kind == "s3fs":
        return s3fs.S3FileSystem(skip_instance_cache=True, **credentials, **options)
    return S3ReaderFileSystem(skip_instance_cache=True, **credentials, **options)


def _storm_process(
    connection: Connection, kind: str, url: str, endpoint: Endpoint, options: dict[str, Any], paths: list[str]
) -> None:
    """One of the storm's processes: set up, say ready, read every object at the signal, report."""
    logging.disable(logging.WARNING)  # one warning per retry: thousands in a storm without adaptation
    try:
        fs = _client(kind, url, endpoint, options)
        fs.cat_file(paths[0])  # the client, its connections and its credentials, before the clock
        connection.send("ready")
        connection.recv()
        cpu = time.process_time()
        found = fs.cat(paths, on_error="return")
        cpu = time.process_time() - cpu
        failed = [path for path, value in found.items() if isinstance(value, BaseException)]
        digests = {path: hashlib.sha1(value).hexdigest() for path, value in found.items() if path not in failed}
        connection.send((cpu, len(failed), digests))
    except BaseException as exc:
        connection.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        connection.close()


class StormTrial(Trial):
    """The storm through a throttling proxy of its own in front of ``endpoint``; fresh processes every run."""

    def __init__(self, ctx: Context, endpoint: Endpoint, kind: str, options: dict[str, Any]) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._kind = kind
        self._options = options
        self._paths = _paths(ctx)
        self._expected = _expected_digests(ctx)
        self._proxy = ThrottlingProxy(urlsplit(endpoint.url).port or 80, RATE, BURST, DELAY_MS)
        self._processes: list[tuple[Any, Connection]] = []
        self._last: dict[str, float] = {}

    def before_run(self) -> None:
        self._stop_processes()
        context = multiprocessing.get_context("fork")  # this process has run nothing: a cheap, clean copy
        for _ in range(PROCESSES):
            mine, theirs = context.Pipe()
            arguments = (theirs, self._kind, self._proxy.endpoint_url, self._endpoint, self._options, self._paths)
            process = context.Process(target=_storm_process, args=arguments, daemon=True)
            process.start()
            theirs.close()
            self._processes.append((process, mine))
        for _, connection in self._processes:
            answer = connection.recv()
            if answer != "ready":
                raise RuntimeError(f"a storm process failed to start: {answer[1]}")
        self._proxy.reset()  # an empty log and a full bucket, as at the first run

    def run(self) -> list[tuple[float, int, dict[str, str]]]:
        started = time.perf_counter()
        for _, connection in self._processes:
            connection.send("go")
        results = [connection.recv() for _, connection in self._processes]
        seconds = time.perf_counter() - started
        errors = [result[1] for result in results if result[0] == "error"]
        if errors:
            raise RuntimeError(f"a storm process failed: {errors[0]}")
        counts = self._proxy.counts()
        served = counts.requests - counts.throttled
        self._last = {
            "requests": float(counts.requests),
            "throttled": counts.throttled_share,
            "failed": float(sum(result[1] for result in results)),
            "vs_rate": seconds / (served / RATE) if served else float("nan"),
            "cpu": sum(result[0] for result in results),
        }
        return results

    def verify(self, result: list[tuple[float, int, dict[str, str]]]) -> None:
        for _, _, digests in result:
            wrong = [path for path, digest in digests.items() if self._expected[path] != digest]
            if wrong:
                raise WrongDataError(f"the storm read {len(wrong)} objects whose bytes differ from those stored")

    def extra_metrics(self) -> dict[str, float] | None:
        return dict(self._last)

    def _stop_processes(self) -> None:
        for process, connection in self._processes:
            connection.close()
            process.join(timeout=30)
        self._processes = []

    def __del__(self) -> None:
        self._stop_processes()
        self._proxy.stop()


def _storm(kind: str, **options: Any) -> Build:
    def build(ctx: Context, endpoint: Endpoint) -> Trial:
        return StormTrial(ctx, endpoint, kind, options)

    return build


NOT_ON_LINK = 0
"""The proxy's delay is the storm's link; the S3-shaped link in front of it would only add to it."""

THROTTLE = Workload(
    key="throttle",
    title="A storm against a throttling endpoint",
    what=(
        f"{PROCESSES} processes at once each read the same small objects with `cat(list)` through a proxy that serves "
        f"{RATE:.0f} GET/s in all, {DELAY_MS:.0f} ms after each request, and answers the excess `503 SlowDown`"
    ),
    contenders=(
        Contender(
            "adaptive",
            "ours",
            "ours `cat(list)` (default: adaptive concurrency)",
            _storm("ours"),
            as_shipped=True,
            link_runs=NOT_ON_LINK,
        ),
        Contender(
            "fixed",
            "ours",
            "ours `cat(list)`, `adaptive_concurrency=False`",
            _storm("ours", adaptive_concurrency=False),
            link_runs=NOT_ON_LINK,
        ),
        # Five to ten seconds a run: one measured run, no warm-up.
        Contender("s3fs-cat", "peer", "s3fs `cat(list)`", _storm("s3fs"), 1, link_runs=NOT_ON_LINK),
    ),
    notes=(
        "The proxy (`benchmarks/throttling.py`) is a token bucket shared by every connection, as S3's per-prefix "
        "limit is: a GET that finds it empty is answered `503 SlowDown` with S3's XML body and never reaches the "
        "server. *vs rate* is a run's time over the least any client could take, the GETs served over the rate; "
        "*throttled* the share of GETs refused; *failed* the objects a process gave up on after its retries; "
        "*CPU s* the four processes' CPU during the run (*client CPU s* is the driving worker's alone). Ours "
        "retries each GET up to `read_attempts` (5) with a backoff doubling from `retry_backoff` (0.2 s); with "
        "adaptive concurrency (the default) every process also halves its requests in flight when the endpoint "
        "throttles, once per window of requests, and adds one per window of successes; without it, each keeps up "
        "to `max_requests_in_flight` (64) in flight whatever the answers. s3fs retries a throttled GET with "
        "botocore's and its own backoff. Each run starts four fresh processes, so every run includes the window's "
        "start from 8 requests in flight. Times are on loopback only: the proxy's delay is this workload's link."
    ),
    prepare=_prepare,
    extra_columns=(
        ("requests", "GETs and HEADs at the proxy", "{:.0f}"),
        ("throttled", "throttled", "{:.0%}"),
        ("failed", "failed objects", "{:.0f}"),
        ("vs_rate", "vs rate", "{:.2f}x"),
        ("cpu", "CPU s (4 processes)", "{:.2f}"),
    ),
)

WORKLOADS = {THROTTLE.key: THROTTLE}
