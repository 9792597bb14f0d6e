"""The footer parser says where every column chunk lies, as pyarrow's own metadata does."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fsspec_s3reader.parquet_footer import FooterError, column_chunks, footer_span


def _what_pyarrow_says(data: bytes) -> list[tuple[int, str, int, int]]:
    metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    chunks = []
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for column in range(row_group.num_columns):
            chunk = row_group.column(column)
            start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
            chunks.append((group, chunk.path_in_schema, start, start + chunk.total_compressed_size))
    return sorted(chunks, key=lambda c: c[2])


def _what_we_say(data: bytes) -> list[tuple[int, str, int, int]]:
    span = footer_span(data[-8:], len(data))
    assert span is not None
    return [(c.row_group, c.column, c.start, c.end) for c in column_chunks(data[span[0] : span[1]])]


def _written(table: pa.Table, **options: object) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **options)  # type: ignore[arg-type]
    return buffer.getvalue()


FRAME = pd.DataFrame(
    {
        "id": np.arange(30_000),
        "value": np.random.default_rng(1).random(30_000),
        "name": [f"n{i % 13}" for i in range(30_000)],
    }
)
NESTED = pa.table(
    {
        "point": pa.array([{"x": i, "tags": [i, i + 1]} for i in range(2_000)]),
        "flag": pa.array([i % 2 == 0 for i in range(2_000)]),
    }
)


@pytest.mark.parametrize("compression", ["snappy", "zstd", "gzip", "none"])
@pytest.mark.parametrize("use_dictionary", [True, False])
def test_every_chunk_where_pyarrow_says_it_is(compression: str, use_dictionary: bool) -> None:
    data = _written(
        pa.Table.from_pandas(FRAME), compression=compression, use_dictionary=use_dictionary, row_group_size=4_000
    )
    assert _what_we_say(data) == _what_pyarrow_says(data)


@pytest.mark.parametrize("options", [{}, {"write_page_index": True}, {"write_statistics": False}])
def test_nested_columns_are_named_by_their_dotted_path(options: dict) -> None:
    data = _written(NESTED, row_group_size=300, **options)
    assert _what_we_say(data) == _what_pyarrow_says(data)
    assert {"point.x", "point.tags.list.element", "flag"} == {column for _, column, _, _ in _what_we_say(data)}


def test_what_is_not_parquet_has_no_footer() -> None:
    assert footer_span(b"\x00" * 8, 1000) is None
    assert footer_span(b"PAR1", 1000) is None  # too short to hold the length and the magic
    assert footer_span(b"\xff\xff\xff\x00PAR1", 100) is None  # a length longer than the file


def test_a_footer_cut_short_is_refused() -> None:
    data = _written(pa.Table.from_pandas(FRAME), row_group_size=4_000)
    start, end = footer_span(data[-8:], len(data)) or (0, 0)
    with pytest.raises(FooterError, match="ends in the middle"):
        column_chunks(data[start : end - 10])
