"""pandas and pyarrow read through s3reader:// exactly what they read from local disk."""

from __future__ import annotations

from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fault_proxy import FaultProxy
from pyarrow.fs import FSSpecHandler, PyFileSystem

from fsspec_s3reader import S3ReaderFileSystem

READER_CHOICES = [
    {},
    {"reader": "adaptive", "first_readahead": 1000, "buffer_size": 512},
    {"reader": "sequential"},
    {"reader": "range_based"},
    {"reader": "range_based", "buffer_size": 0},
    {"reader": "range_based", "buffer_size": 4096},
]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = 20_000
    return pd.DataFrame(
        {
            "id": np.arange(rows, dtype=np.int64),
            "value": rng.normal(size=rows),
            "flag": rng.integers(0, 2, size=rows).astype(bool),
            "name": [f"row-{i % 97}" for i in range(rows)],
            "small": rng.integers(-100, 100, size=rows).astype(np.int8),
        }
    )


@pytest.fixture
def parquet_file(tmp_path: Path, frame: pd.DataFrame, fs: S3ReaderFileSystem, bucket: str) -> tuple[Path, str]:
    local = tmp_path / "t.parquet"
    frame.to_parquet(local, row_group_size=3_000)
    fs.put_file(str(local), f"{bucket}/t.parquet")
    return local, f"{bucket}/t.parquet"


@pytest.fixture
def csv_file(tmp_path: Path, frame: pd.DataFrame, fs: S3ReaderFileSystem, bucket: str) -> tuple[Path, str]:
    local = tmp_path / "t.csv"
    frame.to_csv(local, index=False)
    fs.put_file(str(local), f"{bucket}/t.csv")
    return local, f"{bucket}/t.csv"


def _options(choice: dict, storage_options: dict) -> dict:
    return {**storage_options, **choice}


@pytest.mark.parametrize("choice", READER_CHOICES)
def test_read_parquet_columns_matches_local(
    parquet_file: tuple[Path, str], storage_options: dict, choice: dict
) -> None:
    local, remote = parquet_file
    expected = pd.read_parquet(local, columns=["id", "name"])
    got = pd.read_parquet(
        f"s3reader://{remote}", columns=["id", "name"], storage_options=_options(choice, storage_options)
    )
    pd.testing.assert_frame_equal(got, expected)


@pytest.mark.parametrize("choice", READER_CHOICES)
def test_read_csv_matches_local(csv_file: tuple[Path, str], storage_options: dict, choice: dict) -> None:
    local, remote = csv_file
    pd.testing.assert_frame_equal(
        pd.read_csv(f"s3reader://{remote}", storage_options=_options(choice, storage_options)), pd.read_csv(local)
    )


@pytest.mark.parametrize("choice", READER_CHOICES)
def test_pyarrow_through_fsspec_handler_matches_local(
    parquet_file: tuple[Path, str], storage_options: dict, choice: dict
) -> None:
    local, remote = parquet_file
    arrow_fs = PyFileSystem(
        FSSpecHandler(S3ReaderFileSystem(skip_instance_cache=True, **_options(choice, storage_options)))
    )
    got = pq.read_table(remote, filesystem=arrow_fs, columns=["value", "flag", "small"])
    assert got.equals(pq.read_table(local, columns=["value", "flag", "small"]))


@pytest.mark.parametrize("choice", READER_CHOICES)
def test_pyarrow_through_a_file_object_matches_local(
    parquet_file: tuple[Path, str], storage_options: dict, choice: dict
) -> None:
    local, remote = parquet_file
    fs = S3ReaderFileSystem(skip_instance_cache=True, **_options(choice, storage_options))
    with fs.open(remote, "rb") as f:
        got = pq.read_table(f)
    assert got.equals(pq.read_table(local))


