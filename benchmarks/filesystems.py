"""Filesystems for contenders, each on a session of its own so that its requests are counted apart."""

from __future__ import annotations

from typing import Any

import s3fs

from fsspec_s3reader import S3ReaderFileSystem

from .config import Context
from .counting import RequestCounter, counted_session


def plain_s3fs(ctx: Context, **options: Any) -> tuple[s3fs.S3FileSystem, RequestCounter]:
    """s3fs as a user gets it: default options unless ``options`` say otherwise."""
    session, counter = counted_session()
    fs = s3fs.S3FileSystem(session=session, skip_instance_cache=True, **ctx.storage_options, **options)
    return fs, counter


def ours(ctx: Context, **options: Any) -> tuple[S3ReaderFileSystem, RequestCounter]:
    """Our filesystem; ``options`` pick the strategy (``reader="range_based", buffer_size=0``)."""
    session, counter = counted_session()
    fs = S3ReaderFileSystem(session=session, skip_instance_cache=True, **ctx.storage_options, **options)
    return fs, counter


def storage_options_with_counter(ctx: Context, **options: Any) -> tuple[dict[str, Any], RequestCounter]:
    """``storage_options`` for pandas or torch that route every request through a counted session.

    The session object is part of the options, so fsspec's instance cache
    gives this contender a filesystem no other contender shares.
    """
    session, counter = counted_session()
    return {**ctx.storage_options, "session": session, **options}, counter
