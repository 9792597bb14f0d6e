"""Bad input gets a clear error that names what was wrong, and reads nothing wrong."""

from __future__ import annotations

import io
import math
import re

import fsspec
import pytest

from fsspec_s3reader import S3ReaderConstructor, S3ReaderFileSystem
from fsspec_s3reader.readers.ranged import RangedS3Reader
from fsspec_s3reader.testing import MemorySource

STRATEGIES = ["sequential", "range_based", "dcp_optimized"]


@pytest.fixture
def reader() -> RangedS3Reader:
    source = MemorySource(b"0123456789")
    return RangedS3Reader("bucket", "key", source.get_object_info, source.get_stream, buffer_size=4)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_missing_key_is_file_not_found_naming_the_uri(fs: S3ReaderFileSystem, bucket: str, strategy: str) -> None:
    with (
        pytest.raises(FileNotFoundError, match=f"s3://{bucket}/no/such/key"),
        fs.open(f"{bucket}/no/such/key", "rb", reader=strategy) as reader,
    ):
        reader.read(1)


def test_missing_bucket_is_file_not_found_naming_the_uri(fs: S3ReaderFileSystem) -> None:
    with pytest.raises(FileNotFoundError, match="s3://no-such-bucket-here/key"):
        fs.open("no-such-bucket-here/key", "rb")


def test_missing_object_through_fsspec_open(storage_options: dict, bucket: str) -> None:
    with (
        pytest.raises(FileNotFoundError, match=f"s3://{bucket}/absent.csv"),
        fsspec.open(f"s3reader://{bucket}/absent.csv", "rb", **storage_options) as f,
    ):
        f.read()


def test_opening_a_bucket_for_reading_says_it_is_a_bucket(fs: S3ReaderFileSystem, bucket: str) -> None:
    with pytest.raises(IsADirectoryError, match=bucket):
        fs.open(bucket, "rb")


def test_unknown_reader_name_lists_the_valid_ones(storage_options: dict) -> None:
    with pytest.raises(ValueError, match=r"unknown reader 'fastest'.*dcp_optimized, range_based, sequential"):
        S3ReaderFileSystem(reader="fastest", skip_instance_cache=True, **storage_options)


def test_unknown_reader_name_per_open(fs: S3ReaderFileSystem, bucket: str) -> None:
    with pytest.raises(ValueError, match="unknown reader 'rangebased'"):
        fs.open(f"{bucket}/k", "rb", reader="rangebased")


def test_option_of_another_strategy_is_refused_naming_both(storage_options: dict) -> None:
    with pytest.raises(ValueError, match="reader 'sequential' does not take buffer_size"):
        S3ReaderFileSystem(reader="sequential", buffer_size=10, skip_instance_cache=True, **storage_options)


@pytest.mark.parametrize(
    "make",
    [
        lambda: S3ReaderConstructor.range_based(buffer_size=-1),
        lambda: RangedS3Reader(
            "b", "k", MemorySource(b"").get_object_info, MemorySource(b"").get_stream, buffer_size=-1
        ),
    ],
)
def test_negative_buffer_size_is_a_value_error(make: object) -> None:
    with pytest.raises(ValueError, match="buffer_size must be >= 0"):
        make()  # type: ignore[operator]


def test_negative_buffer_size_in_storage_options(storage_options: dict) -> None:
    with pytest.raises(ValueError, match="buffer_size must be >= 0"):
        S3ReaderFileSystem(reader="range_based", buffer_size=-5, skip_instance_cache=True, **storage_options)


def test_negative_max_gap_size_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="max_gap_size must be >= 0"):
        S3ReaderConstructor.dcp_optimized(max_gap_size=-1)


def test_nan_max_gap_size_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="max_gap_size"):
        S3ReaderConstructor.dcp_optimized(max_gap_size=math.nan)


@pytest.mark.parametrize(("offset", "whence"), [(-1, 0), (-11, 1), (-11, 2)])
def test_negative_seek_target_is_a_value_error_and_keeps_the_position(
    reader: RangedS3Reader, offset: int, whence: int
) -> None:
    reader.seek(3)
    with pytest.raises(ValueError, match="negative seek value"):
        reader.seek(offset, whence)
    assert reader.tell() == 3


@pytest.mark.parametrize("whence", [3, -1, 10])
def test_bad_whence_is_a_value_error(reader: RangedS3Reader, whence: int) -> None:
    with pytest.raises(ValueError, match="invalid whence"):
        reader.seek(0, whence)


def test_non_integer_sizes_and_offsets_are_type_errors(reader: RangedS3Reader) -> None:
    with pytest.raises(TypeError):
        reader.read(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        reader.seek(1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.read(),
        lambda r: r.read(1),
        lambda r: r.readinto(bytearray(1)),
        lambda r: r.readline(),
        lambda r: r.seek(0),
        lambda r: r.tell(),
        lambda r: r.readable(),
        lambda r: r.seekable(),
    ],
)
def test_any_use_of_a_closed_reader_is_a_value_error(reader: RangedS3Reader, call: object) -> None:
    reader.close()
    with pytest.raises(ValueError, match="closed file"):
        call(reader)  # type: ignore[operator]


