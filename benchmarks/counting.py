"""Neutral request and byte counts: botocore event hooks on the session every contender's client comes from.

Every filesystem in the benchmark, s3fs and ours alike, is given
``session=counted_session`` (an s3fs option), so one mechanism counts all of
them; ``fs.stats`` of our filesystems is only a cross-check, never the source.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Any

from aiobotocore.session import AioSession  # type: ignore[import-untyped]


@dataclass(frozen=True)
class RequestCounts:
    """HTTP requests sent and GET body bytes announced by the server; a snapshot."""

    get_requests: int = 0
    head_requests: int = 0
    other_requests: int = 0
    """Listing, bucket lookups and the like."""
    get_bytes: int = 0
    """Sum of the ``Content-Length`` of successful GetObject responses: what the server sent."""

    def __sub__(self, other: RequestCounts) -> RequestCounts:
        return RequestCounts(
            get_requests=self.get_requests - other.get_requests,
            head_requests=self.head_requests - other.head_requests,
            other_requests=self.other_requests - other.other_requests,
            get_bytes=self.get_bytes - other.get_bytes,
        )


_REQUEST_FIELDS = {"GetObject": "get_requests", "HeadObject": "head_requests"}


class RequestCounter:
    """Counts what the clients of one session send, by operation; safe across threads.

    ``before-send`` fires once per HTTP attempt (retries included), so the
    request counts are what reached the server. ``after-call`` of GetObject
    carries the parsed response, whose ``ContentLength`` is the body the
    server sent for that (possibly ranged) GET.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = RequestCounts()

    def on_before_send(self, event_name: str, **kwargs: Any) -> None:
        # Must return None: a non-None return value would replace the HTTP response.
        field = _REQUEST_FIELDS.get(event_name.rsplit(".", 1)[-1], "other_requests")
        with self._lock:
            self._counts = dataclasses.replace(self._counts, **{field: getattr(self._counts, field) + 1})

    def on_get_object_done(self, http_response: Any, parsed: dict[str, Any], **kwargs: Any) -> None:
        if http_response.status_code >= 300:
            return  # an error response's body is not object bytes
        length = int(parsed.get("ContentLength", 0))
        with self._lock:
            self._counts = dataclasses.replace(self._counts, get_bytes=self._counts.get_bytes + length)

    def snapshot(self) -> RequestCounts:
        with self._lock:
            return self._counts


def counted_session() -> tuple[AioSession, RequestCounter]:
    """A fresh aiobotocore session whose every client reports to the returned counter.

    Handlers registered on a session are copied into each client created from
    it afterwards, so this also counts filesystems that build their client
    late or more than once (``S3StorageReader`` makes one per load).
    """
    counter = RequestCounter()
    session = AioSession()
    session.register("before-send.s3", counter.on_before_send)
    session.register("after-call.s3.GetObject", counter.on_get_object_done)
    return session, counter
