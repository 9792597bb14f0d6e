"""Fast, correct reads from S3 for fsspec, pandas/pyarrow and PyTorch Distributed Checkpoint.

``fsspec.open("s3reader://bucket/key", reader="range_based")`` opens an object
through a chosen reader strategy; ``S3StorageReader`` loads a DCP checkpoint
fetching only the bytes its load plan needs.

Every name is loaded when first asked for, so importing one layer (the
readers, the plan) does not import the others: the readers run without s3fs,
the filesystem without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .constructor import (
        DCPOptimizedConstructor,
        ReaderConstructor,
        S3ReaderConstructor,
        StrategyConstructor,
        register_reader,
        registered_readers,
    )
    from .dcp import S3StorageReader, S3StorageWriter
    from .errors import IncompleteObjectError, ObjectChangedError, ReadRetriesExhaustedError
    from .filesystem import S3ReaderFileSystem
    from .plan import ItemRange, PlannedLoad, RangeGroup
    from .protocol import ObjectInfo
    from .readers import (
        AdaptiveS3Reader,
        DCPOptimizedS3Reader,
        RangedS3Reader,
        S3Reader,
        SequentialS3Reader,
    )
    from .stats import TransferStats

__version__ = "0.1.0"

_HOMES = {
    "DCPOptimizedConstructor": "constructor",
    "ReaderConstructor": "constructor",
    "S3ReaderConstructor": "constructor",
    "StrategyConstructor": "constructor",
    "register_reader": "constructor",
    "registered_readers": "constructor",
    "S3StorageReader": "dcp",
    "S3StorageWriter": "dcp",
    "IncompleteObjectError": "errors",
    "ObjectChangedError": "errors",
    "ReadRetriesExhaustedError": "errors",
    "S3ReaderFileSystem": "filesystem",
    "ItemRange": "plan",
    "PlannedLoad": "plan",
    "RangeGroup": "plan",
    "ObjectInfo": "protocol",
    "AdaptiveS3Reader": "readers",
    "DCPOptimizedS3Reader": "readers",
    "RangedS3Reader": "readers",
    "S3Reader": "readers",
    "SequentialS3Reader": "readers",
    "TransferStats": "stats",
}
"""Where each public name lives."""

__all__ = [
    "AdaptiveS3Reader",
    "DCPOptimizedConstructor",
    "DCPOptimizedS3Reader",
    "IncompleteObjectError",
    "ItemRange",
    "ObjectChangedError",
    "ObjectInfo",
    "PlannedLoad",
    "RangeGroup",
    "RangedS3Reader",
    "ReadRetriesExhaustedError",
    "ReaderConstructor",
    "S3Reader",
    "S3ReaderConstructor",
    "S3ReaderFileSystem",
    "S3StorageReader",
    "S3StorageWriter",
    "SequentialS3Reader",
    "StrategyConstructor",
    "TransferStats",
    "register_reader",
    "registered_readers",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(f".{home}", __name__)
    except ModuleNotFoundError as exc:  # pragma: no cover - exercised only without torch
        if home != "dcp" or exc.name != "torch":
            raise
        raise ImportError(
            f"{name} needs PyTorch: pip install torch (the CPU wheel will do), then pip install 'fsspec_s3reader[dcp]'"
        ) from exc
    value = getattr(module, name)
    globals()[name] = value  # asked once, then an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
