"""What the link does, and what the proxy that makes it costs, measured with a plain client before the workloads.

Two checks with boto3 (no library of the comparison): the proxy forwarding
only (0 ms, no cap) against s3rver direct, which is the proxy's own overhead;
and the link as configured, which shows that the delay and the per-connection
pace are what was asked for.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .clients import FLOOR_CONNECTIONS, boto3_client
from .config import KIB, Endpoint
from .link import MB, LinkProxy


@dataclass(frozen=True)
class PathCosts:
    """What a plain client measured on one path to s3rver."""

    small_get_ms: float
    """Median time of a ranged 4 KiB GET, one at a time on a warm connection."""
    one_connection_mbs: float
    """MB/s of one GET of the whole probe object on one connection (median of 3)."""
    parallel_mbs: float
    """MB/s of the probe object fetched as ``FLOOR_CONNECTIONS`` ranges at once (median of 3)."""


@dataclass(frozen=True)
class LinkProbe:
    object_bytes: int
    direct: PathCosts
    passthrough: PathCosts
    """Through the proxy with no delay and no cap: the difference from ``direct`` is the proxy's own cost."""
    link: PathCosts | None
    """Through the link as configured (None when the run has no link)."""


def _measure(endpoint: Endpoint, bucket: str, key: str, size: int, samples: int = 20) -> PathCosts:
    client: Any = boto3_client(endpoint)
    client.get_object(Bucket=bucket, Key=key, Range="bytes=0-4095")["Body"].read()  # opens the connection
    small = []
    for sample in range(samples):
        start = (sample * 1_000_003) % (size - 4 * KIB)
        began = time.perf_counter()
        client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{start + 4 * KIB - 1}")["Body"].read()
        small.append(time.perf_counter() - began)
    whole, parallel = [], []
    part = -(-size // FLOOR_CONNECTIONS)
    ranges = [f"bytes={start}-{min(start + part, size) - 1}" for start in range(0, size, part)]
    with ThreadPoolExecutor(FLOOR_CONNECTIONS) as pool:
        for _ in range(3):
            began = time.perf_counter()
            client.get_object(Bucket=bucket, Key=key)["Body"].read()
            whole.append(time.perf_counter() - began)
            began = time.perf_counter()
            list(pool.map(lambda r: client.get_object(Bucket=bucket, Key=key, Range=r)["Body"].read(), ranges))
            parallel.append(time.perf_counter() - began)
    return PathCosts(
        small_get_ms=statistics.median(small) * 1000,
        one_connection_mbs=size / statistics.median(whole) / MB,
        parallel_mbs=size / statistics.median(parallel) / MB,
    )


def probe_link(
    direct: Endpoint, link: Endpoint | None, upstream_port: int, bucket: str, key: str, size: int
) -> LinkProbe:
    """Measure s3rver direct, through a forwarding-only proxy, and through ``link``; ``key`` holds ``size`` bytes."""
    with LinkProxy(upstream_port, delay_ms=0, mbps=0) as passthrough:
        through = Endpoint("passthrough", passthrough.endpoint_url, direct.key, direct.secret, counted=False)
        passthrough_costs = _measure(through, bucket, key, size)
    return LinkProbe(
        object_bytes=size,
        direct=_measure(direct, bucket, key, size),
        passthrough=passthrough_costs,
        link=_measure(link, bucket, key, size) if link is not None else None,
    )
