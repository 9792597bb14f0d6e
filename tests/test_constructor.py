"""Choosing a strategy: constructor objects, names, options, and strategies users register."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import fsspec
import pytest

from fsspec_s3reader import (
    S3Reader,
    S3ReaderConstructor,
    S3ReaderFileSystem,
    StrategyConstructor,
    register_reader,
    registered_readers,
)
from fsspec_s3reader.constructor import DCPOptimizedConstructor, make_constructor
from fsspec_s3reader.plan import DEFAULT_MAX_GAP_SIZE
from fsspec_s3reader.protocol import Chunk, GetObjectInfo, GetStream
from fsspec_s3reader.readers import AdaptiveS3Reader, RangedS3Reader, SequentialS3Reader


def test_factories_build_the_named_strategies() -> None:
    assert S3ReaderConstructor.sequential() == StrategyConstructor(SequentialS3Reader)
    assert S3ReaderConstructor.range_based(buffer_size=123) == StrategyConstructor(RangedS3Reader, buffer_size=123)
    assert S3ReaderConstructor.dcp_optimized().max_gap_size == DEFAULT_MAX_GAP_SIZE == 2_000_000
    assert S3ReaderConstructor.dcp_optimized(float("inf")).max_gap_size == float("inf")


def test_default_is_adaptive() -> None:
    assert S3ReaderConstructor.get_reader_type_string(S3ReaderConstructor.default()) == "adaptive"


def test_the_coalescing_gap_is_what_a_request_costs_in_bytes() -> None:
    slow_link = S3ReaderConstructor.dcp_optimized(first_byte_latency=0.1, connection_throughput=50_000_000)
    assert slow_link.max_gap_size == 5_000_000
    assert S3ReaderConstructor.dcp_optimized(1234, first_byte_latency=1.0).max_gap_size == 1234
    assert slow_link.fresh().max_gap_size == 5_000_000


@pytest.mark.parametrize("option", ["first_byte_latency", "connection_throughput"])
@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), "fast"])
def test_bad_coalescing_costs_are_refused_naming_the_option(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        S3ReaderConstructor.dcp_optimized(**{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("constructor", "name"),
    [
        (S3ReaderConstructor.sequential(), "sequential"),
        (S3ReaderConstructor.adaptive(), "adaptive"),
        (S3ReaderConstructor.range_based(), "range_based"),
        (S3ReaderConstructor.dcp_optimized(), "dcp_optimized"),
        (lambda *args: None, "unknown"),
        (None, "unknown"),
    ],
)
def test_reader_type_string_names_the_strategy(constructor: object, name: str) -> None:
    assert S3ReaderConstructor.get_reader_type_string(constructor) == name


def test_builtin_names_are_registered() -> None:
    assert {"adaptive", "sequential", "range_based", "dcp_optimized"} <= set(registered_readers())


def test_names_and_options_make_constructors() -> None:
    assert make_constructor("range_based", {"buffer_size": 0}) == StrategyConstructor(RangedS3Reader, buffer_size=0)
    made = make_constructor("dcp_optimized", {"max_gap_size": 0})
    assert isinstance(made, DCPOptimizedConstructor)
    assert made.max_gap_size == 0
    assert make_constructor("sequential") == S3ReaderConstructor.sequential()
    assert make_constructor(None) == S3ReaderConstructor.adaptive()


def test_a_constructor_object_is_used_as_given() -> None:
    constructor = S3ReaderConstructor.range_based(5)
    assert make_constructor(constructor) is constructor


def test_options_with_a_constructor_object_are_refused() -> None:
    with pytest.raises(ValueError, match="only apply to a reader chosen by name"):
        make_constructor(S3ReaderConstructor.sequential(), {"buffer_size": 1})


def test_a_name_cannot_be_registered_twice_by_accident() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_reader("sequential", S3ReaderConstructor.sequential)


def test_dcp_constructors_are_distinct_per_object_for_fsspecs_instance_cache() -> None:
    first, second = S3ReaderConstructor.dcp_optimized(), S3ReaderConstructor.dcp_optimized()  # both alive
    assert repr(first) != repr(second)


class _ReversedReader(S3Reader):
    """A user's strategy: serves the object's bytes back to front (to prove it is the one in use)."""

    strategy = "reversed"

    def __init__(self, bucket: str, key: str, get_object_info: GetObjectInfo, get_stream: GetStream, pad: int) -> None:
        super().__init__(bucket, key)
        size = get_object_info().size
        self._data = b"".join(get_stream(0, size))[::-1] + b"!" * pad

    def _object_size(self) -> int:
        return len(self._data)

    def _pieces(self, start: int, length: int) -> Iterable[Chunk]:
        return (self._data[start : start + length],)


class _ReversedConstructor:
    name = "reversed"

    def __init__(self, pad: int = 0) -> None:
        self.pad = pad

    def __call__(self, bucket: str, key: str, get_object_info: GetObjectInfo, get_stream: GetStream) -> S3Reader:
        return _ReversedReader(bucket, key, get_object_info, get_stream, self.pad)


@pytest.fixture
def reversed_strategy() -> Iterator[None]:
    register_reader("reversed", _ReversedConstructor, replace=True)
    yield
    from fsspec_s3reader import constructor

    constructor._REGISTRY.pop("reversed", None)


def test_a_registered_strategy_is_chosen_by_name_with_its_options(
    reversed_strategy: None, storage_options: dict, fs: S3ReaderFileSystem, bucket: str
) -> None:
    fs.pipe_file(f"{bucket}/k", b"abc")
    with fsspec.open(f"s3reader://{bucket}/k", "rb", reader="reversed", pad=2, **storage_options) as f:
        assert f.read() == b"cba!!"
    assert S3ReaderConstructor.get_reader_type_string(_ReversedConstructor()) == "reversed"


@pytest.mark.parametrize(
    ("reader", "expected"),
    [
        ("sequential", SequentialS3Reader),
        ("range_based", RangedS3Reader),
        ("adaptive", AdaptiveS3Reader),
        (None, AdaptiveS3Reader),
    ],
)
def test_storage_options_choose_the_strategy(
    storage_options: dict, fs: S3ReaderFileSystem, bucket: str, reader: str | None, expected: type
) -> None:
    fs.pipe_file(f"{bucket}/k", b"data")
    options = {**storage_options, **({"reader": reader} if reader else {})}
    with fsspec.open(f"s3reader://{bucket}/k", "rb", **options) as f:
        assert isinstance(f, expected)
        assert f.read() == b"data"


def test_an_option_named_like_an_s3fs_parameter_stays_with_s3fs(storage_options: dict) -> None:
    register_reader("shadowing", lambda anon=False: S3ReaderConstructor.sequential(), replace=True)
    try:
        fs = S3ReaderFileSystem(reader="shadowing", anon=True, skip_instance_cache=True, **storage_options)
        assert fs.anon is True
    finally:
        from fsspec_s3reader import constructor

        constructor._REGISTRY.pop("shadowing", None)
