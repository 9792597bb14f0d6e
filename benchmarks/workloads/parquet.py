"""pandas reads 2 of 20 columns of a parquet file: through s3fs, ours, s3torchconnector, or the boto3 ceiling."""

from __future__ import annotations

import functools
import io
import math
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fsspec_s3reader import TransferStats

from ..clients import RangeFetcher, s3tc_client, storage_options_with_counter
from ..config import KIB, MIB, Context, Endpoint, Sizes
from ..trial import Build, Contender, Trial, Workload, WrongDataError

COLUMNS_READ = ("c03", "c14")
"""Two columns far apart in the file, so no read of one covers the other."""

FOOTER_GUESS = 64 * KIB
"""The ceiling's first GET: the file's last 64 KiB, which hold the footer of any file this benchmark writes."""


@functools.lru_cache(maxsize=1)
def _table(sizes: Sizes, seed: int) -> pd.DataFrame:
    values = np.random.default_rng(seed + 2).random((sizes.parquet_rows, sizes.parquet_columns))
    return pd.DataFrame({f"c{i:02d}": values[:, i] for i in range(sizes.parquet_columns)})


def table(ctx: Context) -> pd.DataFrame:
    """Random float64 columns: they do not compress, so the file is as big as its data."""
    return _table(ctx.sizes, ctx.seed)


def expected_columns(ctx: Context) -> pd.DataFrame:
    return table(ctx)[list(COLUMNS_READ)]


def _chunk_range(chunk: Any) -> tuple[int, int]:
    """Where a column chunk's bytes are: from its dictionary page (if any) through its last data page."""
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    return int(start), int(start) + int(chunk.total_compressed_size)


def needed_chunk_ranges(metadata: Any) -> list[tuple[int, int]]:
    wanted = set(COLUMNS_READ)
    ranges = []
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for column in range(row_group.num_columns):
            chunk = row_group.column(column)
            if chunk.path_in_schema in wanted:
                ranges.append(_chunk_range(chunk))
    return ranges


def _needed_bytes(data: bytes) -> int:
    """The footer plus the chunks of the columns read: what a reader that fetches nothing extra fetches."""
    metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    footer = int(metadata.serialized_size) + 8  # footer, its length and the magic
    return footer + sum(end - start for start, end in needed_chunk_ranges(metadata))


@functools.lru_cache(maxsize=1)
def _file_bytes(sizes: Sizes, seed: int) -> bytes:
    buffer = io.BytesIO()
    rows_per_group = math.ceil(sizes.parquet_rows / sizes.parquet_row_groups)
    _table(sizes, seed).to_parquet(buffer, row_group_size=rows_per_group)
    return buffer.getvalue()


def _prepare(ctx: Context, endpoint: Endpoint, fs: Any) -> int:
    data = _file_bytes(ctx.sizes, ctx.seed)
    if not fs.exists(ctx.parquet_path):
        fs.pipe_file(ctx.parquet_path, data)
    return _needed_bytes(data)


class ParquetTrial(Trial):
    """``pd.read_parquet`` of the two columns, through an fsspec URL (s3fs or ours)."""

    def __init__(self, ctx: Context, endpoint: Endpoint, protocol: str, **options: Any) -> None:
        storage_options, counter = storage_options_with_counter(endpoint, **options)
        super().__init__(counter)
        self._url = f"{protocol}://{ctx.parquet_path}"
        self._storage_options = storage_options
        self._expected = expected_columns(ctx)
        # pandas resolves storage_options through fsspec's instance cache: this is
        # the very filesystem it reads through, so its counters can be compared.
        self._fs = fsspec.filesystem(protocol, **storage_options)

    def run(self) -> pd.DataFrame:
        return pd.read_parquet(self._url, columns=list(COLUMNS_READ), storage_options=self._storage_options)

    def verify(self, result: pd.DataFrame) -> None:
        _check_columns(result, self._expected, self._url)

    def own_stats(self) -> TransferStats | None:
        stats = getattr(self._fs, "stats", None)
        return stats if isinstance(stats, TransferStats) else None


def _check_columns(result: pd.DataFrame, expected: pd.DataFrame, where: str) -> None:
    if list(result.columns) != list(COLUMNS_READ) or not result.equals(expected):
        raise WrongDataError(f"columns {COLUMNS_READ} read from {where} differ from the stored table")


class S3tcParquetTrial(Trial):
    """pandas given s3torchconnector's ``range_based()`` reader as a file object."""

    def __init__(self, ctx: Context, endpoint: Endpoint) -> None:
        super().__init__()
        self._client = s3tc_client(endpoint)
        self._bucket, _, self._key = ctx.parquet_path.partition("/")
        self._expected = expected_columns(ctx)

    def run(self) -> pd.DataFrame:
        from s3torchconnector import S3ReaderConstructor

        reader = self._client.get_object(self._bucket, self._key, reader_constructor=S3ReaderConstructor.range_based())
        with reader:
            return pd.read_parquet(reader, columns=list(COLUMNS_READ))

    def verify(self, result: pd.DataFrame) -> None:
        _check_columns(result, self._expected, "s3torchconnector")


