"""Reader strategies: each a read-only file over one S3 object, built on the transport protocol."""

from .adaptive import AdaptiveS3Reader
from .base import S3Reader
from .dcp_optimized import DCPOptimizedS3Reader
from .ranged import DEFAULT_BUFFER_SIZE, RangedS3Reader
from .sequential import SequentialS3Reader

__all__ = [
    "AdaptiveS3Reader",
    "DEFAULT_BUFFER_SIZE",
    "DCPOptimizedS3Reader",
    "RangedS3Reader",
    "S3Reader",
    "SequentialS3Reader",
]
