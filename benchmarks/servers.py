"""The servers a benchmark run starts on 127.0.0.1: moto, which counts, and s3rver, which is timed.

moto (in a process of its own, patched by ``moto_patch/sitecustomize.py``)
counts every request and body byte it answers, exactly, for any client; but it
reads an object whole for every GET, so its seconds mean little. s3rver (a
Node.js S3 server, installed with npm into a cache folder on first use) serves
a ranged GET in time proportional to the range and many connections faster than
one, as S3 does: the timed runs go there.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsspec_s3reader.local_server import LocalS3Server

from .config import KIB, Endpoint
from .counting import RequestCounts
from .processes import LOOPBACK, die_with_parent, stop_process

PATCH_DIRECTORY = Path(__file__).resolve().parent / "moto_patch"
S3RVER_VERSION = "3.7.1"
S3RVER_CREDENTIALS = ("S3RVER", "S3RVER")
"""s3rver's fixed access key and secret; moto accepts any credentials, so workers use these for both."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


# -- moto: exact counts ---------------------------------------------------------------


@contextlib.contextmanager
def _environment_variable(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous


def start_moto() -> LocalS3Server:
    """moto in a process of its own, its interpreter given our ``sitecustomize`` (range patch and counts).

    The server process inherits this process's environment when it starts,
    so a ``PYTHONPATH`` set for that moment reaches it and nothing else.
    """
    server = LocalS3Server(separate_process=True)
    search_path = os.pathsep.join(filter(None, [str(PATCH_DIRECTORY), os.environ.get("PYTHONPATH")]))
    with _environment_variable("PYTHONPATH", search_path):
        server.start()
    read_counts(server.endpoint_url)  # fails here, not mid-run, if the counting patch did not load
    return server


def read_counts(endpoint_url: str) -> RequestCounts:
    """The moto server's totals so far (the request that asks is not counted)."""
    try:
        with urllib.request.urlopen(f"{endpoint_url}/__benchmark__/counts", timeout=10) as response:
            return RequestCounts(**json.loads(response.read()))
    except (OSError, ValueError, TypeError) as exc:
        raise RuntimeError(
            f"the moto server at {endpoint_url} does not count requests ({exc}); is {PATCH_DIRECTORY} on its "
            "PYTHONPATH, with no other sitecustomize shadowing it?"
        ) from exc


# -- s3rver: timings ------------------------------------------------------------------


def cache_directory() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "fsspec_s3reader-bench" / f"s3rver-{S3RVER_VERSION}"


def s3rver_script(install: bool = True) -> Path:
    """Where s3rver's entry point is, installed with npm into the cache folder first if it is missing."""
    folder = cache_directory()
    script = folder / "node_modules" / "s3rver" / "bin" / "s3rver.js"
    if script.exists() or not install:
        return script
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(
            f"the benchmark's timing server, s3rver {S3RVER_VERSION}, needs Node.js: {' and '.join(missing)} not "
            "found on PATH. Install Node.js (18 or newer) and rerun; s3rver itself is installed automatically."
        )
    folder.mkdir(parents=True, exist_ok=True)
    print(f"installing s3rver {S3RVER_VERSION} into {folder} (once) ...", flush=True)
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", f"s3rver@{S3RVER_VERSION}"],
        cwd=folder,
        check=True,
    )
    if not script.exists():
        raise RuntimeError(f"npm installed s3rver {S3RVER_VERSION} into {folder}, but {script} is not there")
    return script


def _node_major() -> int:
    try:
        version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout
        return int(version.strip().lstrip("v").split(".")[0])
    except (OSError, subprocess.CalledProcessError, ValueError):
        return 0


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds the threads of process ``pid`` alive now have used; None off Linux or once it ended.

    s3rver is one Node.js process: on this two-core machine, with a client
    reading from it as fast as it serves, its CPU is what a loopback run
    waits on. A run whose time is close to the server's CPU during it is
    bound by the server, not by the client. Read from each thread's
    scheduler statistics (microseconds) where the kernel keeps them (Node's
    threads live as long as the process, so two samples' difference is what
    it did in between), else from ``/proc/PID/stat`` in clock ticks (10 ms:
    coarse for a run of 80 ms, but the sign of the bound).
    """
    try:
        runtimes = [_thread_runtime_ms(task / "sched") for task in Path(f"/proc/{pid}/task").iterdir()]
        if any(runtimes):
            return sum(ms for ms in runtimes if ms is not None) / 1000
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _thread_runtime_ms(sched: Path) -> float | None:
    """A thread's ``se.sum_exec_runtime`` (milliseconds); None for a thread that ended, or a kernel without it."""
    try:
        text = sched.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("se.sum_exec_runtime"):
            return float(line.split(":", 1)[1])
    return None