class CeilingParquetTrial(Trial):
    """The footer, then exactly the wanted column chunks, 8 GETs at a time; parsed by pyarrow from memory."""

    def __init__(self, ctx: Context, endpoint: Endpoint) -> None:
        super().__init__()
        self._fetcher = RangeFetcher(endpoint)
        self._bucket, _, self._key = ctx.parquet_path.partition("/")
        self._expected = expected_columns(ctx)

    def run(self) -> pd.DataFrame:
        tail, size = self._fetcher.fetch_tail(self._bucket, self._key, FOOTER_GUESS)
        footer_length = int.from_bytes(tail[-8:-4], "little") + 8
        if footer_length > len(tail):  # a footer larger than the guess: fetch the rest of it
            head = self._fetcher.fetch([(self._key, size - footer_length, size - len(tail))], self._bucket)[0]
            tail = head + tail
        # A file-sized buffer of zeros holding only the fetched bytes: pages never written are never
        # touched, so they cost no memory, and pyarrow reads only what the fetches filled.
        sparse = bytearray(size)
        sparse[size - len(tail) :] = tail
        metadata = pq.ParquetFile(pa.BufferReader(pa.py_buffer(sparse))).metadata
        ranges = needed_chunk_ranges(metadata)
        chunks = self._fetcher.fetch([(self._key, start, end) for start, end in ranges], self._bucket)
        for (start, end), chunk in zip(ranges, chunks, strict=True):
            sparse[start:end] = chunk
        return pq.read_table(pa.BufferReader(pa.py_buffer(sparse)), columns=list(COLUMNS_READ)).to_pandas()

    def verify(self, result: pd.DataFrame) -> None:
        _check_columns(result, self._expected, "the ceiling's fetched bytes")


def _fsspec(protocol: str, **options: Any) -> Build:
    def build(ctx: Context, endpoint: Endpoint) -> Trial:
        return ParquetTrial(ctx, endpoint, protocol, **options)

    return build


PARQUET = Workload(
    key="parquet",
    title="pandas `read_parquet`, 2 of 20 columns",
    what="`pd.read_parquet(..., columns=[2 of 20])` (pyarrow engine)",
    contenders=(
        Contender("s3fs", "peer", "`s3://` (s3fs defaults)", _fsspec("s3")),
        Contender(
            "s3fs-1m", "peer", "`s3://`, `default_block_size=1 MiB` (hand-tuned)", _fsspec("s3", default_block_size=MIB)
        ),
        Contender("s3tc-range", "peer", "s3tc `range_based()` reader as the file", S3tcParquetTrial),
        Contender(
            "range_based",
            "ours",
            '`s3reader://`, `reader="range_based"` (8 MiB buffer)',
            _fsspec("s3reader", reader="range_based"),
        ),
        Contender(
            "range_based-64k",
            "ours",
            '`s3reader://`, `reader="range_based"`, `buffer_size=64 KiB`',
            _fsspec("s3reader", reader="range_based", buffer_size=64 * KIB),
        ),
        Contender("adaptive", "ours", "`s3reader://` (defaults: `adaptive`)", _fsspec("s3reader"), as_shipped=True),
        Contender(
            "sequential", "ours", '`s3reader://`, `reader="sequential"`', _fsspec("s3reader", reader="sequential")
        ),
        Contender("ceiling", "ceiling", "boto3: footer + wanted chunks, 8 threads", CeilingParquetTrial),
    ),
    notes=(
        "pandas hands the file to pyarrow, which reads the footer (a 64 KiB read at the end), then each wanted column"
        " chunk (about 2.2 MiB here) in one read, from several threads in no fixed order (pre-buffering merges only "
        "chunks less than 8 KiB apart, and these are eleven chunks apart). Given a URL, pandas opens the file twice "
        "(once for the footer, once for the data); given a file object (s3tc) it opens nothing. `sequential` streams "
        "each opened file from its start as far as the reads reach: nearly the whole file. `adaptive` (the default) "
        "streams the footer read, then switches to ranged reads at the first jump back. A read smaller than the "
        "`range_based` buffer fills the whole buffer; a read at least as large bypasses it and is one exact GET. "
        "s3fs's read-ahead cache keeps one block and fetches a block past each miss (50 MiB by default, 1 MiB "
        "hand-tuned), so out-of-order reads make it fetch bytes again; how often depends on the threads' order, "
        "which varies from run to run. The ceiling sends a HEAD for the size, then GETs the last 64 KiB, then the "
        "wanted chunks (not one suffix-range GET for the footer, which S3 serves but s3rver 3.7.1 does not)."
    ),
    prepare=_prepare,
    latency_sensitive=True,
)

WORKLOADS = {PARQUET.key: PARQUET}
