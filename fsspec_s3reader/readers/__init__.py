"""Reader strategies: each a read-only file over one S3 object, built on the transport protocol."""

from .adaptive import AdaptiveS3Reader
from .base import S3Reader
from .dcp_optimized import DEFAULT_MAX_GAP_SIZE, DCPOptimizedS3Reader, ItemRange, RangeGroup
from .ranged import DEFAULT_BUFFER_SIZE, RangedS3Reader
from .sequential import SequentialS3Reader

__all__ = [
    "AdaptiveS3Reader",
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_MAX_GAP_SIZE",
    "DCPOptimizedS3Reader",
    "ItemRange",
    "RangeGroup",
    "RangedS3Reader",
    "S3Reader",
    "SequentialS3Reader",
]
