"""The s3reader filesystem: s3fs in every way, except that read-mode files are reader strategies."""

from __future__ import annotations

import gzip
import json
import pickle
import subprocess
import sys

import fsspec
import pytest
from fault_proxy import FaultProxy
from s3fs.core import S3File

from fsspec_s3reader import RangedS3Reader, S3ReaderFileSystem, SequentialS3Reader


def test_the_protocol_works_without_importing_the_package(
    storage_options: dict, fs: S3ReaderFileSystem, bucket: str
) -> None:
    fs.pipe_file(f"{bucket}/k", b"via entry point")
    script = (
        "import json, sys, fsspec\n"
        "options = json.loads(sys.argv[1])\n"
        "assert 'fsspec_s3reader' not in sys.modules\n"
        f"with fsspec.open('s3reader://{bucket}/k', 'rb', reader='range_based', **options) as f:\n"
        "    print(type(f).__name__, f.read().decode())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(storage_options)], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "RangedS3Reader via entry point"


def test_fsspec_resolves_the_protocol_to_this_filesystem() -> None:
    assert fsspec.get_filesystem_class("s3reader") is S3ReaderFileSystem


@pytest.mark.parametrize("prefix", ["", "s3://", "s3a://", "s3reader://"])
def test_every_s3_path_spelling_opens_the_same_object(fs: S3ReaderFileSystem, bucket: str, prefix: str) -> None:
    fs.pipe_file(f"{bucket}/dir/k", b"same")
    with fs.open(f"{prefix}{bucket}/dir/k", "rb") as reader:
        assert reader.read() == b"same"
        assert (reader.bucket, reader.key) == (bucket, "dir/k")


def test_the_filesystem_default_strategy_and_a_per_open_override(
    storage_options: dict, fs: S3ReaderFileSystem, bucket: str
) -> None:
    fs.pipe_file(f"{bucket}/k", b"x" * 100)
    ranged_fs = S3ReaderFileSystem(reader="range_based", buffer_size=10, skip_instance_cache=True, **storage_options)
    with ranged_fs.open(f"{bucket}/k", "rb") as reader:
        assert isinstance(reader, RangedS3Reader)
        assert reader.buffer_size == 10
    with ranged_fs.open(f"{bucket}/k", "rb", buffer_size=0) as reader:
        assert isinstance(reader, RangedS3Reader)
        assert reader.buffer_size == 0
    with ranged_fs.open(f"{bucket}/k", "rb", reader="sequential") as reader:
        assert isinstance(reader, SequentialS3Reader)


def test_writing_is_s3fs_writing(fs: S3ReaderFileSystem, bucket: str) -> None:
    with fs.open(f"{bucket}/written", "wb") as f:
        assert isinstance(f, S3File)
        f.write(b"hello ")
        f.write(b"world")
    with fs.open(f"{bucket}/written", "rb") as reader:
        assert reader.read() == b"hello world"


def test_text_mode_reads_lines_through_the_reader(storage_options: dict, fs: S3ReaderFileSystem, bucket: str) -> None:
    lines = [f"line {i} é\n" for i in range(1000)]
    fs.pipe_file(f"{bucket}/t.txt", "".join(lines).encode())
    with fsspec.open(f"s3reader://{bucket}/t.txt", "r", encoding="utf-8", reader="range_based", **storage_options) as f:
        assert f.readlines() == lines


def test_binary_line_iteration_is_served_from_the_buffer(fs: S3ReaderFileSystem, bucket: str) -> None:
    body = b"".join(b"%d\n" % i for i in range(5000)) + b"no newline at the end"
    fs.pipe_file(f"{bucket}/lines", body)
    fs.reset_stats()
    with fs.open(f"{bucket}/lines", "rb", reader="range_based", buffer_size=1000) as reader:
        assert list(reader) == body.splitlines(keepends=True)
    assert fs.stats.get_requests <= len(body) // 1000 + 1


def test_compressed_objects_decompress_through_fsspec(
    storage_options: dict, fs: S3ReaderFileSystem, bucket: str
) -> None:
    fs.pipe_file(f"{bucket}/k.gz", gzip.compress(b"squeezed" * 1000))
    with fsspec.open(f"s3reader://{bucket}/k.gz", "rb", compression="infer", **storage_options) as f:
        assert f.read() == b"squeezed" * 1000


def test_listing_info_and_cat_are_s3fs(fs: S3ReaderFileSystem, bucket: str) -> None:
    fs.pipe_file(f"{bucket}/a/1", b"one")
    fs.pipe_file(f"{bucket}/a/2", b"two!")
    assert fs.ls(f"{bucket}/a", detail=False) == [f"{bucket}/a/1", f"{bucket}/a/2"]
    assert fs.info(f"{bucket}/a/2")["size"] == 4
    assert fs.cat_file(f"{bucket}/a/1") == b"one"
    assert fs.exists(f"{bucket}/a/1") and not fs.exists(f"{bucket}/a/3")


def test_s3fs_connection_options_keep_working(storage_options: dict, fs: S3ReaderFileSystem, bucket: str) -> None:
    fs.pipe_file(f"{bucket}/k", b"ok")
    tuned = S3ReaderFileSystem(
        client_kwargs={"region_name": "us-east-1"},
        config_kwargs={"max_pool_connections": 4},
        requester_pays=True,
        skip_instance_cache=True,
        **storage_options,
    )
    with tuned.open(f"{bucket}/k", "rb") as reader:
        assert reader.read() == b"ok"


def test_anonymous_access_reads_public_objects_and_refuses_private_ones(
    s3_server: object, fs: S3ReaderFileSystem, bucket: str
) -> None:
    fs.pipe_file(f"{bucket}/public", b"for everyone")
    fs.chmod(f"{bucket}/public", "public-read")
    fs.pipe_file(f"{bucket}/private", b"secret")
    anonymous = S3ReaderFileSystem(anon=True, endpoint_url=fs.endpoint_url, skip_instance_cache=True)
    with anonymous.open(f"{bucket}/public", "rb") as reader:
        assert reader.read() == b"for everyone"
    with pytest.raises(PermissionError, match=f"s3://{bucket}/private"):
        anonymous.open(f"{bucket}/private", "rb")


def test_version_aware_reads_an_older_version(storage_options: dict, fs: S3ReaderFileSystem, bucket: str) -> None:
    fs.make_bucket_versioned(bucket)
    fs.pipe_file(f"{bucket}/v", b"first")
    fs.pipe_file(f"{bucket}/v", b"second")
    versioned = S3ReaderFileSystem(version_aware=True, skip_instance_cache=True, **storage_options)
    first = next(v["VersionId"] for v in versioned.object_version_info(f"{bucket}/v") if not v["IsLatest"])
    with versioned.open(f"{bucket}/v?versionId={first}", "rb") as reader:
        assert reader.read() == b"first"
    with versioned.open(f"{bucket}/v", "rb", version_id=first, reader="range_based") as reader:
        assert reader.read() == b"first"
    with versioned.open(f"{bucket}/v", "rb") as reader:
        assert reader.read() == b"second"


def test_a_filesystem_survives_pickling_with_its_strategy(
    storage_options: dict, fs: S3ReaderFileSystem, bucket: str
) -> None:
    fs.pipe_file(f"{bucket}/k", b"pickled")
    original = S3ReaderFileSystem(reader="range_based", buffer_size=3, skip_instance_cache=True, **storage_options)
    restored = pickle.loads(pickle.dumps(original))
    with restored.open(f"{bucket}/k", "rb") as reader:
        assert isinstance(reader, RangedS3Reader)
        assert reader.buffer_size == 3
        assert reader.read() == b"pickled"


def test_the_reader_names_its_object(fs: S3ReaderFileSystem, bucket: str) -> None:
    fs.pipe_file(f"{bucket}/k", b"abc")
    with fs.open(f"{bucket}/k", "rb") as reader:
        assert f"s3://{bucket}/k" in repr(reader)
        assert reader.readable() and reader.seekable()
        assert reader.size == 3


def test_an_open_reader_pickles_by_reopening_at_its_position(fs: S3ReaderFileSystem, bucket: str) -> None:
    fs.pipe_file(f"{bucket}/k", b"0123456789")
    with fs.open(f"{bucket}/k", "rb", reader="range_based", buffer_size=4) as reader:
        reader.seek(6)
        restored = pickle.loads(pickle.dumps(reader))
    with restored:
        assert isinstance(restored, RangedS3Reader)
        assert restored.buffer_size == 4
        assert restored.read() == b"6789"


@pytest.mark.parametrize("lean_requests", [True, False])
def test_requester_pays_is_sent_on_the_readers_requests(
    proxied_options: dict, fault_proxy: FaultProxy, fs: S3ReaderFileSystem, bucket: str, lean_requests: bool
) -> None:
    fs.pipe_file(f"{bucket}/k", b"paid for")
    paying = S3ReaderFileSystem(
        requester_pays=True, lean_requests=lean_requests, skip_instance_cache=True, **proxied_options
    )
    with paying.open(f"{bucket}/k", "rb", reader="range_based") as reader:
        assert reader.read() == b"paid for"
    sent = [request.headers.get("x-amz-request-payer") for request in fault_proxy.requests_of("GET")]
    assert sent == ["requester"]


def test_filesystems_without_a_session_of_their_own_share_one_and_its_parsed_models(
    storage_options: dict, bucket: str
) -> None:
    first = S3ReaderFileSystem(skip_instance_cache=True, **storage_options)
    second = S3ReaderFileSystem(skip_instance_cache=True, **storage_options)
    first.ls(bucket)
    second.ls(bucket)
    assert first.session is second.session
    assert first.s3 is not second.s3  # each keeps its own client and connections


def test_a_session_passed_in_is_used_as_given(storage_options: dict, bucket: str) -> None:
    import aiobotocore.session

    own = aiobotocore.session.AioSession()
    fs = S3ReaderFileSystem(skip_instance_cache=True, session=own, **storage_options)
    fs.ls(bucket)
    assert fs.session is own
