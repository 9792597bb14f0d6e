"""The S3 server the benchmark reads from: moto on loopback, in a process of its own, ranged GETs made cheap.

See ``moto_patch/sitecustomize.py`` for why moto needs the patch: without
it a ranged GET costs time in proportion to the whole object's size.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsspec_s3reader.local_server import LocalS3Server

from .config import KIB

PATCH_DIRECTORY = Path(__file__).resolve().parent / "moto_patch"


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


def start_server(patch_ranges: bool = True) -> LocalS3Server:
    """``LocalS3Server(separate_process=True)``, its interpreter given our ``sitecustomize`` when ``patch_ranges``.

    The server process inherits this process's environment when it starts,
    so a ``PYTHONPATH`` set for that moment reaches it and nothing else.
    """
    server = LocalS3Server(separate_process=True)
    if not patch_ranges:
        server.start()
        return server
    search_path = os.pathsep.join(filter(None, [str(PATCH_DIRECTORY), os.environ.get("PYTHONPATH")]))
    with _environment_variable("PYTHONPATH", search_path):
        server.start()
    return server


@dataclass(frozen=True)
class ServerProbe:
    """What one request costs on this server, measured with plain s3fs before the contenders run."""

    small_get_ms: float
    """Median time of a ranged 4 KiB GET on the large object, one at a time."""
    concurrent_small_get_ms: float
    """Time per request of many ranged 4 KiB GETs in flight at once: what concurrency can hide."""
    head_ms: float


def _small_ranges(samples: int) -> tuple[list[int], list[int]]:
    starts = [sample * 100_003 for sample in range(samples)]
    return starts, [start + 4 * KIB for start in starts]


def probe_server(fs: Any, path: str, samples: int = 40) -> ServerProbe:
    """Time small requests, after one that warms the connection and moto's copy of the object."""
    fs.cat_file(path, start=0, end=4 * KIB)
    starts, ends = _small_ranges(samples)
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
    return ServerProbe(
        small_get_ms=statistics.median(get_times) * 1000,
        concurrent_small_get_ms=concurrent * 1000,
        head_ms=statistics.median(head_times) * 1000,
    )


def warn_if_unpatched(probe: ServerProbe, *, patched: bool) -> None:
    """Say so when the range patch evidently did not reach the server (a 4 KiB GET as slow as a whole object)."""
    if patched and probe.small_get_ms > 50:
        warnings.warn(
            f"a ranged 4 KiB GET took {probe.small_get_ms:.0f} ms: the moto range patch seems not to be active "
            f"(is {PATCH_DIRECTORY} on the server's PYTHONPATH, and no other sitecustomize shadowing it?)",
            stacklevel=2,
        )
