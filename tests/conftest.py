"""Shared fixtures: one moto S3 server on 127.0.0.1 for the session, a fresh bucket per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fault_proxy import FaultProxy
from hypothesis import HealthCheck, settings

from fsspec_s3reader import S3ReaderFileSystem
from fsspec_s3reader.local_server import LocalS3Server
from fsspec_s3reader.transport import limits

# Every S3 call goes to the local server; make sure nothing reaches for real credentials or regions.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def _fresh_endpoint_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with the process's adaptive windows unlearned.

    The window of requests in flight to an endpoint is shared by the whole
    process, on purpose; a test that made the fault proxy answer ``SlowDown``
    would otherwise leave a smaller window to the tests after it.
    """
    monkeypatch.setattr(limits, "_ENDPOINT_LIMITERS", {})


@pytest.fixture(scope="session")
def s3_server() -> Iterator[LocalS3Server]:
    with LocalS3Server() as server:
        yield server


@pytest.fixture(scope="session")
def storage_options(s3_server: LocalS3Server) -> dict[str, Any]:
    return s3_server.storage_options


@pytest.fixture
def fs(storage_options: dict[str, Any]) -> S3ReaderFileSystem:
    """A filesystem of its own per test, so ``fs.stats`` counts only this test's traffic."""
    return S3ReaderFileSystem(skip_instance_cache=True, **storage_options)


@pytest.fixture
def bucket(fs: S3ReaderFileSystem) -> str:
    name = f"test-{uuid.uuid4().hex[:16]}"
    fs.mkdir(name)
    return name


@pytest.fixture(scope="session")
def _fault_proxy_server(s3_server: LocalS3Server) -> Iterator[FaultProxy]:
    with FaultProxy(s3_server.endpoint_url) as proxy:
        yield proxy


@pytest.fixture
def fault_proxy(_fault_proxy_server: FaultProxy) -> Iterator[FaultProxy]:
    """The fault-injecting proxy in front of the moto server, without rules and with an empty log."""
    _fault_proxy_server.reset()
    yield _fault_proxy_server
    _fault_proxy_server.reset()


@pytest.fixture
def proxied_options(storage_options: dict[str, Any], fault_proxy: FaultProxy) -> dict[str, Any]:
    """Storage options that reach the moto server through the fault proxy, retrying without delay."""
    return {**storage_options, "endpoint_url": fault_proxy.endpoint_url, "retry_backoff": 0.001}
