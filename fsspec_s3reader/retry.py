"""How the transport retries a read: which failures deserve another try, and how long to wait first.

Each try is one HTTP request: the transport sends it with
``S3Calls.send_once``, which nothing underneath retries, so ``read_attempts``
counts requests, not attempts of attempts.
"""

from __future__ import annotations

import asyncio
import math
import random
import traceback
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
    and are never transient. Nor is a configuration or programming error that
    the HTTP client reports as a failed request (:func:`configuration_error`
    says which option to fix).
    """
    if configuration_error(exc) is not None:
        return False
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, ClientError):
            status = candidate.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = candidate.response.get("Error", {}).get("Code")
            return status in TRANSIENT_STATUS_CODES or code in TRANSIENT_ERROR_CODES
    return isinstance(exc, TRANSIENT_EXCEPTIONS)


_LIKELY_OPTIONS = {
    # where in the HTTP stack a bad value trips -> the option that put it there
    "_available_connections": "config_kwargs['max_pool_connections']",
    "ceil_timeout": "config_kwargs['connect_timeout']",
    "_reschedule_timeout": "config_kwargs['read_timeout']",
    "proxy_url_for": "config_kwargs['proxies']",
}
_CONFIGURATION_OPTIONS = (
    "config_kwargs (max_pool_connections, connect_timeout, read_timeout, proxies, ...) and client_kwargs"
)


def configuration_error(exc: BaseException) -> TypeError | ValueError | None:
    """The error to raise instead of ``exc`` when it is a configuration or programming error, else None.

    aiobotocore wraps whatever its HTTP client raised into botocore's
    ``HTTPClientError``, which otherwise means a dropped connection. When the
    wrapped error is a ``TypeError`` or ``ValueError`` (``unsupported operand
    type(s) for -: 'str' and 'int'`` from ``max_pool_connections="many"``),
    no retry can help. The option is guessed from where in the client it
    tripped; when that place is unknown, the message lists the candidates.
    """
    if not isinstance(exc, HTTPClientError):
        return None
    underlying = exc.kwargs.get("error")
    if not isinstance(underlying, TypeError | ValueError):
        return None
    option = _likely_option(underlying)
    suspect = f"most likely {option} has" if option else f"one of {_CONFIGURATION_OPTIONS} has"
    message = (
        f"the HTTP client failed on its configuration, not on the network "
        f"({type(underlying).__name__}: {underlying}): {suspect} a value of the wrong type or out of range; "
        "fix that option (retrying cannot help)"
    )
    return TypeError(message) if isinstance(underlying, TypeError) else ValueError(message)


def _likely_option(error: BaseException) -> str | None:
    """The option behind ``error``, from the innermost frame of its traceback that names a known place."""
    frames = traceback.extract_tb(error.__traceback__)
    for frame in reversed(frames):
        option = _LIKELY_OPTIONS.get(frame.name)
        if option is not None:
            return option
    return None
