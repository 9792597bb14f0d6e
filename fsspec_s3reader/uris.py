"""How S3 locations are spelled: ``s3reader://``, ``s3://``, ``s3a://`` or bare ``bucket/key``.

One place for the schemes, so the filesystem, the DCP ranges and checkpoint
ids agree on what names the same object.
"""

from __future__ import annotations

import os
from typing import Any

S3_SCHEMES = ("s3reader://", "s3://", "s3a://")


def without_scheme(path: str) -> str:
    """``bucket/key`` from any S3 spelling (a bare path is returned as it is)."""
    for scheme in S3_SCHEMES:
        if path.startswith(scheme):
            return path[len(scheme) :]
    return path


def object_uri(path: str | os.PathLike[str]) -> str:
    """The canonical ``s3://bucket/key`` for any S3 spelling."""
    return "s3://" + without_scheme(os.fspath(path)).strip("/")


def is_s3_uri(location: Any) -> bool:
    """True for an ``s3reader://``, ``s3://`` or ``s3a://`` URI that names at least a bucket."""
    if not isinstance(location, str | os.PathLike):
        return False
    text = os.fspath(location)
    return isinstance(text, str) and any(text.startswith(s) and len(text) > len(s) for s in S3_SCHEMES)
