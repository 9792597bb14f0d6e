"""Reader strategies: each a read-only file over one S3 object, built on the transport protocol."""

from .base import S3Reader
from .ranged import DEFAULT_BUFFER_SIZE, RangedS3Reader
from .sequential import SequentialS3Reader

__all__ = ["DEFAULT_BUFFER_SIZE", "RangedS3Reader", "S3Reader", "SequentialS3Reader"]
