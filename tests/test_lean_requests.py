"""The lean request path: signed as botocore signs, the same answers and errors, botocore where it must be."""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import quote

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from fsspec_s3reader import ObjectChangedError, S3ReaderFileSystem
from fsspec_s3reader.transport.lean import LeanCalls
from fsspec_s3reader.transport.sigv4 import EMPTY_PAYLOAD_SHA256, FrozenCredentials, SigV4Signer

DATA = bytes(range(256)) * 400  # 100 KiB


@pytest.mark.parametrize("token", [None, "session-token"])
@pytest.mark.parametrize(
    ("path", "query", "headers"),
    [
        ("/bucket/key", {}, {}),
        ("/bucket/a%20b/c%2Bd~e.bin", {"versionId": "3/L4kqtJl+ab="}, {"range": "bytes=0-9", "if-match": '"abc"'}),
        ("/k%C3%A9y", {}, {"x-amz-request-payer": "requester"}),
    ],
)
def test_the_signature_is_the_one_botocore_computes(
    path: str, query: dict[str, str], headers: dict[str, str], token: str | None
) -> None:
    now = datetime.datetime(2026, 11, 30, 12, 34, 56, tzinfo=datetime.timezone.utc)
    host = "bucket.s3.eu-west-1.amazonaws.com"
    ours = SigV4Signer("eu-west-1").headers(
        "GET", host, path, query, headers, FrozenCredentials("AKIDEXAMPLE", "secret/key+1", token), now
    )

    query_string = "&".join(f"{k}={quote(v, safe='-_.~')}" for k, v in query.items())
    request = AWSRequest(method="GET", url=f"https://{host}{path}" + (f"?{query_string}" if query else ""))
    for name, value in headers.items():
        request.headers[name] = value
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    request.context["timestamp"] = stamp
    request.headers["X-Amz-Date"] = stamp
    request.headers["X-Amz-Content-SHA256"] = EMPTY_PAYLOAD_SHA256
    if token:
        request.headers["X-Amz-Security-Token"] = token
    auth = S3SigV4Auth(Credentials("AKIDEXAMPLE", "secret/key+1", token), "s3", "eu-west-1")
    signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    assert ours["authorization"].endswith(f"Signature={signature}")
    assert f"SignedHeaders={auth.signed_headers(auth.headers_to_sign(request))}" in ours["authorization"]


def test_gets_and_heads_bypass_botocore(fs: S3ReaderFileSystem, bucket: str) -> None:
    fs.pipe_file(f"{bucket}/k", DATA)
    sent_through_botocore: list[str] = []

    def record(event_name: str, **_: Any) -> None:
        sent_through_botocore.append(event_name)

    fs.connect().meta.events.register("before-send.s3", record)
    fs.reset_stats()
    with fs.open(f"{bucket}/k", "rb", reader="range_based", buffer_size=0) as reader:
        reader.seek(70_000)
        assert reader.read(100) == DATA[70_000:70_100]
    assert fs.stats.get_requests == 2 and fs.stats.head_requests == 0
    assert sent_through_botocore == []
    assert isinstance(fs.object_calls._inner, LeanCalls)  # type: ignore[attr-defined]


def test_lean_requests_false_sends_everything_through_botocore(storage_options: dict, bucket: str) -> None:
    fs = S3ReaderFileSystem(lean_requests=False, skip_instance_cache=True, **storage_options)
    fs.pipe_file(f"{bucket}/k", DATA)
    sent: list[str] = []
    fs.connect().meta.events.register("before-send.s3", lambda event_name, **_: sent.append(event_name))
    with fs.open(f"{bucket}/k", "rb") as reader:
        assert reader.read() == DATA
    assert sent and all(name.endswith("GetObject") for name in sent)


def test_errors_read_as_they_do_through_botocore(fs: S3ReaderFileSystem, bucket: str) -> None:
    with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/missing"):
        fs.open(f"{bucket}/missing", "rb")
    path = f"{bucket}/changing"
    fs.pipe_file(path, DATA)
    with fs.open(path, "rb", reader="range_based", buffer_size=0) as reader:
        fs.pipe_file(path, DATA[::-1])
        reader.seek(90_000)
        with pytest.raises(ObjectChangedError, match="overwritten while being read"):
            reader.read(10)


def test_a_request_parameter_it_does_not_know_goes_through_botocore(fs: S3ReaderFileSystem, bucket: str) -> None:
    fs.pipe_file(f"{bucket}/k", DATA)
    sent: list[str] = []
    fs.connect().meta.events.register("before-send.s3", lambda event_name, **_: sent.append(event_name))
    with fs.open(f"{bucket}/k", "rb", ResponseCacheControl="no-cache") as reader:
        assert reader.read(10) == DATA[:10]
    assert sent  # botocore sent it, parameter and all


def test_an_anonymous_filesystem_sends_unsigned_requests(
    storage_options: dict, fs: S3ReaderFileSystem, bucket: str
) -> None:
    fs.pipe_file(f"{bucket}/k", DATA)
    fs.chmod(f"{bucket}/k", "public-read")
    anonymous = S3ReaderFileSystem(anon=True, skip_instance_cache=True, endpoint_url=storage_options["endpoint_url"])
    with anonymous.open(f"{bucket}/k", "rb") as reader:
        assert reader.read() == DATA
    assert anonymous.stats.head_requests == 0