def test_closing_twice_is_harmless(reader: RangedS3Reader) -> None:
    reader.close()
    reader.close()
    assert reader.closed


def test_write_on_a_reader_is_unsupported(reader: RangedS3Reader) -> None:
    with pytest.raises(io.UnsupportedOperation, match="reading only"):
        reader.write(b"x")
    assert not reader.writable()


def test_readinto_a_read_only_buffer_is_a_type_error(reader: RangedS3Reader) -> None:
    with pytest.raises(TypeError, match="writable"):
        reader.readinto(b"immutable")


def test_version_id_without_version_awareness_is_refused(fs: S3ReaderFileSystem, bucket: str) -> None:
    with pytest.raises(ValueError, match="version_aware=True"):
        fs.open(f"{bucket}/k", "rb", version_id="abc")


def test_a_version_in_the_path_without_version_awareness_is_refused_not_ignored(
    fs: S3ReaderFileSystem, bucket: str
) -> None:
    fs.pipe_file(f"{bucket}/k", b"latest")
    with pytest.raises(ValueError, match="version_aware=True"):
        fs.open(f"{bucket}/k?versionId=abc", "rb")


def test_a_misspelled_per_open_keyword_is_a_type_error_naming_it(fs: S3ReaderFileSystem, bucket: str) -> None:
    fs.pipe_file(f"{bucket}/k", b"abc")
    with pytest.raises(TypeError, match=r"bufer_size.*buffer_size"):
        fs.open(f"{bucket}/k", "rb", reader="range_based", bufer_size=0)


@pytest.mark.parametrize("option", ["part_size", "max_parts_in_flight"])
@pytest.mark.parametrize("value", [True, 1.5, "8"])
def test_part_settings_must_be_ints(storage_options: dict, option: str, value: object) -> None:
    with pytest.raises(TypeError, match=option):
        S3ReaderFileSystem(skip_instance_cache=True, **{option: value}, **storage_options)


def test_readinto_a_non_contiguous_buffer_is_a_type_error(reader: RangedS3Reader) -> None:
    with pytest.raises(TypeError, match="contiguous"):
        reader.readinto(memoryview(bytearray(10))[::2])


def test_a_reader_opened_on_fsspecs_event_loop_says_so(fs: S3ReaderFileSystem, bucket: str) -> None:
    from fsspec.asyn import sync

    fs.pipe_file(f"{bucket}/k", b"abc")

    async def open_inside_the_loop() -> object:
        return fs.open(f"{bucket}/k", "rb")

    with pytest.raises(RuntimeError, match="inside fsspec's event loop"):
        sync(fs.loop, open_inside_the_loop)


@pytest.mark.parametrize("mode", ["r+b", "rb+", "w+b", "ab+", "qb"])
def test_a_mode_s3_cannot_do_is_a_value_error_naming_the_modes_it_can(
    fs: S3ReaderFileSystem, bucket: str, mode: str
) -> None:
    with pytest.raises(ValueError, match=rf"s3://{bucket}/k in mode '{re.escape(mode)}'.*'rb'.*'wb'"):
        fs.open(f"{bucket}/k", mode)


def test_br_is_rb(fs: S3ReaderFileSystem, bucket: str) -> None:
    fs.pipe_file(f"{bucket}/k", b"abc")
    with fs.open(f"{bucket}/k", "br") as reader:
        assert reader.read() == b"abc"


