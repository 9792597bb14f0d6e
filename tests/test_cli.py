"""The command line: ``cat``, ``stat`` and ``plan`` against the moto server, bad URIs and missing objects included."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp

from fsspec_s3reader import S3ReaderFileSystem, S3StorageReader, S3StorageWriter
from fsspec_s3reader.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")

DATA = bytes(range(256)) * 40  # 10240 bytes, every byte value, not valid UTF-8

BAD_OBJECT_URIS = [
    "gs://bucket/key",
    "bucket/key",
    "/tmp/file",
    "s3://",
    "s3://bucket",
    "s3://bucket/",
    "s3://bucket/dir/",
    "s3://bad bucket!/key",
]


@pytest.fixture
def endpoint(storage_options: dict[str, Any]) -> list[str]:
    return ["--endpoint", storage_options["endpoint_url"]]


@pytest.fixture
def obj(fs: S3ReaderFileSystem, bucket: str) -> str:
    fs.pipe_file(f"{bucket}/data.bin", DATA)
    return f"s3://{bucket}/data.bin"


def run(argv: list[str], capsysbinary: pytest.CaptureFixture[bytes]) -> tuple[int, bytes, str]:
    status = main(argv)
    captured = capsysbinary.readouterr()
    return status, captured.out, captured.err.decode()


# -- cat ---------------------------------------------------------------------------------


def test_cat_writes_the_objects_bytes_unchanged(
    obj: str, endpoint: list[str], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert run(["cat", obj, *endpoint], capsysbinary) == (0, DATA, "")


def test_cat_takes_s3reader_uris_too(obj: str, endpoint: list[str], capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    status, out, _ = run(["cat", obj.replace("s3://", "s3reader://"), *endpoint], capsysbinary)
    assert (status, out) == (0, DATA)


RANGES = {
    "10-19": slice(10, 20),  # both ends included, as in HTTP
    "0-0": slice(0, 1),
    "10240-": None,  # starts one past the last byte
    "10000-": slice(10000, None),
    "-5": slice(-5, None),
    "-99999": slice(None),  # a suffix longer than the object is the whole object
    "10230-99999": slice(10230, None),  # a last byte past the end is clamped
}


@pytest.mark.parametrize("spec", RANGES)
def test_cat_range_is_inclusive_like_http(
    obj: str, endpoint: list[str], capsysbinary: pytest.CaptureFixture[bytes], spec: str
) -> None:
    status, out, err = run(["cat", obj, "--range", spec, *endpoint], capsysbinary)
    expected = RANGES[spec]
    if expected is None:
        assert status == 2 and "has 10240 bytes" in err and out == b""
    else:
        assert (status, out, err) == (0, DATA[expected], "")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("x", "write FIRST-LAST"),
        ("5", "write FIRST-LAST"),
        ("1-2-3", "write FIRST-LAST"),
        ("20-10", "LAST (10) is before FIRST (20)"),
        ("-0", "asks for no bytes"),
    ],
)
def test_cat_rejects_a_malformed_range_before_fetching(
    endpoint: list[str], capsysbinary: pytest.CaptureFixture[bytes], spec: str, message: str
) -> None:
    # The object does not exist: a malformed range is refused before any request is sent.
    status, out, err = run(["cat", "s3://no-such-bucket/key", f"--range={spec}", *endpoint], capsysbinary)
    assert status == 2 and out == b""
    assert err.startswith("python -m fsspec_s3reader cat: error: ") and message in err


def test_cat_of_a_missing_object_fails_with_one_line(
    bucket: str, endpoint: list[str], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    status, out, err = run(["cat", f"s3://{bucket}/missing.bin", *endpoint], capsysbinary)
    assert status == 1 and out == b""
    assert f"s3://{bucket}/missing.bin: not found" in err and "--endpoint" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("command", ["cat", "stat"])
@pytest.mark.parametrize("uri", BAD_OBJECT_URIS)
def test_a_uri_that_names_no_object_is_a_usage_error(
    command: str, uri: str, endpoint: list[str], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    status, out, err = run([command, uri, *endpoint], capsysbinary)
    assert status == 2 and out == b""
    assert err.startswith(f"python -m fsspec_s3reader {command}: error: ") and "s3://bucket" in err


# -- stat --------------------------------------------------------------------------------


def test_stat_prints_size_etag_version_and_last_modified(
    obj: str, fs: S3ReaderFileSystem, endpoint: list[str], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    status, out, _ = run(["stat", obj, *endpoint], capsysbinary)
    assert status == 0
    fields = dict(re.split(r"\s+", line, maxsplit=1) for line in out.decode().splitlines())
    assert fields["uri"] == obj
    assert fields["size"] == "10240 (10.0 KiB)"
    assert fields["etag"] == fs.info(obj)["ETag"]
    assert fields["version_id"] == "-"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", fields["last_modified"])


def test_stat_json_is_one_object(obj: str, endpoint: list[str], capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    status, out, _ = run(["stat", "--json", obj, *endpoint], capsysbinary)
    fields = json.loads(out)
    assert status == 0
    assert fields["size"] == len(DATA) and fields["version_id"] is None
    assert set(fields) == {"uri", "size", "etag", "version_id", "last_modified"}


def test_stat_shows_the_current_version_in_a_versioned_bucket(
    fs: S3ReaderFileSystem, bucket: str, endpoint: list[str], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    fs.make_bucket_versioned(bucket)
    fs.pipe_file(f"{bucket}/v", b"first")
    fs.pipe_file(f"{bucket}/v", b"second")
    latest = S3ReaderFileSystem(skip_instance_cache=True, version_aware=True, **fs.storage_options).info(f"{bucket}/v")
    status, out, _ = run(["stat", "--json", f"s3://{bucket}/v", *endpoint], capsysbinary)
    assert status == 0
    assert json.loads(out)["version_id"] == latest["VersionId"] is not None


def test_stat_of_a_missing_bucket_fails_with_one_line(
    endpoint: list[str], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    uri = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/key"
    status, out, err = run(["stat", uri, *endpoint], capsysbinary)
    assert status == 1 and out == b""
    assert err.startswith(f"python -m fsspec_s3reader stat: error: {uri}: not found")


def test_stat_of_a_prefix_says_it_is_not_an_object(
    fs: S3ReaderFileSystem, bucket: str, endpoint: list[str], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    fs.pipe_file(f"{bucket}/dir/inside", b"x")
    status, _, err = run(["stat", f"s3://{bucket}/dir", *endpoint], capsysbinary)
    assert status == 1 and "is a prefix with objects under it" in err


def test_errors_reach_the_terminal_without_a_traceback(bucket: str, storage_options: dict[str, Any]) -> None:
    # The endpoint and credentials through fsspec's environment variables, as the docs tell a user.
    env = {
        **os.environ,
        "FSSPEC_S3READER_ENDPOINT_URL": storage_options["endpoint_url"],
        "FSSPEC_S3READER_KEY": storage_options["key"],
        "FSSPEC_S3READER_SECRET": storage_options["secret"],
    }
    done = subprocess.run(
        [sys.executable, "-m", "fsspec_s3reader", "stat", f"s3://{bucket}/missing"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"python -m fsspec_s3reader stat: error: s3://{bucket}/missing: not found; "
        "check the bucket, the key and --endpoint"
    ]


# -- plan --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(s3_server: Any) -> tuple[str, dict[str, Any]]:
    """Three linear layers and their Adam state in two files: model and optimizer tensors interleave in each."""
    options = s3_server.storage_options
    bucket = f"plan-{uuid.uuid4().hex[:12]}"
    S3ReaderFileSystem(skip_instance_cache=True, **options).mkdir(bucket)
    torch.manual_seed(0)
    model = torch.nn.Sequential(*(torch.nn.Linear(128, 128) for _ in range(3)))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 128)).sum().backward()
    optimizer.step()
    state = {"model": model.state_dict(), "optim": optimizer.state_dict()}
    uri = f"s3://{bucket}/ckpt"
    dcp.save(state, storage_writer=S3StorageWriter(uri, thread_count=2, **options))
    return uri, state


def _spans(out: str, kind: str) -> list[tuple[str, int, int]]:
    """``(file, start, end)`` of every ``needed`` or ``group`` line of ``plan``'s output."""
    spans, current = [], ""
    for line in out.splitlines():
        if line.endswith(".distcp", 0, line.find(":")) and not line.startswith(" "):
            current = line.split(":")[0]
        match = re.match(rf"  {kind}\s+\[(\d+), (\d+)\)", line)
        if match:
            spans.append((current, int(match[1]), int(match[2])))
    return spans


