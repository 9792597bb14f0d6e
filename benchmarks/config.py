"""The sizes and repeat counts of one benchmark run, and where it finds its data on the server.

A ``Context`` travels as JSON to every worker process, which rebuilds the
expected data from it (same seed, same bytes) to verify what it reads.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

MIB = 1024 * 1024
KIB = 1024


@dataclass(frozen=True)
class Sizes:
    """How big each workload's data is; ``quick()`` is for a smoke run, ``default()`` for the published table."""

    object_bytes: int
    random_reads: int
    random_read_bytes: int
    parquet_rows: int
    parquet_columns: int
    parquet_row_group_rows: int
    dcp_layers: int
    dcp_width: int

    @staticmethod
    def default() -> Sizes:
        # 6 Linear(2048, 2048) layers: 25.2M parameters, 96 MiB of weights and
        # 192 MiB of Adam state, a ~288 MiB checkpoint.
        return Sizes(
            object_bytes=256 * MIB,
            random_reads=200,
            random_read_bytes=4 * KIB,
            # ~100 MB with pyarrow's defaults (random floats defeat dictionary encoding
            # and compression: ~160 bytes a row), 8 row groups of ~1 MB column chunks.
            parquet_rows=640_000,
            parquet_columns=16,
            parquet_row_group_rows=80_000,
            dcp_layers=6,
            dcp_width=2048,
        )

    @staticmethod
    def quick() -> Sizes:
        return Sizes(
            object_bytes=16 * MIB,
            random_reads=20,
            random_read_bytes=4 * KIB,
            parquet_rows=100_000,
            parquet_columns=16,
            parquet_row_group_rows=25_000,
            dcp_layers=2,
            dcp_width=1024,
        )


@dataclass(frozen=True)
class Context:
    """Everything a contender needs to find and verify its data."""

    storage_options: dict[str, Any]
    """Endpoint and credentials of the S3 server (no session: each worker makes its own)."""
    bucket: str
    sizes: Sizes
    seed: int

    @property
    def object_path(self) -> str:
        return f"{self.bucket}/blob.bin"

    @property
    def parquet_path(self) -> str:
        return f"{self.bucket}/table.parquet"

    @property
    def checkpoint_path(self) -> str:
        return f"{self.bucket}/checkpoint"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @staticmethod
    def from_json(text: str) -> Context:
        raw = json.loads(text)
        return Context(
            storage_options=raw["storage_options"],
            bucket=raw["bucket"],
            sizes=Sizes(**raw["sizes"]),
            seed=raw["seed"],
        )
