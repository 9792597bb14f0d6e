"""Where a DCP checkpoint lives: its S3 URI, checked once, and the ``s3reader`` filesystem that reaches it.

The storage reader (``dcp.py``) and the storage writer (``saving.py``) share
this, so both accept the same spellings and keep their storage options when
torch moves them to another checkpoint.
"""

from __future__ import annotations

import os
from typing import Any

from .uris import is_s3_uri, object_uri, without_scheme

METADATA_FILE = ".metadata"
"""The file whose presence says a checkpoint is complete; torch reads it first."""


def checkpoint_uri(checkpoint_id: Any) -> str:
    """The checkpoint's URI as given, without a trailing slash; a ``ValueError`` for anything not on S3."""
    if not isinstance(checkpoint_id, str | os.PathLike):
        raise TypeError(
            f"path must be the checkpoint's S3 URI as a str, like 's3://bucket/prefix', got {checkpoint_id!r}"
        )
    if not is_s3_uri(checkpoint_id):
        raise ValueError(
            f"checkpoint id {checkpoint_id!r} is not an S3 URI; use s3://bucket/prefix (or s3reader://bucket/prefix)"
        )
    return str(os.fspath(checkpoint_id)).rstrip("/")


def filesystem_url(checkpoint: str) -> str:
    """The same location spelled for the ``s3reader`` filesystem, which torch resolves through fsspec."""
    return "s3reader://" + without_scheme(object_uri(checkpoint))


class S3CheckpointLocation:
    """What the storage reader and writer share: an S3 checkpoint path on their own ``s3reader`` filesystem."""

    fs: Any
    path: Any

    @property
    def filesystem(self) -> Any:
        """The ``S3ReaderFileSystem`` this storage works through (``.stats`` counts its traffic)."""
        return self.fs.fs

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike[str]) -> bool:
        return is_s3_uri(checkpoint_id)

    def _move_to(self, checkpoint_id: str | os.PathLike[str] | None) -> None:
        # torch's reset re-resolves the path without the storage options (losing
        # the endpoint and credentials); keep our filesystem and move its path.
        if checkpoint_id:
            self.path = checkpoint_uri(checkpoint_id)
