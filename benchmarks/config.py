"""The sizes of one benchmark run, the servers it reads from, and where each workload's data lives.

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
    """Small reads at random offsets on loopback (and counted)."""
    random_reads_link: int
    """The first this many of them through the link, where each costs a round trip."""
    random_read_bytes: int
    parquet_rows: int
    parquet_columns: int
    parquet_row_groups: int
    dcp_layers: int
    dcp_width: int
    small_objects: int
    """How many small objects are stored, and read on loopback (and counted)."""
    small_objects_link: int
    """How many of them are read through the link, where one at a time costs a round trip each."""
    small_object_bytes: int
    dataset_files: int
    """Files of the ``pyarrow.dataset`` workload: the parquet table cut into this many, one row group each."""

    @staticmethod
    def default() -> Sizes:
        return Sizes(
            object_bytes=256 * MIB,
            random_reads=200,
            random_reads_link=50,
            random_read_bytes=4 * KIB,
            # 1,415,000 rows x 20 random float64 columns: ~216 MiB (random floats defeat
            # dictionary encoding and compression), 5 row groups of ~2.2 MiB column chunks.
            parquet_rows=1_415_000,
            parquet_columns=20,
            parquet_row_groups=5,
            # 8 Linear(2048, 2048) layers: 33.6M parameters, 128 MiB of weights and
            # 256 MiB of Adam state, a ~384 MiB checkpoint.
            dcp_layers=8,
            dcp_width=2048,
            small_objects=300,
            small_objects_link=100,
            small_object_bytes=64 * KIB,
            dataset_files=8,
        )

    @staticmethod
    def quick() -> Sizes:
        return Sizes(
            object_bytes=16 * MIB,
            random_reads=20,
            random_reads_link=10,
            random_read_bytes=4 * KIB,
            parquet_rows=100_000,
            parquet_columns=20,
            parquet_row_groups=4,
            dcp_layers=2,
            dcp_width=1024,
            small_objects=40,
            small_objects_link=20,
            small_object_bytes=64 * KIB,
            dataset_files=8,
        )


@dataclass(frozen=True)
class Endpoint:
    """One way to reach a server: which server, directly or through the link, and with what credentials."""

    name: str
    """``moto`` (counted), ``s3rver`` (timed on loopback) or ``link`` (s3rver timed through the S3-shaped link)."""
    url: str
    key: str
    secret: str
    counted: bool
    """Whether the server counts requests and bytes (moto); such runs are for counts, not for timings."""
    link: bool = False
    """Whether requests go through the link (``link.py``) rather than straight to the server."""

    @property
    def storage_options(self) -> dict[str, Any]:
        """What s3fs, our filesystem, pandas and the DCP classes are given to reach this endpoint."""
        return {"endpoint_url": self.url, "key": self.key, "secret": self.secret}


@dataclass(frozen=True)
class Context:
    """Everything a contender needs to find and verify its data, on every endpoint of the run."""

    endpoints: tuple[Endpoint, ...]
    bucket: str
    sizes: Sizes
    seed: int
    local_directory: str
    """A folder in memory (tmpfs) where the driver keeps local copies for the memory floors."""

    def endpoint(self, name: str) -> Endpoint:
        for endpoint in self.endpoints:
            if endpoint.name == name:
                return endpoint
        raise KeyError(f"no endpoint {name!r} in this run; it has {[e.name for e in self.endpoints]}")

    def direct(self, endpoint: Endpoint) -> Endpoint:
        """The endpoint that reaches ``endpoint``'s server without the link: for work outside the clock."""
        return self.endpoint("s3rver") if endpoint.link else endpoint

    def small_objects_on(self, endpoint: Endpoint) -> int:
        return self.sizes.small_objects_link if endpoint.link else self.sizes.small_objects

    def random_reads_on(self, endpoint: Endpoint) -> int:
        return self.sizes.random_reads_link if endpoint.link else self.sizes.random_reads

    @property
    def object_path(self) -> str:
        return f"{self.bucket}/blob.bin"

    @property
    def parquet_path(self) -> str:
        return f"{self.bucket}/table.parquet"

    @property
    def checkpoint_path(self) -> str:
        return f"{self.bucket}/checkpoint"

    @property
    def small_objects_prefix(self) -> str:
        return f"{self.bucket}/small"

    @property
    def dataset_prefix(self) -> str:
        return f"{self.bucket}/dataset"

    @property
    def saves_prefix(self) -> str:
        return f"{self.bucket}/saves"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @staticmethod
    def from_json(text: str) -> Context:
        raw = json.loads(text)
        return Context(
            endpoints=tuple(Endpoint(**endpoint) for endpoint in raw["endpoints"]),
            bucket=raw["bucket"],
            sizes=Sizes(**raw["sizes"]),
            seed=raw["seed"],
            local_directory=raw["local_directory"],
        )