def test_a_filesystem_nobody_holds_is_collected_with_its_connections(storage_options: dict, bucket: str) -> None:
    import gc
    import weakref

    fs = S3ReaderFileSystem(skip_instance_cache=True, **storage_options)
    fs.pipe_file(f"{bucket}/k", DATA)
    with fs.open(f"{bucket}/k", "rb") as reader:
        reader.read()
    gone = weakref.ref(fs)
    del fs, reader
    gc.collect()
    assert gone() is None


ODD_KEYS = ["plain.parquet", "a b/c+d.bin", "sp ace/%41%2F", "k\u00e9y/\u65e5\u672c", "tab\there", "x/y/z", "x/y&z=1?q"]


def _listing_as_botocore_says(storage_options: dict, bucket: str, **request: Any) -> dict[str, Any]:
    slow = S3ReaderFileSystem(lean_requests=False, skip_instance_cache=True, **storage_options)
    return _without_metadata(slow.call_s3("list_objects_v2", Bucket=bucket, **request))


def _without_metadata(answer: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in answer.items() if name != "ResponseMetadata"}


@pytest.mark.parametrize(
    "request_",
    [
        {},
        {"Prefix": "x/"},
        {"Delimiter": "/"},
        {"Prefix": "x/", "Delimiter": "/"},
        {"MaxKeys": 2},
        {"StartAfter": "k"},
        {"Prefix": "nothing-here/"},
    ],
)
def test_a_listing_sent_lean_answers_what_botocore_answers(
    storage_options: dict, fs: S3ReaderFileSystem, bucket: str, request_: dict[str, Any]
) -> None:
    fs.pipe({f"{bucket}/{key}": key.encode() for key in ODD_KEYS})
    sent: list[str] = []
    fs.connect().meta.events.register("before-send.s3", lambda event_name, **_: sent.append(event_name))
    ours = fs.call_s3("list_objects_v2", Bucket=bucket, **request_)
    assert sent == []  # not through botocore
    assert _without_metadata(ours) == _listing_as_botocore_says(storage_options, bucket, **request_)


def test_ls_find_and_info_of_a_folder_answer_as_through_botocore_with_pages_of_two(
    storage_options: dict, bucket: str
) -> None:
    lean = S3ReaderFileSystem(skip_instance_cache=True, **storage_options)
    slow = S3ReaderFileSystem(lean_requests=False, skip_instance_cache=True, **storage_options)
    lean.pipe({f"{bucket}/{key}": key.encode() for key in ODD_KEYS})
    pages: list[dict[str, Any]] = []
    for fs in (lean, slow):
        page = fs.call_s3("list_objects_v2", Bucket=bucket, MaxKeys=2)
        pages.append(
            _without_metadata(
                fs.call_s3("list_objects_v2", Bucket=bucket, MaxKeys=2, ContinuationToken=page["NextContinuationToken"])
            )
        )
        fs.invalidate_cache()
    assert pages[0] == pages[1] and pages[0]["IsTruncated"]
    assert lean.find(bucket, detail=True, withdirs=True) == slow.find(bucket, detail=True, withdirs=True)
    assert lean.ls(f"{bucket}/x", detail=True) == slow.ls(f"{bucket}/x", detail=True)
    assert lean.info(f"{bucket}/x") == slow.info(f"{bucket}/x")
    assert lean.glob(f"{bucket}/**/*.bin") == slow.glob(f"{bucket}/**/*.bin") == [f"{bucket}/a b/c+d.bin"]
    lean.reset_stats()
    lean.invalidate_cache()
    lean.ls(bucket)
    assert (lean.stats.other_requests, lean.stats.get_requests) == (1, 0)  # a listing counts as one, not as a GET


def test_listing_a_missing_bucket_raises_file_not_found_as_through_botocore(fs: S3ReaderFileSystem) -> None:
    with pytest.raises(FileNotFoundError):
        fs.ls("no-such-bucket-here/folder", refresh=True)
    with pytest.raises(FileNotFoundError):
        fs.info("no-such-bucket-here/folder/file")


def test_a_head_sent_lean_answers_what_botocore_answers(
    storage_options: dict, fs: S3ReaderFileSystem, bucket: str
) -> None:
    path = f"{bucket}/described.bin"
    fs.pipe_file(
        path,
        DATA,
        ContentType="application/x-thing",
        ContentEncoding="identity",
        CacheControl="max-age=60",
        Metadata={"owner": "me", "run": "7"},
    )
    slow = S3ReaderFileSystem(lean_requests=False, skip_instance_cache=True, **storage_options)
    sent: list[str] = []
    fs.connect().meta.events.register("before-send.s3", lambda event_name, **_: sent.append(event_name))
    ours = _without_metadata(fs.call_s3("head_object", Bucket=bucket, Key="described.bin"))
    assert sent == []
    assert ours == _without_metadata(slow.call_s3("head_object", Bucket=bucket, Key="described.bin"))
    assert ours["Metadata"] == {"owner": "me", "run": "7"} and ours["ContentLength"] == len(DATA)
    assert fs.info(path, refresh=True) == slow.info(path)
    assert fs.metadata(path) == slow.metadata(path) == {"owner": "me", "run": "7"}
    with pytest.raises(FileNotFoundError):
        fs.info(f"{bucket}/described.bin.missing", refresh=True)
