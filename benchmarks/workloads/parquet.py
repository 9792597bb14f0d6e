"""Parquet through pandas and pyarrow: 2 of 20 columns of one file, all 20, and a ``pyarrow.dataset`` of 8 files.

Contenders read through s3fs, ours, s3torchconnector's reader as a file,
pyarrow's native ``S3FileSystem`` (what a pandas user who wants speed switches
to) and ``fsspec.parquet.open_parquet_file``; the memory floor reads the same
bytes from memory (a buffer, or a tmpfs copy of the dataset), the network
floor fetches the footer and needed column chunks and parses nothing.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import fsspec
import fsspec.parquet
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from fsspec_s3reader import TransferStats

from ..clients import ours, plain_s3fs, pyarrow_s3, s3tc_client, storage_options_with_counter
from ..config import KIB, MIB, Context, Endpoint, Sizes
from ..floors import NetworkFloorTrial, check_against, plan_pieces
from ..trial import Build, Contender, Trial, Workload, WrongDataError

COLUMNS_READ = ("c03", "c14")
"""Two columns far apart in the file, so no read of one covers the other."""

Columns = tuple[str, ...] | None
"""The columns a workload reads; None: all of them."""


# -- the data -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _table(sizes: Sizes, seed: int) -> pd.DataFrame:
    values = np.random.default_rng(seed + 2).random((sizes.parquet_rows, sizes.parquet_columns))
    return pd.DataFrame({f"c{i:02d}": values[:, i] for i in range(sizes.parquet_columns)})


def table(ctx: Context) -> pd.DataFrame:
    """Random float64 columns: they do not compress, so the file is as big as its data."""
    return _table(ctx.sizes, ctx.seed)


def expected_columns(ctx: Context, columns: Columns) -> pd.DataFrame:
    return table(ctx) if columns is None else table(ctx)[list(columns)]


@functools.lru_cache(maxsize=1)
def _file_bytes(sizes: Sizes, seed: int) -> bytes:
    buffer = io.BytesIO()
    rows_per_group = math.ceil(sizes.parquet_rows / sizes.parquet_row_groups)
    _table(sizes, seed).to_parquet(buffer, row_group_size=rows_per_group)
    return buffer.getvalue()


def _dataset_rows(sizes: Sizes, index: int) -> slice:
    return slice(
        index * sizes.parquet_rows // sizes.dataset_files, (index + 1) * sizes.parquet_rows // sizes.dataset_files
    )


@functools.lru_cache(maxsize=1)
def _dataset_files(sizes: Sizes, seed: int) -> tuple[bytes, ...]:
    """The table cut into ``dataset_files`` files of one row group each, as a dataset writer leaves them."""
    files = []
    for index in range(sizes.dataset_files):
        part = _table(sizes, seed).iloc[_dataset_rows(sizes, index)].reset_index(drop=True)
        buffer = io.BytesIO()
        part.to_parquet(buffer, row_group_size=len(part))
        files.append(buffer.getvalue())
    return tuple(files)


def dataset_names(ctx: Context) -> list[str]:
    return [f"part-{index:03d}.parquet" for index in range(ctx.sizes.dataset_files)]


def _dataset_expected(ctx: Context) -> pa.Table:
    return pa.Table.from_pandas(expected_columns(ctx, COLUMNS_READ), preserve_index=False)


def _chunk_range(chunk: Any) -> tuple[int, int]:
    """Where a column chunk's bytes are: from its dictionary page (if any) through its last data page."""
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    return int(start), int(start) + int(chunk.total_compressed_size)


def needed_ranges(data: bytes, columns: Columns) -> list[tuple[int, int]]:
    """The footer (with its length and magic) and the chunks of the columns read: all a reader needs."""
    metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    footer = int(metadata.serialized_size) + 8
    ranges = [(len(data) - footer, len(data))]
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for column in range(row_group.num_columns):
            chunk = row_group.column(column)
            if columns is None or chunk.path_in_schema in columns:
                ranges.append(_chunk_range(chunk))
    return ranges


def _needed_bytes(data: bytes, columns: Columns) -> int:
    return sum(end - start for start, end in needed_ranges(data, columns))


def local_dataset(ctx: Context) -> Path:
    """The tmpfs copy of the dataset: what its memory floor reads."""
    return Path(ctx.local_directory) / "dataset"


def _prepare_file(ctx: Context, endpoint: Endpoint, fs: Any, columns: Columns) -> int:
    data = _file_bytes(ctx.sizes, ctx.seed)
    if not fs.exists(ctx.parquet_path):
        fs.pipe_file(ctx.parquet_path, data)
    return _needed_bytes(data, columns)


