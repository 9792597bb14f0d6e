"""Credentials never show: not in any log line (DEBUG included), exception message or repr."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import pytest
import torch.distributed.checkpoint as dcp
from dcp_states import assert_same_state, blank_like, training_state
from fault_proxy import Fault, FaultProxy

from fsspec_s3reader import ReadRetriesExhaustedError, S3ReaderFileSystem, S3StorageReader, S3StorageWriter
from fsspec_s3reader.redaction import redact

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")

KEY = "AKIA" + uuid.uuid4().hex[:16].upper()
SECRET = "secret-" + uuid.uuid4().hex
TOKEN = "token-" + uuid.uuid4().hex
SERVER_LOGGERS = ("moto", "werkzeug")  # the test server's own logs: a real endpoint's are not in this process

UNMASKED = [
    re.compile(r"(?i)signature[=:]\s*(?!<redacted>)\S"),
    re.compile(r"(?i)credential=(?!<redacted>)\S"),
    re.compile(r"(?i)x-amz-security-token':\s*b?'(?!<redacted>)"),
    re.compile(r"(?i)x-amz-security-token[:=](?!<redacted>)\S"),
    re.compile(r"(?i)'authorization':\s*b?'(?!<redacted>)"),
]


def assert_no_secret(text: str, where: str) -> None:
    for secret in (KEY, SECRET, TOKEN):
        assert secret not in text, f"a credential appears in {where}"
    for pattern in UNMASKED:
        match = pattern.search(text)
        assert match is None, (
            f"signing material appears in {where}: {text[max(0, match.start() - 60) : match.end() + 20]}"
        )


@pytest.fixture
def credentials(storage_options: dict) -> dict[str, Any]:
    return {**storage_options, "key": KEY, "secret": SECRET, "token": TOKEN}


def test_a_load_with_retries_and_failures_logs_no_secret_at_debug(
    credentials: dict, fault_proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = f"secrets-{uuid.uuid4().hex[:8]}"
    S3ReaderFileSystem(skip_instance_cache=True, **credentials).mkdir(bucket)
    state = training_state(seed=8)
    uri = f"s3://{bucket}/ckpt"
    dcp.save(state, storage_writer=S3StorageWriter(uri, **credentials))
    proxied = {**credentials, "endpoint_url": fault_proxy.endpoint_url, "retry_backoff": 0.001}
    caplog.set_level(logging.DEBUG)

    fault_proxy.add(Fault.reset(after_bytes=100), method="GET", every=2)
    storage_reader = S3StorageReader(uri, **proxied)
    target = blank_like(state)
    dcp.load(target, storage_reader=storage_reader)
    assert_same_state(target, state)

    # a listing through botocore (the lean path sends listings itself): botocore logs the request, signed
    S3ReaderFileSystem(lean_requests=False, skip_instance_cache=True, **proxied).ls(bucket)

    fault_proxy.reset()
    failing = S3ReaderFileSystem(read_attempts=2, skip_instance_cache=True, **proxied)
    reader = failing.open(f"{bucket}/ckpt/.metadata", "rb")
    fault_proxy.add(Fault.status(503), method="GET")
    with pytest.raises(ReadRetriesExhaustedError) as caught:
        failing.open(f"{bucket}/ckpt/.metadata", "rb")  # its first GET fails on every try

    logged = "\n".join(
        f"{record.name}: {record.getMessage()}"
        for record in caplog.records
        if not record.name.startswith(SERVER_LOGGERS)
    )
    assert "GET s3://" in logged and "retrying" in logged  # the transport's own lines were captured
    assert "Authorization" in logged  # and botocore's request lines (s3fs's listing), masked
    assert_no_secret(logged, "the DEBUG log")
    assert_no_secret(str(caught.value) + repr(caught.value) + str(caught.value.__cause__), "the error")
    for thing in (failing, reader, storage_reader, storage_reader.filesystem, storage_reader.reader_constructor):
        assert_no_secret(repr(thing), f"repr of {type(thing).__name__}")


def test_redact_masks_headers_signed_urls_and_registered_values() -> None:
    S3ReaderFileSystem(key=KEY, secret=SECRET, token=TOKEN, skip_instance_cache=True)
    text = (
        f"headers={{'Authorization': b'AWS4-HMAC-SHA256 Credential={KEY}/20260101/us-east-1/s3/aws4_request, "
        f"SignedHeaders=host, Signature=abc123', 'X-Amz-Security-Token': b'{TOKEN}'}} "
        f"url=https://b.s3.amazonaws.com/k?X-Amz-Credential={KEY}%2F&X-Amz-Signature=deadbeef&X-Amz-Security-Token=t "
        f"x-amz-security-token:{TOKEN}\nSignature:\n{'ab' * 32} {SECRET}"
    )
    assert_no_secret(redact(text), "redacted text")
    sse_c_key = uuid.uuid4().hex
    call = f"CALL: get_object - () - {{'Bucket': 'b', 'SSECustomerKey': '{sse_c_key}', 'Range': 'bytes=0-9'}}"
    assert sse_c_key not in redact(call)
    assert "'Range': 'bytes=0-9'" in redact(call)  # only secrets are masked