def test_a_column_subset_fetches_less_than_the_file_with_a_small_buffer(
    parquet_file: tuple[Path, str], storage_options: dict
) -> None:
    local, remote = parquet_file
    fs = S3ReaderFileSystem(reader="range_based", buffer_size=0, skip_instance_cache=True, **storage_options)
    with fs.open(remote, "rb") as f:
        pq.read_table(f, columns=["small"])
    assert fs.stats.bytes_fetched < local.stat().st_size / 2


def test_read_parquet_with_default_options_fetches_little_more_than_the_columns_read(
    tmp_path: Path, storage_options: dict, bucket: str
) -> None:
    values = np.random.default_rng(11).random((120_000, 8))
    table = pd.DataFrame({f"c{i}": values[:, i] for i in range(8)})
    local = tmp_path / "wide.parquet"
    table.to_parquet(local, row_group_size=40_000)
    fs = S3ReaderFileSystem(skip_instance_cache=True, **storage_options)
    fs.put_file(str(local), f"{bucket}/wide.parquet")
    read_through = fsspec.filesystem("s3reader", **storage_options)  # the instance pandas gets from fsspec's cache
    read_through.reset_stats()
    got = pd.read_parquet(f"s3reader://{bucket}/wide.parquet", columns=["c2", "c6"], storage_options=storage_options)
    pd.testing.assert_frame_equal(got, table[["c2", "c6"]])
    metadata = pq.ParquetFile(local).metadata
    needed = metadata.serialized_size + 8
    for group in range(metadata.num_row_groups):
        for column in range(metadata.num_columns):
            chunk = metadata.row_group(group).column(column)
            if chunk.path_in_schema in ("c2", "c6"):
                needed += chunk.total_compressed_size
    assert read_through.stats.bytes_fetched <= 1.25 * needed


# -- parquet read ahead, through every door pandas and pyarrow users take --------------------


@pytest.fixture
def wide_parquet(
    tmp_path: Path, storage_options: dict, bucket: str, fault_proxy: FaultProxy, proxied_options: dict
) -> tuple[Path, str, dict]:
    """A wide file of 6 row groups on the server, and storage options that reach it through the request log."""
    values = np.random.default_rng(13).random((120_000, 10))
    local = tmp_path / "wide.parquet"
    pd.DataFrame({f"c{i}": values[:, i] for i in range(10)}).to_parquet(local, row_group_size=20_000)
    S3ReaderFileSystem(skip_instance_cache=True, **storage_options).put_file(str(local), f"{bucket}/wide.parquet")
    fault_proxy.reset()
    return local, f"{bucket}/wide.parquet", proxied_options


def _chunk_spans(local: Path, columns: tuple[str, ...]) -> list[tuple[int, int]]:
    metadata = pq.ParquetFile(local).metadata
    spans = []
    for group in range(metadata.num_row_groups):
        for column in range(metadata.num_columns):
            chunk = metadata.row_group(group).column(column)
            if chunk.path_in_schema in columns:
                start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
                spans.append((start, start + chunk.total_compressed_size))
    return spans


def _gets_stay_within(fault_proxy: FaultProxy, local: Path, columns: tuple[str, ...]) -> None:
    """Every GET asks for the footer's end of the file or for chunks of the columns read; bytes <= 1.1x needed."""
    size = local.stat().st_size
    allowed = [(size - 65536, size), *_chunk_spans(local, columns)]
    fetched = 0
    for request in fault_proxy.requests_of("GET"):
        first, _, last = (request.range or "bytes=0-").removeprefix("bytes=").partition("-")
        if not first:  # a suffix: the last bytes
            start, end = size - int(last), size
        else:
            start, end = int(first), int(last) + 1 if last else size
        assert any(s <= start and end <= e for s, e in allowed), f"{request.range} reads beyond what is needed"
        fetched += end - start
    needed = sum(e - s for s, e in _chunk_spans(local, columns)) + pq.ParquetFile(local).metadata.serialized_size + 8
    assert fetched <= 1.1 * needed + 2 * 65536  # each open's first GET also brings the footer's end


