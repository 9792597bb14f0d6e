"""Where S3 lives: the source behind each open reader, and the interface through which it reaches S3.

``S3ObjectTransport`` gives a reader ``get_object_info()`` and
``get_stream(start, end)``; it sends its requests through an ``S3Calls`` (the
event loop, and one HTTP request per call), which the filesystem provides.
"""

from .calls import BotocoreCalls, S3Calls
from .object_transport import (
    DEFAULT_MAX_PARTS_IN_FLIGHT,
    DEFAULT_PART_SIZE,
    S3ObjectTransport,
    TransportSettings,
    split_into_parts,
)

__all__ = [
    "DEFAULT_MAX_PARTS_IN_FLIGHT",
    "DEFAULT_PART_SIZE",
    "BotocoreCalls",
    "S3Calls",
    "S3ObjectTransport",
    "TransportSettings",
    "split_into_parts",
]