@pytest.mark.parametrize("max_gap_size", ["0", "32MiB", "inf"])
def test_plan_predicts_exactly_the_bytes_a_partial_load_fetches(
    checkpoint: tuple[str, dict],
    storage_options: dict[str, Any],
    endpoint: list[str],
    capsys: pytest.CaptureFixture[str],
    max_gap_size: str,
) -> None:
    uri, state = checkpoint
    assert main(["plan", uri, "--keys", "model.*", "--max-gap-size", max_gap_size, *endpoint]) == 0
    out = capsys.readouterr().out
    groups = _spans(out, "group")
    assert groups

    gap = {"0": 0, "32MiB": 32 * 1024 * 1024, "inf": float("inf")}[max_gap_size]
    reader = S3StorageReader(uri, max_gap_size=gap, **storage_options)
    fs = reader.filesystem
    fs.reset_stats()  # .metadata was fetched when the reader checked the checkpoint; the load reads those bytes
    dcp.load({"model": {k: torch.zeros_like(v) for k, v in state["model"].items()}}, storage_reader=reader)
    stats = fs.stats
    assert stats.bytes_fetched == sum(end - start for _, start, end in groups)
    assert stats.get_requests == len(groups)  # groups here are shorter than a part: one GET each
    needed = _spans(out, "needed")
    planned = reader.reader_constructor.item_ranges_by_file
    assert sorted(needed) == sorted(
        (file.rsplit("/", 1)[1], r.start, r.end) for file, ranges in planned.items() for r in ranges
    )