def _prepare_dataset(ctx: Context, endpoint: Endpoint, fs: Any) -> int:
    files = _dataset_files(ctx.sizes, ctx.seed)
    names = dataset_names(ctx)
    if not fs.exists(f"{ctx.dataset_prefix}/{names[-1]}"):
        fs.pipe({f"{ctx.dataset_prefix}/{name}": data for name, data in zip(names, files, strict=True)})
    local = local_dataset(ctx)
    if not local.exists():
        local.mkdir(parents=True)
        for name, data in zip(names, files, strict=True):
            (local / name).write_bytes(data)
    return sum(_needed_bytes(data, COLUMNS_READ) for data in files)


# -- one file through pandas ------------------------------------------------------------------


def _start_without_metadata(fs: Any) -> None:
    """Forget what an fsspec filesystem heard of sizes and listings in earlier runs: each run asks as a first would.

    pyarrow's native client keeps nothing between reads; s3fs keeps its
    listings and ours also keeps ``info`` answers for 2 s, which would spare
    a run its HEADs or LIST when the previous run of the same contender ended
    moments before.
    """
    if isinstance(fs, fsspec.AbstractFileSystem):
        fs.invalidate_cache()


HELD_AHEAD = "held_ahead_mib"
_HELD_AHEAD_COLUMN = ((HELD_AHEAD, "most held ahead per open file MiB", "{:.0f}"),)


def _held_ahead(fs: Any) -> dict[str, float] | None:
    """The most bytes one of our files held fetched ahead at once, in MiB (``fs.stats.peak_bytes_ahead``)."""
    stats = getattr(fs, "stats", None)
    return {HELD_AHEAD: stats.peak_bytes_ahead / MIB} if isinstance(stats, TransferStats) else None


def _check_frame(result: pd.DataFrame, expected: pd.DataFrame, where: str) -> None:
    if list(result.columns) != list(expected.columns) or not result.equals(expected):
        raise WrongDataError(f"the columns read from {where} differ from the stored table")


class PandasTrial(Trial):
    """``pd.read_parquet`` of the columns, by whatever ``read`` does; checked against the table."""

    def __init__(
        self,
        ctx: Context,
        columns: Columns,
        read: Callable[[list[str] | None], pd.DataFrame],
        where: str,
        counter: Any = None,
        fs: Any = None,
    ) -> None:
        super().__init__(counter)
        self._columns = list(columns) if columns is not None else None
        self._read = read
        self._where = where
        self._fs = fs
        self._expected = expected_columns(ctx, columns)

    def run(self) -> pd.DataFrame:
        _start_without_metadata(self._fs)
        return self._read(self._columns)

    def verify(self, result: pd.DataFrame) -> None:
        _check_frame(result, self._expected, self._where)

    def own_stats(self) -> TransferStats | None:
        stats = getattr(self._fs, "stats", None)
        return stats if isinstance(stats, TransferStats) else None

    def extra_metrics(self) -> dict[str, float] | None:
        return _held_ahead(self._fs)


PandasBuild = Callable[[Context, Endpoint, Columns], Trial]


def _fsspec_url(protocol: str, **options: Any) -> PandasBuild:
    """pandas given an fsspec URL and ``storage_options``: s3fs (``s3://``) or ours (``s3reader://``)."""

    def build(ctx: Context, endpoint: Endpoint, columns: Columns) -> Trial:
        storage_options, counter = storage_options_with_counter(endpoint, **options)
        url = f"{protocol}://{ctx.parquet_path}"
        # pandas resolves storage_options through fsspec's instance cache: this is
        # the very filesystem it reads through, so its counters can be compared.
        fs = fsspec.filesystem(protocol, **storage_options)

        def read(cols: list[str] | None) -> pd.DataFrame:
            return pd.read_parquet(url, columns=cols, storage_options=storage_options)

        return PandasTrial(ctx, columns, read, url, counter, fs)

    return build


def _s3tc(ctx: Context, endpoint: Endpoint, columns: Columns) -> Trial:
    """pandas given s3torchconnector's ``range_based()`` reader as a file object."""
    client = s3tc_client(endpoint)
    bucket, _, key = ctx.parquet_path.partition("/")

    def read(cols: list[str] | None) -> pd.DataFrame:
        from s3torchconnector import S3ReaderConstructor

        with client.get_object(bucket, key, reader_constructor=S3ReaderConstructor.range_based()) as reader:
            return pd.read_parquet(reader, columns=cols)

    return PandasTrial(ctx, columns, read, "s3torchconnector")


