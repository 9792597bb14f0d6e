"""Loaded only by the benchmark's moto server process: ranged GETs that cost O(range), and counts kept by the server.

moto answers every GET by reading the whole object out of its spooled temporary
file (``FakeKey.value``) and only then slicing out the requested range, so on a
256 MiB object a 4 KiB ranged GET costs ~0.25 s of server CPU. Real S3 charges
no such penalty, and it would swamp every client-side difference the benchmark
is meant to show (the more requests a strategy sends, the more it pays). Here
``FakeKey.value`` keeps the bytes it read once, until the object is written
again; every byte served is unchanged.

The server also counts what it answers, so that every client is counted the
same way, whatever its HTTP stack (s3torchconnector's native client and boto3
included): HEAD and GET requests on objects, other requests, and the body bytes
of successful object GETs, as announced by their ``Content-Length`` (what the
server set out to send, even to a client that hung up halfway). ``GET
/__benchmark__/counts`` answers the totals so far as JSON.

And it answers a completed multipart upload with its ETag as a header too, not
only in the XML body: s3torchconnector's native client (the CRT) requires the
header and fails the upload without it, so its checkpoint writer could not be
counted otherwise. No byte of any object changes.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

_CACHE_ATTRIBUTE = "_benchmark_cached_value"


def _install() -> None:
    try:
        from moto.s3 import models
    except ImportError:  # not a moto process after all: nothing to patch
        return
    key_class: Any = models.FakeKey
    if getattr(key_class, "benchmark_patched", False):
        return
    original: property = key_class.value

    def cached_value(self: Any) -> bytes:
        cached: bytes | None = self.__dict__.get(_CACHE_ATTRIBUTE)
        if cached is None:
            cached = original.fget(self) if original.fget is not None else b""
            self.__dict__[_CACHE_ATTRIBUTE] = cached
        return cached

    def set_value(self: Any, new_value: bytes) -> None:
        self.__dict__.pop(_CACHE_ATTRIBUTE, None)
        if original.fset is not None:
            original.fset(self, new_value)

    key_class.value = property(cached_value, set_value)
    key_class.benchmark_patched = True


COUNTS_PATH = "/__benchmark__/counts"

# Query parameters that still address the object itself rather than a subresource (?tagging, ?acl, ...).
_OBJECT_QUERY_PARAMETERS = {"x-id", "versionId", "partNumber"}


class _ServerCounts:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {"get_requests": 0, "head_requests": 0, "other_requests": 0, "get_bytes": 0}

    def add(self, field: str, body_bytes: int = 0) -> None:
        with self._lock:
            self._counts[field] += 1
            if field == "get_requests":
                self._counts["get_bytes"] += body_bytes

    def as_json(self) -> bytes:
        with self._lock:
            return json.dumps(self._counts).encode()


def _request_kind(environ: dict[str, Any]) -> str:
    """``get_requests`` or ``head_requests`` for a request on an object (path style), else ``other_requests``."""
    bucket, _, key = environ.get("PATH_INFO", "").lstrip("/").partition("/")
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    on_object = bool(bucket and key) and all(
        name in _OBJECT_QUERY_PARAMETERS or name.startswith("response-") for name in query
    )
    method = environ.get("REQUEST_METHOD", "")
    if on_object and method == "GET":
        return "get_requests"
    if on_object and method == "HEAD":
        return "head_requests"
    return "other_requests"


def _content_length(headers: Iterable[tuple[str, str]]) -> int:
    for name, value in headers:
        if name.lower() == "content-length":
            return int(value)
    return 0


_ETAG_ELEMENT = re.compile(rb"<ETag>(.*?)</ETag>")


def _completes_upload(environ: dict[str, Any]) -> bool:
    return environ.get("REQUEST_METHOD") == "POST" and "uploadId=" in environ.get("QUERY_STRING", "")


def _with_etag_header(
    app: Callable[..., Any], environ: dict[str, Any], start_response: Callable[..., Any]
) -> list[bytes]:
    """Call ``app``, then answer with its status, headers and body, plus an ``ETag`` header taken from the body."""
    answer: list[Any] = []

    def hold(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Callable[[bytes], None]:
        answer[:] = [status, list(headers), exc_info]
        return lambda data: None  # the legacy write callable: moto does not use it

    body = b"".join(app(environ, hold))
    status, headers, exc_info = answer
    found = _ETAG_ELEMENT.search(body)
    if found and not any(name.lower() == "etag" for name, _ in headers):
        etag = found.group(1).decode().replace("&quot;", '"').replace("&#34;", '"')
        headers.append(("ETag", etag))
    start_response(status, headers, *exc_info)
    return [body]


def _install_counting() -> None:
    try:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication
    except ImportError:
        return
    app_class: Any = DomainDispatcherApplication
    if getattr(app_class, "benchmark_counting", False):
        return
    original: Callable[..., Any] = app_class.__call__
    counts = _ServerCounts()

    def counted_call(self: Any, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") == COUNTS_PATH:
            body = counts.as_json()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        kind = _request_kind(environ)

        def counting_start_response(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            # Counted when the answer is known (status and headers), before its body goes out.
            succeeded = status[:3] in ("200", "206")
            counts.add(kind, _content_length(headers) if kind == "get_requests" and succeeded else 0)
            return start_response(status, headers, *exc_info)

        if _completes_upload(environ):
            return _with_etag_header(functools.partial(original, self), environ, counting_start_response)
        return original(self, environ, counting_start_response)

    app_class.__call__ = counted_call
    app_class.benchmark_counting = True


_install()
_install_counting()
