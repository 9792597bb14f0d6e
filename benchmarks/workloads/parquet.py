"""Workload 3: pandas reads 2 of 16 columns of a parquet file, through s3fs or through ours."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from fsspec_s3reader import TransferStats

from ..config import KIB, Context
from ..filesystems import storage_options_with_counter
from ..trial import Contender, Trial, Workload, WrongDataError

COLUMNS_READ = ("c03", "c11")
"""Two columns far apart in the file, so no read of one covers the other."""


def table(ctx: Context) -> pd.DataFrame:
    """Random float64 columns: they do not compress, so the file is as big as its data."""
    sizes = ctx.sizes
    values = np.random.default_rng(ctx.seed + 2).random((sizes.parquet_rows, sizes.parquet_columns))
    return pd.DataFrame({f"c{i:02d}": values[:, i] for i in range(sizes.parquet_columns)})


def _needed_bytes(data: bytes) -> int:
    """The footer plus the chunks of the columns read: what a reader that fetches nothing extra fetches."""
    metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    wanted = set(COLUMNS_READ)
    needed = int(metadata.serialized_size) + 8  # footer, its length and the magic
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for column in range(row_group.num_columns):
            chunk = row_group.column(column)
            if chunk.path_in_schema in wanted:
                needed += int(chunk.total_compressed_size)
    return needed


def _prepare(ctx: Context, fs: Any) -> int:
    buffer = io.BytesIO()
    table(ctx).to_parquet(buffer, row_group_size=ctx.sizes.parquet_row_group_rows)
    data = buffer.getvalue()
    if not fs.exists(ctx.parquet_path):
        fs.pipe_file(ctx.parquet_path, data)
    return _needed_bytes(data)


class ParquetTrial(Trial):
    def __init__(self, ctx: Context, protocol: str, **options: Any) -> None:
        storage_options, counter = storage_options_with_counter(ctx, **options)
        super().__init__(counter)
        self._url = f"{protocol}://{ctx.parquet_path}"
        self._storage_options = storage_options
        self._expected = table(ctx)[list(COLUMNS_READ)]
        # pandas resolves storage_options through fsspec's instance cache: this is
        # the very filesystem it reads through, so its counters can be compared.
        self._fs = fsspec.filesystem(protocol, **storage_options)

    def run(self) -> pd.DataFrame:
        return pd.read_parquet(self._url, columns=list(COLUMNS_READ), storage_options=self._storage_options)

    def verify(self, result: pd.DataFrame) -> None:
        if list(result.columns) != list(COLUMNS_READ) or not result.equals(self._expected):
            raise WrongDataError(f"columns {COLUMNS_READ} read from {self._url} differ from the stored table")

    def own_stats(self) -> TransferStats | None:
        stats = getattr(self._fs, "stats", None)
        return stats if isinstance(stats, TransferStats) else None


def _build(protocol: str, **options: Any) -> Callable[[Context], Trial]:
    def build(ctx: Context) -> Trial:
        return ParquetTrial(ctx, protocol, **options)

    return build


PARQUET = Workload(
    key="parquet",
    title="pandas `read_parquet`, 2 of 16 columns",
    what="`pd.read_parquet(url, columns=[2 of 16], storage_options=...)` (pyarrow engine)",
    baseline="s3fs",
    contenders=(
        Contender("s3fs", "`s3://` (s3fs defaults)", _build("s3")),
        Contender("sequential", '`s3reader://`, `reader="sequential"`', _build("s3reader", reader="sequential")),
        Contender(
            "range_based",
            '`s3reader://`, `reader="range_based"` (8 MiB buffer)',
            _build("s3reader", reader="range_based"),
        ),
        Contender(
            "range_based-64k",
            '`s3reader://`, `reader="range_based"`, `buffer_size=64 KiB`',
            _build("s3reader", reader="range_based", buffer_size=64 * KIB),
        ),
    ),
    notes=(
        "pandas hands the path to pyarrow, which opens the file twice: once for the footer (a 64 KiB read at the end),"
        " once for the data, reading each wanted column chunk (about 1 MB here) in one read, from several threads in "
        "no fixed order (pre-buffering merges only chunks less than 8 KiB apart, and these are seven chunks apart). "
        "`sequential` streams each opened file from its start as far as the reads reach: the whole file, twice. A read"
        " smaller than the `range_based` buffer fills the whole buffer, so with the default 8 MiB every ~1 MB chunk "
        "costs an 8 MiB GET and the total nears the file's size; a buffer smaller than a chunk makes every read one "
        "exact GET. s3fs's read-ahead cache keeps one block and fetches 50 MiB past each miss, so pyarrow's "
        "out-of-order reads make it fetch the same bytes again; how often depends on the threads' order, which varies "
        "from run to run."
    ),
    prepare=_prepare,
)

WORKLOADS = {PARQUET.key: PARQUET}
