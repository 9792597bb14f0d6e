"""The clients contenders read with, each made for one endpoint: s3fs, ours, s3torchconnector, pyarrow's
native S3 filesystem, obstore, and boto3 (the network floors' plain parallel client).

s3fs and our filesystem get a session of their own whose requests are also
counted on the client side (``counting.py``), to cross-check the server's count;
the native clients (s3torchconnector's CRT, pyarrow's AWS SDK for C++, obstore's
Rust client) and boto3 are counted by the server alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import s3fs

from fsspec_s3reader import S3ReaderFileSystem

from .config import Endpoint
from .counting import RequestCounter, counted_session

UPLOAD_OPTIONS: dict[str, Any] = {"config_kwargs": {"request_checksum_calculation": "when_required"}}
"""For storing the data (s3fs and our DCP writer): no aws-chunked checksum trailers, which s3rver 3.7.1 would
store as object bytes."""

FLOOR_CONNECTIONS = 8
"""Parallel connections of the network floor's plain client: what a hand-written loader would use."""

FLOOR_PIECE = 16 * 1024 * 1024
"""The network floor's largest range per GET: big enough that a request's own cost is a small part of it."""

REGION = "us-east-1"


def plain_s3fs(endpoint: Endpoint, **options: Any) -> tuple[s3fs.S3FileSystem, RequestCounter]:
    """s3fs as a user gets it: default options unless ``options`` say otherwise."""
    session, counter = counted_session()
    fs = s3fs.S3FileSystem(session=session, skip_instance_cache=True, **endpoint.storage_options, **options)
    return fs, counter


def ours(endpoint: Endpoint, **options: Any) -> tuple[S3ReaderFileSystem, RequestCounter]:
    """Our filesystem; ``options`` pick the strategy (``reader="range_based", buffer_size=0``)."""
    session, counter = counted_session()
    fs = S3ReaderFileSystem(session=session, skip_instance_cache=True, **endpoint.storage_options, **options)
    return fs, counter


def storage_options_with_counter(endpoint: Endpoint, **options: Any) -> tuple[dict[str, Any], RequestCounter]:
    """``storage_options`` for pandas or torch that route every request through a counted session.

    The session object is part of the options, so fsspec's instance cache
    gives this contender a filesystem no other contender shares.
    """
    session, counter = counted_session()
    return {**endpoint.storage_options, "session": session, **options}, counter


def s3tc_client(endpoint: Endpoint) -> Any:
    """s3torchconnector's ``S3Client`` pointed at ``endpoint``, path-style, as its docs advise for a custom endpoint.

    The native client reads its credentials from the environment when it is
    first used; this worker process serves one contender, so setting them here
    touches no one else.
    """
    from s3torchconnector._s3client import S3Client, S3ClientConfig

    os.environ["AWS_ACCESS_KEY_ID"] = endpoint.key
    os.environ["AWS_SECRET_ACCESS_KEY"] = endpoint.secret
    return S3Client(REGION, endpoint=endpoint.url, s3client_config=S3ClientConfig(force_path_style=True))


def pyarrow_s3(endpoint: Endpoint) -> Any:
    """pyarrow's native ``S3FileSystem`` (the AWS SDK for C++) on ``endpoint``: what a pandas user switches to.

    Paths are ``bucket/key``, path-style over plain HTTP; the instance
    metadata service is never asked (there is none on loopback).
    """
    from pyarrow import fs as pafs

    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    scheme, _, address = endpoint.url.partition("://")
    return pafs.S3FileSystem(
        access_key=endpoint.key,
        secret_key=endpoint.secret,
        region=REGION,
        scheme=scheme,
        endpoint_override=address,
        allow_bucket_creation=False,
        allow_bucket_deletion=False,
    )


def obstore_store(endpoint: Endpoint, bucket: str) -> Any:
    """obstore's ``S3Store`` (Rust, object_store) for one bucket on ``endpoint``, path-style over plain HTTP."""
    from obstore.store import S3Store

    return S3Store(
        bucket,
        endpoint=endpoint.url,
        access_key_id=endpoint.key,
        secret_access_key=endpoint.secret,
        region=REGION,
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )


def boto3_client(endpoint: Endpoint) -> Any:
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint.url,
        aws_access_key_id=endpoint.key,
        aws_secret_access_key=endpoint.secret,
        region_name=REGION,
        config=Config(max_pool_connections=FLOOR_CONNECTIONS),
    )


class RangeFetcher:
    """The network floor's transport: exactly the given byte ranges, ``FLOOR_CONNECTIONS`` GETs at a time."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._client = boto3_client(endpoint)
        self._pool = ThreadPoolExecutor(FLOOR_CONNECTIONS, thread_name_prefix="floor")

    def _get(self, bucket: str, key: str, start: int | None, end: int | None) -> bytes:
        """Bytes ``[start, end)``, or the whole object when both are None."""
        if start is None or end is None:
            response = self._client.get_object(Bucket=bucket, Key=key)
        else:
            response = self._client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}")
        data: bytes = response["Body"].read()
        return data

    def fetch_tail(self, bucket: str, key: str, length: int) -> tuple[bytes, int]:
        """The object's last ``length`` bytes (all of it if smaller) and its size: a HEAD, then a ranged GET.

        Not one suffix-range GET (``bytes=-N``), which S3 serves: s3rver 3.7.1
        answers it with the object's first bytes instead.
        """
        size = int(self._client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        return self._get(bucket, key, max(0, size - length), size), size

    def fetch(self, requests: Sequence[tuple[str, int | None, int | None]], bucket: str) -> list[bytes]:
        """``(key, start, end)`` each; results in the order asked."""
        return list(self._pool.map(lambda request: self._get(bucket, *request), requests))