@pytest.mark.parametrize(
    ("option", "value", "error", "message"),
    [
        ("read_attempts", 0, ValueError, "read_attempts must be at least 1"),
        ("read_attempts", 2.5, TypeError, "read_attempts must be an int"),
        ("read_attempts", True, TypeError, "read_attempts must be an int"),
        ("read_timeout", 0, ValueError, "read_timeout must be a positive number of seconds"),
        ("read_timeout", "30", TypeError, "read_timeout must be a number of seconds"),
        ("read_timeout", math.nan, TypeError, "read_timeout must be a number of seconds"),
        ("retry_backoff", -1, ValueError, "retry_backoff must be a finite number of seconds >= 0"),
        ("retry_backoff", math.inf, ValueError, "retry_backoff must be a finite number"),
    ],
)
def test_retry_options_are_checked_with_a_message_naming_them(
    storage_options: dict, option: str, value: object, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        S3ReaderFileSystem(skip_instance_cache=True, **{option: value}, **storage_options)


def test_retry_options_are_checked_through_fsspec_open_too(storage_options: dict, bucket: str) -> None:
    with pytest.raises(ValueError, match="read_attempts must be at least 1"):
        fsspec.open(f"s3reader://{bucket}/k", "rb", read_attempts=0, skip_instance_cache=True, **storage_options).open()


def test_retry_options_reach_the_filesystem(storage_options: dict) -> None:
    fs = S3ReaderFileSystem(
        read_attempts=3, read_timeout=2.5, retry_backoff=0, skip_instance_cache=True, **storage_options
    )
    assert (fs.retry_policy.attempts, fs.retry_policy.timeout, fs.retry_policy.backoff) == (3, 2.5, 0)


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")
def test_a_storage_reader_takes_atomic_as_a_bool_only() -> None:
    from fsspec_s3reader import S3StorageReader

    with pytest.raises(TypeError, match="atomic must be True or False, got 'yes'"):
        S3StorageReader("s3://bucket/ckpt", atomic="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("reader", 5, TypeError),
        ("reader", "fastest", ValueError),
        ("part_size", 0, ValueError),
        ("part_size", "8", TypeError),
        ("max_parts_in_flight", 0, ValueError),
        ("max_parts_in_flight", 2.5, TypeError),
        ("read_attempts", 0, ValueError),
        ("read_attempts", "3", TypeError),
        ("read_timeout", -1, ValueError),
        ("read_timeout", "30", TypeError),
        ("retry_backoff", -0.5, ValueError),
        ("retry_backoff", "x", TypeError),
        ("first_get_size", -1, ValueError),
    ],
)
def test_each_filesystem_option_names_itself_and_the_bad_value(
    storage_options: dict, option: str, value: object, error: type
) -> None:
    with pytest.raises(error, match=rf"{option}.*{re.escape(str(value))}"):
        S3ReaderFileSystem(skip_instance_cache=True, **{option: value}, **storage_options)


@pytest.mark.parametrize(
    ("option", "value", "error", "message"),
    [
        ("endpoint_url", 123, TypeError, "endpoint_url must be a URL as a str, e.g. 'http://localhost:9000', got 123"),
        ("endpoint_url", "localhost:9000", ValueError, "endpoint_url must be a URL with its scheme and host"),
        ("endpoint_url", "", ValueError, "endpoint_url must be a URL with its scheme and host"),
        ("key", 12345, TypeError, "key must be a str .*got 12345"),
        ("secret", b"bytes", TypeError, "secret must be a str .*got b'bytes'"),
        ("anon", "false", TypeError, "anon must be True or False, got 'false'"),
        ("version_aware", 1, TypeError, "version_aware must be True or False, got 1"),
        ("client_kwargs", 5, TypeError, "client_kwargs must be a dict of keyword arguments, got 5"),
        ("config_kwargs", "x", TypeError, "config_kwargs must be a dict of keyword arguments, got 'x'"),
        ("client_kwargs", {"endpoint_url": 9000}, TypeError, r"client_kwargs\['endpoint_url'\] must be a URL"),
        ("client_kwargs", {"region_name": 1}, TypeError, r"client_kwargs\['region_name'\] must be a str"),
        ("default_block_size", "5MB", TypeError, "default_block_size must be an int number of bytes per block"),
        ("default_block_size", 0, ValueError, "default_block_size must be >= 1"),
        ("max_concurrency", 0, ValueError, "max_concurrency must be >= 1"),
    ],
)
def test_s3fs_options_of_the_wrong_type_are_refused_at_construction_naming_them(
    storage_options: dict, option: str, value: object, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        S3ReaderFileSystem(skip_instance_cache=True, **{**storage_options, option: value})


def test_s3fs_options_are_checked_through_fsspec_open_too(storage_options: dict) -> None:
    with pytest.raises(TypeError, match="endpoint_url must be a URL as a str"):
        fsspec.open("s3reader://b/k", "rb", **{**storage_options, "endpoint_url": 9000}).open()


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")
@pytest.mark.parametrize("path", [None, 123, b"s3://bucket/ckpt"])
def test_a_storage_reader_path_that_is_not_a_string_is_a_type_error_naming_it(path: object) -> None:
    from fsspec_s3reader import S3StorageReader

    with pytest.raises(TypeError, match=rf"path must be the checkpoint's S3 URI as a str.*got {re.escape(repr(path))}"):
        S3StorageReader(path)  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")
@pytest.mark.parametrize(
    ("option", "value", "error", "message"),
    [
        ("files_in_flight", "2", TypeError, "files_in_flight must be an int .*got '2'"),
        ("files_in_flight", 0, ValueError, r"files_in_flight must be >= 1 \(1 reads one file at a time\), got 0"),
        ("progress", "yes", ValueError, "progress must be True, False or 'always', got 'yes'"),
        ("endpoint_url", 123, TypeError, "endpoint_url must be a URL as a str"),
        ("config_kwargs", {"max_pool_connections": "many"}, TypeError, r"max_pool_connections'\] must be an int"),
        ("part_size", 0, ValueError, "part_size must be a positive number of bytes, got 0"),
    ],
)
def test_storage_reader_options_are_checked_naming_the_bad_value(
    storage_options: dict, option: str, value: object, error: type, message: str
) -> None:
    from fsspec_s3reader import S3StorageReader

    with pytest.raises(error, match=message):
        S3StorageReader("s3://bucket/ckpt", **{**storage_options, option: value})
