"""Reading parquet: the column chunks that the footer and the first reads foretell are fetched ahead, and only they."""

from __future__ import annotations

import inspect
import io
import random
import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsspec_s3reader.parquet_footer import ColumnChunk, column_chunks, footer_span
from fsspec_s3reader.protocol import ObjectInfo
from fsspec_s3reader.readers import AdaptiveS3Reader, RangedS3Reader, S3Reader
from fsspec_s3reader.readers.folder_columns import announce_next_files, file_version
from fsspec_s3reader.testing import MemorySource

ROWS, GROUPS = 50_000, 5
FRAME = pd.DataFrame({f"c{i}": np.random.default_rng(i).random(ROWS) for i in range(6)})


def _parquet() -> bytes:
    buffer = io.BytesIO()
    FRAME.to_parquet(buffer, row_group_size=ROWS // GROUPS)
    return buffer.getvalue()


DATA = _parquet()
SPAN = footer_span(DATA[-8:], len(DATA)) or (0, 0)
CHUNKS = column_chunks(DATA[SPAN[0] : SPAN[1]])


def chunk(group: int, column: str) -> tuple[int, int]:
    found = next(c for c in CHUNKS if c.row_group == group and c.column == column)
    return found.start, found.end


def reader(strategy: type[S3Reader], source: MemorySource, **options: object) -> S3Reader:
    # a key of its own: the layout learned from a footer is kept per object version
    return strategy("bucket", f"{uuid.uuid4().hex}/t.parquet", source.get_object_info, source.get_stream, **options)  # type: ignore[call-arg]


def read(file: S3Reader, span: tuple[int, int]) -> bytes:
    file.seek(span[0])
    return bytes(file.read(span[1] - span[0]))


def requested_within(source: MemorySource, spans: list[tuple[int, int]]) -> bool:
    return all(any(s <= start and end <= e for s, e in spans) for start, end in source.requests)


@pytest.mark.parametrize("strategy", [AdaptiveS3Reader, RangedS3Reader])
def test_once_a_column_is_read_its_chunks_in_the_other_row_groups_are_fetched_ahead(strategy: type[S3Reader]) -> None:
    source = MemorySource(DATA, chunk_size=4096)
    file = reader(strategy, source, buffer_size=0)
    read(file, (len(DATA) - 65536, len(DATA)))  # the footer, as pyarrow reads it
    assert read(file, chunk(0, "c2")) == DATA[slice(*chunk(0, "c2"))]
    foreseen = [chunk(group, "c2") for group in range(1, GROUPS)]
    assert all(any(s <= start and end <= e for s, e in source.requests_ahead) for start, end in foreseen)
    # the read that taught the column is waited for: it is not asked for ahead
    assert not any(s <= chunk(0, "c2")[0] < e for s, e in source.requests_ahead)
    asked = len(source.requests)
    for group in (3, 1, 4, 2):  # in any order, as pyarrow's I/O threads ask
        assert read(file, chunk(group, "c2")) == DATA[slice(*chunk(group, "c2"))]
    assert len(source.requests) == asked  # all served from what was fetched ahead


class ArrivalSource(MemorySource):
    """Notes, when each stream's first bytes arrive, the ranges asked for by then."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data, chunk_size=4096)
        self.asked_when_arrived: dict[tuple[int, int], list[tuple[int, int]]] = {}

    def _chunks(self, start: int, end: int) -> Iterator[bytes]:
        for count, piece in enumerate(super()._chunks(start, end)):
            if count == 0:
                self.asked_when_arrived[start, end] = list(self.requests)
            yield piece


@pytest.mark.parametrize("strategy", [AdaptiveS3Reader, RangedS3Reader])
def test_a_columns_other_chunks_are_asked_for_before_the_read_that_taught_it_arrives(
    strategy: type[S3Reader],
) -> None:
    source = ArrivalSource(DATA)
    file = reader(strategy, source, buffer_size=0)
    read(file, (len(DATA) - 65536, len(DATA)))
    assert read(file, chunk(0, "c2")) == DATA[slice(*chunk(0, "c2"))]
    asked_by_then = source.asked_when_arrived[chunk(0, "c2")]
    assert all(chunk(group, "c2") in asked_by_then for group in range(1, GROUPS))  # one round trip, not two


def test_the_footer_read_does_not_make_the_last_chunks_column_wanted() -> None:
    source = MemorySource(DATA, chunk_size=4096)
    key = uuid.uuid4().hex
    first = RangedS3Reader("bucket", key, source.get_object_info, source.get_stream, buffer_size=0)
    read(first, (len(DATA) - 65536, len(DATA)))  # learns the layout
    first.close()
    again = RangedS3Reader("bucket", key, source.get_object_info, source.get_stream, buffer_size=0)
    asked = len(source.requests)
    footer_start = len(DATA) - 65536
    last = max(CHUNKS, key=lambda c: c.end)
    assert last.start < footer_start < last.end  # the footer read ends in the last chunk's tail
    read(again, (footer_start, len(DATA)))  # the layout is known now, from the first open
    assert source.requests[asked:] == [(footer_start, len(DATA))]


def test_no_column_that_was_not_read_is_fetched() -> None:
    source = MemorySource(DATA, chunk_size=4096)
    table = pq.read_table(reader(AdaptiveS3Reader, source), columns=["c1", "c4"])
    assert table.to_pandas().equals(FRAME[["c1", "c4"]])
    needed = [(len(DATA) - 65536, len(DATA))]
    needed += [(c.start, c.end) for c in CHUNKS if c.column in ("c1", "c4")]
    assert requested_within(source, needed)
    assert source.bytes_requested <= 1.1 * sum(end - start for start, end in needed)


def test_a_read_partly_foreseen_fetches_only_the_rest() -> None:
    source = MemorySource(DATA, chunk_size=4096)
    file = reader(RangedS3Reader, source, buffer_size=0)
    read(file, (len(DATA) - 65536, len(DATA)))
    read(file, chunk(0, "c2"))
    asked = len(source.requests)
    span = (chunk(1, "c1")[0], chunk(1, "c2")[1])  # c1 (new) and c2 (fetched ahead) of row group 1 at once
    assert read(file, span) == DATA[slice(*span)]
    assert chunk(1, "c1") in source.requests[asked:]  # the new part alone, beside c1's other chunks
    assert not any(start < chunk(1, "c2")[1] and chunk(1, "c2")[0] < end for start, end in source.requests[asked:])
    assert source.bytes_requested <= 65536 + sum(
        end - start for start, end in [chunk(g, c) for g in range(GROUPS) for c in ("c1", "c2")]
    )


def _projection_reads(columns: set[str], cuts: list[bool]) -> list[tuple[int, int]]:
    """The projection's chunks in file order, read as pyarrow does: runs of neighbouring chunks, each one read.

    ``cuts[i]`` ends a read after the i-th chunk (the last always ends one).
    """
    wanted = sorted((c.start, c.end) for c in CHUNKS if c.column in columns)
    reads: list[tuple[int, int]] = []
    for index, (start, end) in enumerate(wanted):
        if reads and not cuts[(index - 1) % len(cuts)] and start - reads[-1][1] <= 8 * 1024:
            reads[-1] = (reads[-1][0], end)
        else:
            reads.append((start, end))
    return reads


@settings(max_examples=40)
@given(
    strategy=st.sampled_from([AdaptiveS3Reader, RangedS3Reader]),
    columns=st.sets(st.sampled_from(sorted(FRAME.columns)), min_size=1),
    cuts=st.lists(st.booleans(), min_size=1, max_size=30),
    order=st.randoms(use_true_random=False),
    budget_chunks=st.sampled_from([1, 3, 8, 1000]),
    reopened=st.booleans(),
)
def test_reads_in_any_order_fetch_no_byte_twice(
    strategy: type[S3Reader],
    columns: set[str],
    cuts: list[bool],
    order: random.Random,
    budget_chunks: int,
    reopened: bool,
) -> None:
    """pyarrow's threads read a projection's runs of chunks in any order, cut where its coalescing cuts them,
    which is not where the ranges fetched ahead are cut: every read gets its bytes, none fetched twice."""
    source = MemorySource(DATA, chunk_size=4096)
    key = uuid.uuid4().hex
    footer = (len(DATA) - 65536, len(DATA))
    options = {"buffer_size": 0} if strategy is RangedS3Reader else {}
    budget = budget_chunks * max(c.end - c.start for c in CHUNKS)

    def opened() -> S3Reader:
        return strategy(  # type: ignore[call-arg]
            "bucket", key, source.get_object_info, source.get_stream, parquet_prefetch_bytes=budget, **options
        )

    file = opened()
    read(file, footer)
    if reopened:  # a second open knows the layout and reads no footer (pyarrow opens a file more than once)
        file.close()
        file = opened()
    reads = _projection_reads(columns, cuts)
    order.shuffle(reads)
    for span in reads:
        assert read(file, span) == DATA[slice(*span)]
    file.close()
    fetched = np.zeros(len(DATA), dtype=np.int32)
    for start, end in source.requests:
        fetched[start:end] += 1
    assert fetched[: footer[0]].max() <= 1  # the footer's bytes are read twice when their chunk is read
    needed = sum(end - start for start, end in reads)
    assert int(fetched[: footer[0]].sum()) <= needed


def test_a_read_of_a_ranges_middle_leaves_its_start_held_for_the_read_that_comes_for_it() -> None:
    source = MemorySource(DATA, chunk_size=4096)
    file = reader(RangedS3Reader, source, buffer_size=0)
    read(file, (len(DATA) - 65536, len(DATA)))
    whole = (chunk(0, "c0")[0], chunk(0, "c2")[1])  # three neighbouring columns: one range per row group ahead
    assert read(file, whole) == DATA[slice(*whole)]
    assert (chunk(1, "c0")[0], chunk(1, "c2")[1]) in source.requests_ahead
    asked = len(source.requests)
    assert read(file, chunk(1, "c1")) == DATA[slice(*chunk(1, "c1"))]  # the range's middle first
    assert len(source.requests) == asked
    again = (chunk(1, "c0")[0], chunk(1, "c2")[1])  # c0 not read yet, c1 read again, c2 not read yet
    assert read(file, again) == DATA[slice(*again)]
    assert source.requests[asked:] == [chunk(1, "c1")]  # only what was handed out already is fetched again


def test_the_budget_bounds_what_is_fetched_ahead() -> None:
    source = MemorySource(DATA, chunk_size=4096)
    one_chunk = chunk(0, "c2")[1] - chunk(0, "c2")[0]
    file = reader(RangedS3Reader, source, buffer_size=0, parquet_prefetch_bytes=2 * one_chunk)
    read(file, (len(DATA) - 65536, len(DATA)))
    before = source.bytes_requested
    read(file, chunk(0, "c2"))
    assert source.bytes_requested - before <= 3 * one_chunk  # the read itself, and two chunks ahead
    for group in range(1, GROUPS):  # the rest follows as the reads free the budget
        assert read(file, chunk(group, "c2")) == DATA[slice(*chunk(group, "c2"))]


def test_the_most_held_ahead_is_told_as_the_file_closes_and_stays_within_the_budget() -> None:
    source = MemorySource(DATA, chunk_size=4096)
    one_chunk = max(chunk(group, "c2")[1] - chunk(group, "c2")[0] for group in range(GROUPS))
    file = reader(RangedS3Reader, source, buffer_size=0, parquet_prefetch_bytes=2 * one_chunk)
    told: list[int] = []
    file.bind_to_filesystem(None, None, told.append)
    read(file, (len(DATA) - 65536, len(DATA)))
    for group in range(GROUPS):
        assert read(file, chunk(group, "c2")) == DATA[slice(*chunk(group, "c2"))]
    assert told == []  # told once, as the file closes
    file.close()
    ahead = [end - start for start, end in source.requests_ahead]
    assert len(told) == 1 and max(ahead) <= told[0] <= 2 * one_chunk


def test_what_lies_after_the_last_read_is_fetched_ahead_first() -> None:
    source = MemorySource(DATA, chunk_size=4096)
    one_chunk = max(chunk(group, "c2")[1] - chunk(group, "c2")[0] for group in range(GROUPS))
    file = reader(RangedS3Reader, source, buffer_size=0, parquet_prefetch_bytes=2 * one_chunk)
    read(file, (len(DATA) - 65536, len(DATA)))
    read(file, chunk(2, "c2"))  # pyarrow's threads may start in the middle and take the first row group last
    ahead = [chunk(3, "c2"), chunk(4, "c2")]
    assert sorted(source.requests_ahead) == ahead  # not row groups 0 and 1, which the reads reach last
    for group in (3, 4, 0, 1):
        assert read(file, chunk(group, "c2")) == DATA[slice(*chunk(group, "c2"))]


def test_a_foreseen_range_a_read_asks_for_before_the_budget_let_it_start_goes_as_that_reads_own() -> None:
    source = MemorySource(DATA, chunk_size=4096)
    one_chunk = max(chunk(group, "c2")[1] - chunk(group, "c2")[0] for group in range(GROUPS))
    file = reader(RangedS3Reader, source, buffer_size=0, parquet_prefetch_bytes=one_chunk)
    read(file, (len(DATA) - 65536, len(DATA)))
    read(file, chunk(0, "c2"))
    assert source.requests_ahead == [chunk(1, "c2")]  # the budget holds one chunk
    assert read(file, chunk(3, "c2")) == DATA[slice(*chunk(3, "c2"))]
    assert chunk(3, "c2") in source.requests  # waited for: fetched as a read is (in parts that fit the link)
    assert chunk(3, "c2") not in source.requests_ahead


def test_a_later_open_of_the_same_version_knows_the_layout_without_the_footer() -> None:
    key = uuid.uuid4().hex
    source = MemorySource(DATA, chunk_size=4096)
    first = RangedS3Reader("bucket", key, source.get_object_info, source.get_stream, buffer_size=0)
    read(first, (len(DATA) - 65536, len(DATA)))
    again = RangedS3Reader("bucket", key, source.get_object_info, source.get_stream, buffer_size=0)
    read(again, chunk(0, "c3"))
    asked = len(source.requests)
    assert read(again, chunk(2, "c3")) == DATA[slice(*chunk(2, "c3"))]
    assert len(source.requests) == asked


def test_a_file_that_is_not_parquet_is_left_alone() -> None:
    data = bytes(range(256)) * 4000
    source = MemorySource(data, chunk_size=4096)
    file = reader(RangedS3Reader, source, buffer_size=0)
    read(file, (len(data) - 1000, len(data)))
    read(file, (5000, 9000))
    assert source.requests == [(len(data) - 1000, len(data)), (5000, 9000)]


def test_zero_turns_it_off() -> None:
    source = MemorySource(DATA, chunk_size=4096)
    file = reader(RangedS3Reader, source, buffer_size=0, parquet_prefetch_bytes=0)
    read(file, (len(DATA) - 65536, len(DATA)))
    read(file, chunk(0, "c2"))
    assert len(source.requests) == 2


def test_read_buffer_hands_out_the_received_piece_itself() -> None:
    received: list[bytes] = []

    class Recording(MemorySource):
        def _chunks(self, start: int, end: int) -> Iterator[bytes]:
            for piece in super()._chunks(start, end):
                received.append(piece)
                yield piece

    source = Recording(bytes(range(256)) * 64, chunk_size=16384)
    file = reader(RangedS3Reader, source, buffer_size=0)
    buffer = file.read_buffer(16384)
    assert buffer is received[-1]  # no copy
    assert bytes(file.read_buffer(100)) == (bytes(range(256)) * 64)[16384:16484]
    assert file.read_buffer() == (bytes(range(256)) * 64)[16484:]
    assert file.read_buffer(10) == b""


def _in_folder(folder: str, source: MemorySource) -> S3Reader:
    return RangedS3Reader(
        "bucket", f"{folder}/{uuid.uuid4().hex}.parquet", source.get_object_info, source.get_stream, buffer_size=0
    )


def _footer_then_requests(file: S3Reader, source: MemorySource) -> list[tuple[int, int]]:
    asked = len(source.requests)
    read(file, (len(DATA) - 65536, len(DATA)))
    return source.requests[asked + 1 :]


def test_a_reader_fetches_ahead_the_columns_another_reader_open_in_its_folder_has_learned() -> None:
    folder, source = uuid.uuid4().hex, MemorySource(DATA, chunk_size=4096)
    first = _in_folder(folder, source)
    read(first, (len(DATA) - 65536, len(DATA)))
    read(first, chunk(0, "c2"))  # c2 learned
    second = _in_folder(folder, source)  # another file of the folder, opened while the first is open
    fetched_ahead = _footer_then_requests(second, source)
    assert sorted(fetched_ahead) == [chunk(group, "c2") for group in range(GROUPS)]  # all of c2, and only c2
    asked = len(source.requests)
    for group in range(GROUPS):
        assert read(second, chunk(group, "c2")) == DATA[slice(*chunk(group, "c2"))]
    assert len(source.requests) == asked


def _two_reading_a_column(folder: str, source: MemorySource) -> tuple[S3Reader, S3Reader]:
    """Two files of one folder open, their footers read, both reading column c2 (so both read data)."""
    first, second = _in_folder(folder, source), _in_folder(folder, source)
    read(second, (len(DATA) - 65536, len(DATA)))
    read(first, (len(DATA) - 65536, len(DATA)))
    read(first, chunk(0, "c2"))
    read(second, chunk(0, "c2"))
    return first, second


def test_a_reader_already_open_has_the_columns_another_learns_fetched_for_it_at_once() -> None:
    folder, source = uuid.uuid4().hex, MemorySource(DATA, chunk_size=4096)
    first, second = _two_reading_a_column(folder, source)
    asked = len(source.requests)
    read(first, chunk(0, "c4"))  # learned: the first's other chunks of c4 go, and all of the second's, side by side
    every_c4 = [chunk(group, "c4") for group in range(GROUPS)]
    assert sorted(source.requests[asked:]) == sorted(every_c4 + every_c4)
    asked = len(source.requests)
    for group in reversed(range(GROUPS)):
        assert read(second, chunk(group, "c4")) == DATA[slice(*chunk(group, "c4"))]
    assert len(source.requests) == asked  # nothing asked twice


def test_a_reader_that_has_not_read_its_footer_hears_of_the_columns_and_fetches_them_once_it_has() -> None:
    folder, source = uuid.uuid4().hex, MemorySource(DATA, chunk_size=4096)
    first, second = _in_folder(folder, source), _in_folder(folder, source)
    read(first, (len(DATA) - 65536, len(DATA)))
    read(first, chunk(0, "c4"))
    fetched_ahead = _footer_then_requests(second, source)
    assert sorted(fetched_ahead) == [chunk(group, "c4") for group in range(GROUPS)]


def test_an_open_that_read_only_its_footer_gets_nothing_fetched_for_it() -> None:
    folder, source = uuid.uuid4().hex, MemorySource(DATA, chunk_size=4096)
    first, footer_only = _in_folder(folder, source), _in_folder(folder, source)
    read(footer_only, (len(DATA) - 65536, len(DATA)))  # as pyarrow's first open of a file, for its schema
    read(first, (len(DATA) - 65536, len(DATA)))
    asked = len(source.requests)
    read(first, chunk(0, "c4"))
    assert sorted(source.requests[asked:]) == [chunk(group, "c4") for group in range(GROUPS)]  # the first's own


def test_another_open_of_the_same_file_gets_nothing_fetched_for_it() -> None:
    folder, source = uuid.uuid4().hex, MemorySource(DATA, chunk_size=4096)
    key = f"{folder}/same.parquet"
    first, again = (
        RangedS3Reader("bucket", key, source.get_object_info, source.get_stream, buffer_size=0) for _ in range(2)
    )
    for reader in (first, again):
        read(reader, (len(DATA) - 65536, len(DATA)))
    read(again, chunk(0, "c2"))
    asked = len(source.requests)
    read(first, chunk(0, "c4"))
    assert sorted(source.requests[asked:]) == [chunk(group, "c4") for group in range(GROUPS)]


def test_a_column_given_by_another_reader_is_not_fetched_again_when_learned_by_its_own_read() -> None:
    folder, source = uuid.uuid4().hex, MemorySource(DATA, chunk_size=4096)
    first, second = _two_reading_a_column(folder, source)
    read(first, chunk(0, "c4"))
    asked = len(source.requests)
    read(second, chunk(0, "c4"))  # the second's own read of c4 learns nothing new: the first fetched it already
    read(first, chunk(0, "c1"))  # and the first learning more fetches that for the second too, once
    assert sorted(source.requests[asked:]) == sorted([chunk(group, "c1") for group in range(GROUPS)] * 2)


def test_what_a_folder_learned_is_forgotten_once_its_readers_close() -> None:
    folder, source = uuid.uuid4().hex, MemorySource(DATA, chunk_size=4096)
    first = _in_folder(folder, source)
    read(first, (len(DATA) - 65536, len(DATA)))
    read(first, chunk(0, "c2"))
    first.close()
    assert _footer_then_requests(_in_folder(folder, source), source) == []


def test_readers_in_other_folders_learn_nothing_from_each_other() -> None:
    source = MemorySource(DATA, chunk_size=4096)
    first = _in_folder(uuid.uuid4().hex, source)
    read(first, (len(DATA) - 65536, len(DATA)))
    read(first, chunk(0, "c2"))
    assert _footer_then_requests(_in_folder(uuid.uuid4().hex, source), source) == []


# -- the folder's next files: fetched for before they open ----------------------------------------


class _NextFile:
    """A next file of a folder as the filesystem names it: its footer in (or not yet), its bytes from a source."""

    def __init__(self, folder: str, name: str, source: MemorySource, etag: str = '"memory"') -> None:
        self.key = f"{folder}/{name}"
        self.version = file_version("bucket", self.key, ObjectInfo(len(source.data), etag))
        self.source = source
        self.footer_in = True
        self.streams: list[Iterator[bytes]] = []

    def layout(self) -> list[ColumnChunk] | None:
        return CHUNKS if self.footer_in else None

    def get_stream(self, start: int, end: int, /, *, ahead: bool = False) -> Iterator[bytes]:
        self.streams.append(self.source.get_stream(start, end, ahead=ahead))
        return self.streams[-1]

    def dropped(self) -> bool:
        return bool(self.streams) and all(inspect.getgeneratorstate(s) == inspect.GEN_CLOSED for s in self.streams)  # type: ignore[arg-type]


def _named(folder: str, name: str, source: MemorySource, parquet_prefetch_bytes: int | None = None) -> S3Reader:
    budget = {} if parquet_prefetch_bytes is None else {"parquet_prefetch_bytes": parquet_prefetch_bytes}
    return RangedS3Reader(
        "bucket", f"{folder}/{name}", source.get_object_info, source.get_stream, buffer_size=0, **budget
    )


def _announced(folder: str, *names: str) -> list[_NextFile]:
    files = [_NextFile(folder, name, MemorySource(DATA, chunk_size=4096)) for name in names]
    announce_next_files(("bucket", folder), files)
    return files


ALL_C2 = [chunk(group, "c2") for group in range(GROUPS)]


def _scan(folder: str, parquet_prefetch_bytes: int | None = None) -> tuple[S3Reader, S3Reader]:
    """Two files of the folder open at once, their footers read: a scan, as ``pyarrow.dataset`` makes one."""
    first, second = (_named(folder, f"a{i}.parquet", MemorySource(DATA, 4096), parquet_prefetch_bytes) for i in (0, 1))
    for file in (first, second):
        read(file, (len(DATA) - 65536, len(DATA)))
    return first, second


def test_the_next_file_of_a_folder_has_the_columns_learned_fetched_before_it_opens_and_read_from_memory() -> None:
    folder = uuid.uuid4().hex
    first, _ = _scan(folder)
    (following,) = _announced(folder, "b1.parquet")
    assert following.source.requests == []  # no column known yet
    read(first, chunk(0, "c2"))  # c2 learned
    assert sorted(following.source.requests_ahead) == ALL_C2  # all of c2, and only c2
    opened = _named(folder, "b1.parquet", following.source)  # its layout is known: it reads no footer
    for group in range(GROUPS):
        assert read(opened, chunk(group, "c2")) == DATA[slice(*chunk(group, "c2"))]
    assert sorted(following.source.requests) == ALL_C2  # nothing more was asked


def test_as_many_next_files_are_fetched_for_as_the_folder_has_files_open() -> None:
    folder = uuid.uuid4().hex
    first, _ = _scan(folder)
    b1, b2, b3 = _announced(folder, "b1.parquet", "b2.parquet", "b3.parquet")
    read(first, chunk(0, "c2"))
    assert [sorted(f.source.requests_ahead) for f in (b1, b2, b3)] == [ALL_C2, ALL_C2, []]
    third = _named(folder, "a2.parquet", MemorySource(DATA, chunk_size=4096))  # the scan is three files wide
    read(third, (len(DATA) - 65536, len(DATA)))  # its first read offers what the folder knows
    assert sorted(b3.source.requests_ahead) == ALL_C2


def test_a_file_read_on_its_own_has_nothing_fetched_for_the_files_after_it() -> None:
    folder = uuid.uuid4().hex
    alone = _named(folder, "a0.parquet", MemorySource(DATA, chunk_size=4096))
    read(alone, (len(DATA) - 65536, len(DATA)))
    (following,) = _announced(folder, "b1.parquet")
    read(alone, chunk(0, "c2"))
    assert following.source.requests == []


def test_a_next_files_footer_on_its_way_has_its_chunks_fetched_at_the_first_read_after_it_arrives() -> None:
    folder = uuid.uuid4().hex
    first, _second = _scan(folder)
    (following,) = _announced(folder, "b1.parquet")
    following.footer_in = False
    read(first, chunk(0, "c2"))
    assert following.source.requests == []
    following.footer_in = True
    read(first, chunk(1, "c2"))
    assert sorted(following.source.requests_ahead) == ALL_C2


def test_what_the_folder_fetches_for_its_next_files_stays_within_the_budget() -> None:
    folder = uuid.uuid4().hex
    budget = 2 * (chunk(0, "c2")[1] - chunk(0, "c2")[0]) + 100
    first, _second = _scan(folder, parquet_prefetch_bytes=budget)
    (following,) = _announced(folder, "b1.parquet")
    read(first, chunk(0, "c2"))
    assert sorted(following.source.requests_ahead) == ALL_C2[:2]
    opened = _named(folder, "b1.parquet", following.source)
    for group in range(GROUPS):  # the rest its reader fetches itself
        assert read(opened, chunk(group, "c2")) == DATA[slice(*chunk(group, "c2"))]
    assert sorted(set(following.source.requests)) == ALL_C2


def test_what_was_fetched_for_next_files_is_dropped_when_the_folders_last_reader_closes() -> None:
    folder = uuid.uuid4().hex
    first, second = _scan(folder)
    (following,) = _announced(folder, "b1.parquet")
    read(first, chunk(0, "c2"))
    first.close()
    assert not following.dropped()  # the scan goes on
    second.close()
    assert following.dropped()
    opened = _named(folder, "b1.parquet", following.source)
    asked = len(following.source.requests)
    assert read(opened, chunk(0, "c2")) == DATA[slice(*chunk(0, "c2"))]
    assert chunk(0, "c2") in following.source.requests[asked:]  # fetched again, by its own read


def test_a_next_file_the_scan_passed_over_has_what_was_fetched_for_it_dropped() -> None:
    folder = uuid.uuid4().hex
    first, second = _scan(folder)
    skipped, _ = _announced(folder, "b1.parquet", "b2.parquet")
    read(first, chunk(0, "c2"))
    assert skipped.source.requests_ahead
    _named(folder, "b2.parquet", MemorySource(DATA, chunk_size=4096))  # opened, b1 never was
    first.close()
    second.close()  # the first file open is now after b1
    assert skipped.dropped()


def test_a_next_file_changed_since_its_listing_gets_nothing_of_its_old_version() -> None:
    folder = uuid.uuid4().hex
    first, _second = _scan(folder)
    old = _NextFile(folder, "b1.parquet", MemorySource(DATA, chunk_size=4096), etag='"listed"')
    announce_next_files(("bucket", folder), [old])
    read(first, chunk(0, "c2"))
    assert old.source.requests_ahead
    now = MemorySource(DATA, chunk_size=4096)  # what S3 holds when the file opens: another ETag
    opened = _named(folder, "b1.parquet", now)
    assert old.dropped()
    read(opened, (len(DATA) - 65536, len(DATA)))
    assert read(opened, chunk(0, "c2")) == DATA[slice(*chunk(0, "c2"))]
    assert chunk(0, "c2") in now.requests


def test_nothing_is_kept_for_a_folder_with_no_reader_open() -> None:
    folder = uuid.uuid4().hex
    (following,) = _announced(folder, "b1.parquet")
    first, _second = _scan(folder)
    read(first, chunk(0, "c2"))
    assert following.source.requests == []