def _pyarrow_native(ctx: Context, endpoint: Endpoint, columns: Columns) -> Trial:
    """pandas reading through pyarrow's own ``S3FileSystem``: C++, coalescing pre-buffer, parallel column reads."""
    filesystem = pyarrow_s3(endpoint)
    path = ctx.parquet_path

    def read(cols: list[str] | None) -> pd.DataFrame:
        return pd.read_parquet(path, columns=cols, filesystem=filesystem)

    return PandasTrial(ctx, columns, read, "pyarrow's S3FileSystem")


def _open_parquet_file(ctx: Context, endpoint: Endpoint, columns: Columns) -> Trial:
    """``fsspec.parquet.open_parquet_file`` on s3fs: footer first, then the chunks wanted, fetched concurrently."""
    fs, counter = plain_s3fs(endpoint)
    path = ctx.parquet_path

    def read(cols: list[str] | None) -> pd.DataFrame:
        with fsspec.parquet.open_parquet_file(path, fs=fs, columns=cols, engine="pyarrow") as f:
            return pd.read_parquet(f, columns=cols)

    return PandasTrial(ctx, columns, read, "fsspec.parquet", counter)


def _open_parquet_file_ours(ctx: Context, endpoint: Endpoint, columns: Columns) -> Trial:
    """``fsspec.parquet.open_parquet_file`` on our filesystem: the same path, its ranges through our transport."""
    storage_options, counter = storage_options_with_counter(endpoint)
    fs = fsspec.filesystem("s3reader", **storage_options)
    path = ctx.parquet_path

    def read(cols: list[str] | None) -> pd.DataFrame:
        with fsspec.parquet.open_parquet_file(path, fs=fs, columns=cols, engine="pyarrow") as f:
            return pd.read_parquet(f, columns=cols)

    return PandasTrial(ctx, columns, read, "fsspec.parquet on s3reader", counter, fs)


def _memory_floor(ctx: Context, endpoint: Endpoint, columns: Columns) -> Trial:
    """pyarrow reading the file from a buffer in memory, to the same DataFrame."""
    buffer = pa.py_buffer(_file_bytes(ctx.sizes, ctx.seed))

    def read(cols: list[str] | None) -> pd.DataFrame:
        frame: pd.DataFrame = pq.read_table(pa.BufferReader(buffer), columns=cols).to_pandas()
        return frame

    return PandasTrial(ctx, columns, read, "memory")


def _network_floor(ctx: Context, endpoint: Endpoint, columns: Columns) -> Trial:
    data = _file_bytes(ctx.sizes, ctx.seed)
    bucket, _, key = ctx.parquet_path.partition("/")
    pieces = plan_pieces((key, start, end) for start, end in needed_ranges(data, columns))
    return NetworkFloorTrial(endpoint, bucket, pieces, check_against(lambda k, s, e: data[s:e], "the network floor"))


def _pandas_contenders(
    columns: Columns, extra: Sequence[Contender] = (), ours_extra: Sequence[Contender] = ()
) -> tuple[Contender, ...]:
    def at(make: PandasBuild) -> Build:
        return lambda ctx, endpoint: make(ctx, endpoint, columns)

    return (
        Contender("s3fs", "peer", "`s3://` (s3fs defaults)", at(_fsspec_url("s3"))),
        *extra,
        Contender("s3tc-range", "peer", "s3tc `range_based()` reader as the file", at(_s3tc)),
        Contender("pyarrow", "peer", "pyarrow native `S3FileSystem` (C++)", at(_pyarrow_native)),
        Contender("fsspec-parquet", "peer", "`fsspec.parquet.open_parquet_file` (s3fs)", at(_open_parquet_file)),
        Contender(
            "range_based",
            "ours",
            '`s3reader://`, `reader="range_based"` (8 MiB buffer)',
            at(_fsspec_url("s3reader", reader="range_based")),
        ),
        Contender(
            "range_based-64k",
            "ours",
            '`s3reader://`, `reader="range_based"`, `buffer_size=64 KiB`',
            at(_fsspec_url("s3reader", reader="range_based", buffer_size=64 * KIB)),
        ),
        Contender(
            "adaptive", "ours", "`s3reader://` (defaults: `adaptive`)", at(_fsspec_url("s3reader")), as_shipped=True
        ),
        *ours_extra,
        Contender(
            "sequential",
            "ours",
            '`s3reader://`, `reader="sequential"`',
            at(_fsspec_url("s3reader", reader="sequential")),
            # Given a URL, pandas opens the file twice and each open streams it from the start: on one
            # connection through the link that is seconds per run.
            link_runs=1,
        ),
        Contender("memory-floor", "memory-floor", "pyarrow `read_table` of a buffer in memory", at(_memory_floor)),
        Contender(
            "network-floor",
            "network-floor",
            "boto3: footer + needed chunks, ranges of at most 16 MiB, 8 threads, nothing parsed",
            at(_network_floor),
        ),
    )