def test_pyarrow_read_table_with_our_filesystem_fetches_only_the_columns_read(
    wide_parquet: tuple[Path, str, dict], fault_proxy: FaultProxy
) -> None:
    local, remote, options = wide_parquet
    fs = S3ReaderFileSystem(skip_instance_cache=True, **options)
    got = pq.read_table(remote, filesystem=fs, columns=["c3", "c8"])
    assert got.equals(pq.read_table(local, columns=["c3", "c8"]))
    _gets_stay_within(fault_proxy, local, ("c3", "c8"))


def test_the_bytes_held_ahead_per_file_stay_within_parquet_prefetch_bytes(
    wide_parquet: tuple[Path, str, dict],
) -> None:
    local, remote, options = wide_parquet
    budget = 200_000  # a few of this file's chunks (each about 160 KB): the budget binds
    options = {**options, "parquet_prefetch_bytes": budget}
    fs = fsspec.filesystem("s3reader", **options)  # the instance pandas gets from fsspec's cache
    fs.reset_stats()
    got = pd.read_parquet(f"s3reader://{remote}", columns=["c1", "c7"], storage_options=options)
    pd.testing.assert_frame_equal(got, pd.read_parquet(local, columns=["c1", "c7"]))
    assert 0 < fs.stats.peak_bytes_ahead <= budget


def test_pandas_read_parquet_fetches_only_the_columns_read(
    wide_parquet: tuple[Path, str, dict], fault_proxy: FaultProxy
) -> None:
    local, remote, options = wide_parquet
    got = pd.read_parquet(f"s3reader://{remote}", columns=["c0", "c5"], storage_options=options)
    pd.testing.assert_frame_equal(got, pd.read_parquet(local, columns=["c0", "c5"]))
    _gets_stay_within(fault_proxy, local, ("c0", "c5"))


def test_a_pyarrow_dataset_over_several_files_matches_local(
    tmp_path: Path, storage_options: dict, fs: S3ReaderFileSystem, bucket: str
) -> None:
    import pyarrow.dataset as pads

    values = np.random.default_rng(17).random((30_000, 4))
    local = tmp_path / "parts"
    local.mkdir()
    for part in range(4):
        frame = pd.DataFrame({f"c{i}": values[part * 7500 : (part + 1) * 7500, i] for i in range(4)})
        frame.to_parquet(local / f"part-{part}.parquet", row_group_size=2500)
        fs.put_file(str(local / f"part-{part}.parquet"), f"{bucket}/parts/part-{part}.parquet")
    ours = pads.dataset(f"{bucket}/parts", filesystem=fs, format="parquet").to_table(columns=["c1", "c3"])
    expected = pads.dataset(str(local), format="parquet").to_table(columns=["c1", "c3"])
    assert ours.sort_by("c1").equals(expected.sort_by("c1"))


def test_fsspec_parquet_helper_reads_through_our_transport(
    wide_parquet: tuple[Path, str, dict], fault_proxy: FaultProxy
) -> None:
    import fsspec.parquet

    local, remote, options = wide_parquet
    fs = S3ReaderFileSystem(skip_instance_cache=True, **options)
    with fsspec.parquet.open_parquet_file(remote, fs=fs, columns=["c2"]) as f:
        got = pq.read_table(f, columns=["c2"])
    assert got.equals(pq.read_table(local, columns=["c2"]))
    assert fs.stats.get_requests >= 2 and fs.stats.bytes_delivered > 0  # counted: it went through our transport


def test_dask_read_parquet_with_storage_options_matches_local(wide_parquet: tuple[Path, str, dict]) -> None:
    dd = pytest.importorskip("dask.dataframe")
    local, remote, options = wide_parquet
    got = dd.read_parquet(f"s3reader://{remote}", columns=["c1", "c9"], storage_options=options).compute()
    pd.testing.assert_frame_equal(got.reset_index(drop=True), pd.read_parquet(local, columns=["c1", "c9"]))
