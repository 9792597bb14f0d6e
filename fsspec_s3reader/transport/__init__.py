"""Where S3 lives: the source behind each open reader, and the interface through which it reaches S3.

``S3ObjectTransport`` gives a reader ``get_object_info()`` and
``get_stream(start, end)``; it sends its requests through an ``S3Calls`` (the
event loop, and one HTTP request per call), which the filesystem provides.
"""

from .calls import BotocoreCalls, S3Calls
from .lean import LeanCalls
from .limits import AdaptiveLimiter, LimitedCalls, RequestLimiter, endpoint_limiter, is_throttling
from .object_transport import (
    DEFAULT_FIRST_GET_SIZE,
    DEFAULT_MAX_PARTS_IN_FLIGHT,
    DEFAULT_PART_SIZE,
    S3ObjectTransport,
    TransportSettings,
    split_into_parts,
)

DEFAULT_MAX_REQUESTS_IN_FLIGHT = 64
"""Requests one filesystem keeps in flight at once, all its files and calls together."""

__all__ = [
    "AdaptiveLimiter",
    "DEFAULT_FIRST_GET_SIZE",
    "DEFAULT_MAX_PARTS_IN_FLIGHT",
    "DEFAULT_MAX_REQUESTS_IN_FLIGHT",
    "DEFAULT_PART_SIZE",
    "BotocoreCalls",
    "LeanCalls",
    "LimitedCalls",
    "RequestLimiter",
    "S3Calls",
    "S3ObjectTransport",
    "TransportSettings",
    "endpoint_limiter",
    "is_throttling",
    "split_into_parts",
]