_PANDAS_NOTES = (
    "pandas hands the file to pyarrow, which reads the footer (a 64 KiB read at the end), then each wanted column "
    "chunk (about 2.2 MiB here) in one read, from several threads in no fixed order (pre-buffering merges only "
    "chunks less than 8 KiB apart). Given a URL, pandas opens the file twice (once for the footer, once for the "
    "data); given a file object (s3tc) it opens nothing. `sequential` streams each opened file from its start as "
    "far as the reads reach. `adaptive` (the default) streams the footer read, then switches to ranged reads at "
    "the first jump back. A read smaller than the `range_based` buffer fills the whole buffer; a read at least as "
    "large bypasses it and is one exact GET. s3fs's read-ahead cache keeps one block and fetches a block past each "
    "miss (50 MiB by default, 1 MiB hand-tuned), so out-of-order reads make it fetch bytes again; how often depends "
    "on the threads' order, which varies from run to run. pyarrow's native `S3FileSystem` (the AWS SDK for C++) "
    "reads the footer, then pre-buffers the wanted chunks, coalesced, with parallel ranged GETs on its own "
    "connections. `fsspec.parquet.open_parquet_file` fetches a footer sample, then every wanted chunk with one "
    "concurrent `cat_ranges`, before pyarrow reads from the cached parts (on s3fs, and on ours, where `cat_ranges` "
    "goes through our transport). The memory floor is pyarrow reading the "
    "same file from a buffer; the network floor fetches the footer and the needed chunks, ranges known in advance, "
    "in one round of GETs on 8 connections. *Most held ahead per open file* (ours): `fs.stats.peak_bytes_ahead`, the "
    "most bytes one file held fetched ahead of pyarrow's reads at once, over the runs; `parquet_prefetch_bytes` "
    "(256 MiB by default) bounds it."
)

PARQUET = Workload(
    key="parquet",
    title="pandas `read_parquet`, 2 of 20 columns",
    what="`pd.read_parquet(..., columns=[2 of 20])` (pyarrow engine)",
    contenders=_pandas_contenders(
        COLUMNS_READ,
        extra=(
            Contender(
                "s3fs-1m",
                "peer",
                "`s3://`, `default_block_size=1 MiB` (hand-tuned)",
                lambda ctx, endpoint: _fsspec_url("s3", default_block_size=MIB)(ctx, endpoint, COLUMNS_READ),
            ),
        ),
        # Only where a projection is read: over all 20 columns it holds the whole file in memory, and a
        # worker per contender of that workload would not fit this machine's memory with one more.
        ours_extra=(
            Contender(
                "fsspec-parquet-ours",
                "ours",
                "`fsspec.parquet.open_parquet_file(fs=S3ReaderFileSystem())`",
                lambda ctx, endpoint: _open_parquet_file_ours(ctx, endpoint, COLUMNS_READ),
            ),
        ),
    ),
    notes=_PANDAS_NOTES,
    prepare=functools.partial(_prepare_file, columns=COLUMNS_READ),
    extra_columns=_HELD_AHEAD_COLUMN,
    least_repeats=30,
)

PARQUET_ALL = Workload(
    key="parquet_all",
    title="pandas `read_parquet`, all 20 columns",
    what="`pd.read_parquet(...)` of every column (pyarrow engine): nearly every byte of the file",
    contenders=_pandas_contenders(None),
    notes=_PANDAS_NOTES,
    prepare=functools.partial(_prepare_file, columns=None),
    extra_columns=_HELD_AHEAD_COLUMN,
    least_repeats=11,
)


# -- a dataset of several files -------------------------------------------------------------


