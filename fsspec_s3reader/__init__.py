"""Fast, correct reads from S3 for fsspec, pandas/pyarrow and PyTorch Distributed Checkpoint.

``fsspec.open("s3reader://bucket/key", reader="range_based")`` opens an object
through a chosen reader strategy; ``S3StorageReader`` loads a DCP checkpoint
fetching only the bytes its load plan needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .constructor import (
    AdaptiveConstructor,
    DCPOptimizedConstructor,
    RangeBasedConstructor,
    ReaderConstructor,
    S3ReaderConstructor,
    SequentialConstructor,
    register_reader,
    registered_readers,
)
from .errors import IncompleteObjectError, ObjectChangedError, ReadRetriesExhaustedError
from .filesystem import S3ReaderFileSystem
from .protocol import ObjectInfo
from .readers import (
    AdaptiveS3Reader,
    DCPOptimizedS3Reader,
    ItemRange,
    RangedS3Reader,
    RangeGroup,
    S3Reader,
    SequentialS3Reader,
)
from .transport import TransferStats

if TYPE_CHECKING:
    from .dcp import S3StorageReader, S3StorageWriter

__version__ = "0.1.0"

__all__ = [
    "AdaptiveConstructor",
    "AdaptiveS3Reader",
    "DCPOptimizedConstructor",
    "DCPOptimizedS3Reader",
    "IncompleteObjectError",
    "ItemRange",
    "ObjectChangedError",
    "ObjectInfo",
    "RangeBasedConstructor",
    "RangeGroup",
    "RangedS3Reader",
    "ReadRetriesExhaustedError",
    "ReaderConstructor",
    "S3Reader",
    "S3ReaderConstructor",
    "S3ReaderFileSystem",
    "S3StorageReader",
    "S3StorageWriter",
    "SequentialConstructor",
    "SequentialS3Reader",
    "TransferStats",
    "register_reader",
    "registered_readers",
]

_NEEDS_TORCH = {"S3StorageReader", "S3StorageWriter"}


def __getattr__(name: str) -> Any:
    # The DCP classes import torch; load them only when asked, so that the
    # filesystem works without torch installed.
    if name in _NEEDS_TORCH:
        try:
            from . import dcp
        except ModuleNotFoundError as exc:  # pragma: no cover - exercised only without torch
            if exc.name != "torch":
                raise
            raise ImportError(
                f"{name} needs PyTorch: pip install torch (the CPU wheel will do), "
                "then pip install 'fsspec_s3reader[dcp]'"
            ) from exc
        return getattr(dcp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