class S3rver:
    """s3rver on 127.0.0.1 with one bucket, its data in a temporary folder removed by ``stop``."""

    def __init__(self, bucket: str) -> None:
        self._bucket = bucket
        self._process: subprocess.Popen[bytes] | None = None
        self._data: tempfile.TemporaryDirectory[str] | None = None
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        script = s3rver_script()
        self._data = tempfile.TemporaryDirectory(prefix="s3rver-")
        self.port = _free_port()
        # OpenSSL 3 (Node.js 17 and newer) disables DES unless asked, and s3rver 3.7.1 makes ListObjectsV2's
        # continuation tokens with DES: without the legacy provider a truncated listing (s3fs's info of a
        # directory asks for one key) answers InternalError.
        node = ["node", "--openssl-legacy-provider"] if _node_major() >= 17 else ["node"]
        command = [*node, str(script), "-d", self._data.name, "-a", LOOPBACK, "-p", str(self.port)]
        self._process = subprocess.Popen(
            [*command, "-s", "--configure-bucket", self._bucket],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
        self._wait_until_ready()

    def cpu_seconds(self) -> float | None:
        """User and system CPU s3rver has used so far (Linux); None where the system does not tell."""
        return process_cpu_seconds(self._process.pid) if self._process is not None else None

    def _wait_until_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                break
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"s3rver did not start listening on port {self.port} within {timeout:.0f} s")

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)
            self._process = None
        if self._data is not None:
            self._data.cleanup()
            self._data = None


def s3rver_endpoint(url: str) -> Endpoint:
    key, secret = S3RVER_CREDENTIALS
    return Endpoint(name="s3rver", url=url, key=key, secret=secret, counted=False)


def link_endpoint(url: str) -> Endpoint:
    """s3rver reached through the link (``link.py``) listening at ``url``."""
    key, secret = S3RVER_CREDENTIALS
    return Endpoint(name="link", url=url, key=key, secret=secret, counted=False, link=True)


def moto_endpoint(url: str) -> Endpoint:
    key, secret = S3RVER_CREDENTIALS
    return Endpoint(name="moto", url=url, key=key, secret=secret, counted=True)


# -- what one request costs -----------------------------------------------------------


@dataclass(frozen=True)
class ServerProbe:
    """What one request costs on the timing server, measured with plain s3fs before the contenders run."""

    small_get_ms: float
    """Median time of a ranged 4 KiB GET on the large object, one at a time."""
    concurrent_small_get_ms: float
    """Time per request of many ranged 4 KiB GETs in flight at once: what concurrency can hide."""
    head_ms: float


def probe_server(fs: Any, path: str, samples: int = 40) -> ServerProbe:
    """Time small requests, after one that warms the connection."""
    fs.cat_file(path, start=0, end=4 * KIB)
    size = fs.size(path)
    starts = [(sample * 100_003) % (size - 4 * KIB) for sample in range(samples)]
    ends = [start + 4 * KIB for start in starts]
    get_times, head_times = [], []
    for start, end in zip(starts, ends, strict=True):
        began = time.perf_counter()
        fs.cat_file(path, start=start, end=end)
        get_times.append(time.perf_counter() - began)
        began = time.perf_counter()
        fs.info(path, refresh=True)
        head_times.append(time.perf_counter() - began)
    began = time.perf_counter()
    fs.cat_ranges([path] * samples, starts, ends)
    concurrent = (time.perf_counter() - began) / samples
    if statistics.median(get_times) > 0.2:
        warnings.warn("a ranged 4 KiB GET took over 200 ms on the timing server: is it s3rver?", stacklevel=2)
    return ServerProbe(
        small_get_ms=statistics.median(get_times) * 1000,
        concurrent_small_get_ms=concurrent * 1000,
        head_ms=statistics.median(head_times) * 1000,
    )