class DatasetTrial(Trial):
    """``pyarrow.dataset.dataset(prefix, filesystem=...).to_table(columns=[2 of 20])``: list, then read each file."""

    def __init__(self, ctx: Context, path: str, filesystem: Any, counter: Any = None) -> None:
        super().__init__(counter)
        self._path = path
        self._filesystem = filesystem
        self._expected = _dataset_expected(ctx)

    def run(self) -> pa.Table:
        _start_without_metadata(self._filesystem)
        dataset = pads.dataset(self._path, filesystem=self._filesystem, format="parquet")
        return dataset.to_table(columns=list(COLUMNS_READ))

    def verify(self, result: pa.Table) -> None:
        if not result.equals(self._expected):
            raise WrongDataError(f"the dataset read from {self._path} differs from the stored table")

    def own_stats(self) -> TransferStats | None:
        stats = getattr(self._filesystem, "stats", None)
        return stats if isinstance(stats, TransferStats) else None

    def extra_metrics(self) -> dict[str, float] | None:
        return _held_ahead(self._filesystem)


def _dataset_fsspec(connect: Callable[..., tuple[Any, Any]], **options: Any) -> Build:
    """The dataset given an fsspec filesystem (pyarrow wraps it in ``PyFileSystem(FSSpecHandler(fs))``)."""

    def build(ctx: Context, endpoint: Endpoint) -> Trial:
        fs, counter = connect(endpoint, **options)
        return DatasetTrial(ctx, ctx.dataset_prefix, fs, counter)

    return build


def _dataset_pyarrow(ctx: Context, endpoint: Endpoint) -> Trial:
    return DatasetTrial(ctx, ctx.dataset_prefix, pyarrow_s3(endpoint))


def _dataset_memory_floor(ctx: Context, endpoint: Endpoint) -> Trial:
    return DatasetTrial(ctx, str(local_dataset(ctx)), None)


def _dataset_network_floor(ctx: Context, endpoint: Endpoint) -> Trial:
    bucket, _, prefix = ctx.dataset_prefix.partition("/")
    files = dict(
        zip([f"{prefix}/{name}" for name in dataset_names(ctx)], _dataset_files(ctx.sizes, ctx.seed), strict=True)
    )
    ranges = [(key, start, end) for key, data in files.items() for start, end in needed_ranges(data, COLUMNS_READ)]
    check = check_against(lambda key, start, end: files[key][start:end], "the network floor")
    return NetworkFloorTrial(endpoint, bucket, plan_pieces(ranges), check)


PARQUET_DATASET = Workload(
    key="parquet_dataset",
    title="`pyarrow.dataset` of 8 parquet files, 2 of 20 columns",
    what="`pyarrow.dataset.dataset(prefix, filesystem=...).to_table(columns=[2 of 20])` over 8 files",
    contenders=(
        Contender("s3fs", "peer", "s3fs (`S3FileSystem()`) as the filesystem", _dataset_fsspec(plain_s3fs)),
        Contender("pyarrow", "peer", "pyarrow native `S3FileSystem` (C++)", _dataset_pyarrow),
        Contender(
            "adaptive",
            "ours",
            "`S3ReaderFileSystem()` as the filesystem (defaults: `adaptive`)",
            _dataset_fsspec(ours),
            as_shipped=True,
        ),
        Contender(
            "range_based-64k",
            "ours",
            '`S3ReaderFileSystem(reader="range_based", buffer_size=64 KiB)`',
            _dataset_fsspec(ours, reader="range_based", buffer_size=64 * KIB),
        ),
        Contender("memory-floor", "memory-floor", "pyarrow dataset of a tmpfs copy", _dataset_memory_floor),
        Contender(
            "network-floor",
            "network-floor",
            "boto3: 8 footers + needed chunks, ranges of at most 16 MiB, 8 threads, nothing parsed",
            _dataset_network_floor,
        ),
    ),
    notes=(
        "The dataset lists the prefix (one LIST request, an *other* request), then reads each file's footer and its "
        "two wanted chunks; pyarrow scans several files at once (fragment readahead). An fsspec filesystem is wrapped"
        " by pyarrow (`PyFileSystem(FSSpecHandler(fs))`) and opened through `fs.open`; pyarrow's native filesystem "
        "reads with its own C++ client. Each file is one row group, as a dataset writer leaves small files. The "
        "memory floor scans a copy in tmpfs; the network floor fetches the 8 footers and 16 chunks in one round."
    ),
    prepare=_prepare_dataset,
    extra_columns=_HELD_AHEAD_COLUMN,
    # 15 rounds put ours at 0.97x-1.12x the native client on loopback in runs minutes apart, the code unchanged
    least_repeats=40,
)

WORKLOADS = {PARQUET.key: PARQUET, PARQUET_ALL.key: PARQUET_ALL, PARQUET_DATASET.key: PARQUET_DATASET}
