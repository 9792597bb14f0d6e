"""How the transport retries a read: which failures deserve another try, and how long to wait first.

Each try is one HTTP request: the transport sends it with
``S3Calls.send_once``, which nothing underneath retries, so ``read_attempts``
counts requests, not attempts of attempts.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass

from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.parsers import ResponseParserError

DEFAULT_READ_ATTEMPTS = 5
"""Tries per HEAD or per part (the first one included) before giving up."""

DEFAULT_READ_TIMEOUT = 30.0
"""Seconds a GET may wait for its response headers, or for the next bytes of its body."""

DEFAULT_RETRY_BACKOFF = 0.2
"""Seconds before the first retry; doubled for each further one, with jitter."""

MAX_RETRY_DELAY = 10.0
"""No wait between two attempts is longer than this."""

TRANSIENT_STATUS_CODES = frozenset({500, 502, 503, 504})
TRANSIENT_ERROR_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling", "ThrottlingException"}
)

TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted: the built-ins
    TimeoutError,  # our read timeout (asyncio.TimeoutError is this class from Python 3.11)
    asyncio.TimeoutError,
    BotocoreConnectionError,  # EndpointConnectionError, ConnectionClosedError, ...
    HTTPClientError,  # botocore's read and connect timeouts among them
    ResponseStreamingError,
    IncompleteReadError,
    ResponseParserError,  # an error body cut short
)
try:  # aiohttp is how aiobotocore talks HTTP; these mean a dropped connection or body
    from aiohttp import ClientConnectionError, ClientPayloadError

    TRANSIENT_EXCEPTIONS += (ClientConnectionError, ClientPayloadError)
except ImportError:  # pragma: no cover - aiobotocore always brings aiohttp today
    pass


class BodyEndedEarlyError(ConnectionError):
    """A response body ended before the bytes its Content-Range announced: the connection was cut."""


def validate_retry_settings(read_attempts: int, read_timeout: float, retry_backoff: float) -> None:
    """Refuse retry settings that could never read anything, naming the option and what it takes."""
    if isinstance(read_attempts, bool) or not isinstance(read_attempts, int):
        raise TypeError(f"read_attempts must be an int (tries per request, the first included), got {read_attempts!r}")
    if read_attempts < 1:
        raise ValueError(f"read_attempts must be at least 1 (1 means no retries), got {read_attempts}")
    for name, value in (("read_timeout", read_timeout), ("retry_backoff", retry_backoff)):
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not read_timeout > 0:
        raise ValueError(f"read_timeout must be a positive number of seconds (math.inf: no limit), got {read_timeout}")
    if retry_backoff < 0 or math.isinf(retry_backoff):
        raise ValueError(f"retry_backoff must be a finite number of seconds >= 0 (0: no wait), got {retry_backoff}")


@dataclass(frozen=True)
class RetryPolicy:
    """How many times a read is tried, how long it may stall, and how long to wait between tries."""

    attempts: int = DEFAULT_READ_ATTEMPTS
    timeout: float = DEFAULT_READ_TIMEOUT
    backoff: float = DEFAULT_RETRY_BACKOFF

    def __post_init__(self) -> None:
        validate_retry_settings(self.attempts, self.timeout, self.backoff)

    @property
    def wait_limit(self) -> float | None:
        """``timeout`` as ``asyncio.wait_for`` takes it: ``None`` for no limit."""
        return None if math.isinf(self.timeout) else self.timeout

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after the ``failed_attempt``-th try failed.

        Exponential, capped at ``MAX_RETRY_DELAY``, and jittered between half
        and all of that, so that many readers hit by one outage do not come
        back in lockstep.
        """
        ceiling: float = min(MAX_RETRY_DELAY, self.backoff * 2.0 ** (failed_attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def is_transient(exc: BaseException) -> bool:
    """True when another try may well succeed: a 5xx, throttling, or a connection that failed or stalled.

    403, 404, 412 and 416 are answers about the object, not the connection,
    and are never transient.
    """
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, ClientError):
            status = candidate.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = candidate.response.get("Error", {}).get("Code")
            return status in TRANSIENT_STATUS_CODES or code in TRANSIENT_ERROR_CODES
    return isinstance(exc, TRANSIENT_EXCEPTIONS)