def test_plan_names_the_keys_of_every_needed_range(
    checkpoint: tuple[str, dict], endpoint: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    uri, _ = checkpoint
    assert main(["plan", uri, "--keys", "model.0.*", "--keys", "model.2.bias", *endpoint]) == 0
    out = capsys.readouterr().out
    named = re.findall(r"  needed .*  (\S+)$", out, flags=re.MULTILINE)
    assert sorted(named) == ["model.0.bias", "model.0.weight", "model.2.bias"]
    assert "keys matching 'model.0.*' or 'model.2.bias': 3, read as 3 items" in out


def test_plan_of_every_key_needs_the_whole_checkpoint(
    checkpoint: tuple[str, dict], endpoint: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    uri, _ = checkpoint
    assert main(["plan", uri, *endpoint]) == 0
    out = capsys.readouterr().out
    assert re.search(r"total: 2 of 2 data files, .* \(1\.00x\)", out)


def test_plan_refuses_a_pattern_that_matches_no_key(
    checkpoint: tuple[str, dict], endpoint: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    uri, _ = checkpoint
    assert main(["plan", uri, "--keys", "encoder.*", *endpoint]) == 2
    err = capsys.readouterr().err
    assert "no key of" in err and "'encoder.*'" in err and "model.0.bias" in err


def test_plan_of_a_missing_checkpoint_fails_with_one_line(
    bucket: str, endpoint: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", f"s3://{bucket}/nothing-here", *endpoint]) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m fsspec_s3reader plan: error: ") and "no DCP checkpoint at" in err


@pytest.mark.parametrize("uri", ["gs://bucket/ckpt", "ckpt", "s3://"])
def test_plan_refuses_a_uri_that_is_not_s3(uri: str, endpoint: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", uri, *endpoint]) == 2
    assert "s3://bucket/prefix" in capsys.readouterr().err


def test_plan_refuses_a_gap_size_that_is_not_a_size(
    checkpoint: tuple[str, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["plan", checkpoint[0], "--max-gap-size", "lots"])
    assert exited.value.code == 2
    assert "'lots' is not a size" in capsys.readouterr().err
