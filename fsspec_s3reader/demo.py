"""The demo: every reader strategy on a few real workloads, with the requests and bytes each one cost.

Runs against an embedded moto S3 server on 127.0.0.1 unless an endpoint is
given, so it needs no account and no network.
"""

from __future__ import annotations

import io
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .constructor import S3ReaderConstructor
from .filesystem import S3ReaderFileSystem
from .local_server import s3_storage_options

MIB = 1024 * 1024


@dataclass(frozen=True)
class DemoRow:
    workload: str
    strategy: str
    get_requests: int
    head_requests: int
    bytes_fetched: int
    bytes_delivered: int
    seconds: float
    correct: bool


def _measure(fs: S3ReaderFileSystem, workload: str, strategy: str, run: Callable[[], bool]) -> DemoRow:
    before = fs.stats
    started = time.perf_counter()
    correct = run()
    seconds = time.perf_counter() - started
    delta = fs.stats - before
    return DemoRow(
        workload,
        strategy,
        delta.get_requests,
        delta.head_requests,
        delta.bytes_fetched,
        delta.bytes_delivered,
        seconds,
        correct,
    )


def _object_workloads(fs: S3ReaderFileSystem, path: str, data: bytes) -> Iterator[DemoRow]:
    for strategy in ("adaptive", "sequential", "range_based"):

        def full_read(strategy: str = strategy) -> bool:
            with fs.open(path, "rb", reader=strategy) as f:
                return bool(f.read() == data)

        def slice_read(strategy: str = strategy) -> bool:
            with fs.open(path, "rb", reader=strategy) as f:
                f.seek(len(data) // 2)
                return bool(f.read(4) == data[len(data) // 2 : len(data) // 2 + 4])

        yield _measure(fs, f"read all {len(data) // MIB} MiB", strategy, full_read)
        yield _measure(fs, "read 4 bytes mid-object", strategy, slice_read)


def _parquet_workloads(path: str, storage_options: dict[str, Any]) -> Iterator[DemoRow]:
    import fsspec
    import pandas as pd

    frame = pd.DataFrame({f"c{i}": range(i, 300_000 + i) for i in range(8)})
    buffer = io.BytesIO()
    frame.to_parquet(buffer, row_group_size=50_000)
    expected = frame[["c1", "c5"]]
    choices: dict[str, dict[str, Any]] = {
        "adaptive": {"reader": "adaptive"},
        "sequential": {"reader": "sequential"},
        "range_based": {"reader": "range_based"},
        "range_based/64K": {"reader": "range_based", "buffer_size": 64 * 1024},
    }
    for strategy, choice in choices.items():
        options = {**storage_options, **choice}
        # pandas builds its filesystem from storage_options through fsspec's
        # instance cache, so this is the very instance it will read through.
        fs = fsspec.filesystem("s3reader", **options)
        fs.pipe_file(path, buffer.getvalue())

        def read_columns(options: dict[str, Any] = options) -> bool:
            got = pd.read_parquet(f"s3reader://{path}", columns=["c1", "c5"], storage_options=options)
            return bool(got.equals(expected))

        yield _measure(fs, "parquet: 2 of 8 columns", strategy, read_columns)


def _dcp_workloads(prefix: str, storage_options: dict[str, Any]) -> Iterator[DemoRow]:
    try:
        import torch
        from torch.distributed.checkpoint.state_dict_loader import load
        from torch.distributed.checkpoint.state_dict_saver import save
    except ImportError:
        return
    from .dcp import S3StorageReader, S3StorageWriter

    torch.manual_seed(0)
    model = torch.nn.Sequential(*(torch.nn.Linear(512, 512) for _ in range(8)))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 512)).sum().backward()
    optimizer.step()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch notes that no process group is set up: intended here
        save(
            {"model": model.state_dict(), "optim": optimizer.state_dict()},
            storage_writer=S3StorageWriter(f"s3://{prefix}", thread_count=2, **storage_options),
        )
    constructors = {
        "sequential": S3ReaderConstructor.sequential(),
        "range_based": S3ReaderConstructor.range_based(),
        "dcp_optimized": S3ReaderConstructor.dcp_optimized(),  # gaps cheaper to read than to skip (2 MB) are read
        "dcp_optimized/0": S3ReaderConstructor.dcp_optimized(max_gap_size=0),  # exactly the planned bytes
    }
    for strategy, constructor in constructors.items():
        reader = S3StorageReader(f"s3://{prefix}", constructor, **storage_options)

        def load_model_only(reader: S3StorageReader = reader) -> bool:
            target = {"model": {k: torch.zeros_like(v) for k, v in model.state_dict().items()}}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                load(target, storage_reader=reader)
            return all(torch.equal(target["model"][k], v) for k, v in model.state_dict().items())

        yield _measure(reader.filesystem, "DCP: load model, skip optimizer", strategy, load_model_only)


def _format(rows: list[DemoRow]) -> str:
    header = (
        f"{'workload':<34} {'strategy':<16} {'GETs':>5} {'HEADs':>5} {'MiB fetched':>11} {'MiB read':>9} "
        f"{'seconds':>8}  ok"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row.workload:<34} {row.strategy:<16} {row.get_requests:>5} {row.head_requests:>5} "
            f"{row.bytes_fetched / MIB:>11.2f} {row.bytes_delivered / MIB:>9.2f} {row.seconds:>8.3f}  "
            f"{'yes' if row.correct else 'NO'}"
        )
    return "\n".join(lines)


def run_demo(endpoint_url: str | None = None, bucket: str = "fsspec-s3reader-demo", object_mib: int = 32) -> bool:
    """Run every workload, print the table, and return whether every result was correct."""
    with s3_storage_options(endpoint_url) as storage_options:
        where = "embedded S3 server (moto) at" if endpoint_url is None else "S3 endpoint"
        print(f"{where} {storage_options['endpoint_url']}")
        fs = S3ReaderFileSystem(skip_instance_cache=True, **storage_options)
        if not fs.exists(bucket):
            fs.mkdir(bucket)
        data = os.urandom(object_mib * MIB)
        fs.pipe_file(f"{bucket}/demo/sample.bin", data)
        rows = [
            *_object_workloads(fs, f"{bucket}/demo/sample.bin", data),
            *_parquet_workloads(f"{bucket}/demo/table.parquet", storage_options),
            *_dcp_workloads(f"{bucket}/demo/checkpoint", storage_options),
        ]
        print(_format(rows))
        return all(row.correct for row in rows)
