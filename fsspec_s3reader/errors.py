"""Errors this package raises beyond the built-in ones.

Each subclasses the built-in that callers already catch (``OSError``), so
existing ``except OSError`` handlers keep working.
"""

from __future__ import annotations

import errno


def describe_span(span: tuple[int, int] | None) -> str:
    """How a log line or an error names the bytes a request was after: ``None`` is a HEAD, a negative start a suffix."""
    if span is None:
        return "object info (HEAD)"
    if span[0] < 0:
        return f"the last {-span[0]} bytes"
    return f"bytes [{span[0]}, {span[1]})"


class ObjectChangedError(OSError):
    """The object was overwritten while it was being read.

    Every ranged GET of one open file is pinned to the ETag seen first; S3
    refused a later range because the object no longer has that ETag. Nothing
    mixed from two versions was returned. Reopen the file to read the new
    version.
    """


class IncompleteObjectError(OSError):
    """The object holds fewer bytes than a read needed.

    Raised when the object ends before a requested range does, e.g. a
    checkpoint file truncated after its metadata was written.
    """


class ReadRetriesExhaustedError(OSError):
    """A read kept failing for transient reasons until its last attempt.

    Raised after ``read_attempts`` tries of one request (a HEAD or one part's
    ranged GET) each failed with a transient error: HTTP 500/502/503/504,
    SlowDown, a refused or reset connection, a body that ended early or
    stalled past ``read_timeout``. ``bucket``, ``key``, ``start`` and ``end``
    name the bytes that could not be read (``start`` is the first byte no
    attempt delivered; both are ``None`` for a HEAD), ``attempts`` how many
    tries were made; ``__cause__`` is the last failure.
    """

    bucket: str = ""
    key: str = ""
    start: int | None = None
    end: int | None = None
    attempts: int = 0

    @classmethod
    def after(
        cls,
        bucket: str,
        key: str,
        span: tuple[int, int] | None,
        attempts: int,
        cause: BaseException,
    ) -> ReadRetriesExhaustedError:
        """The error for ``attempts`` failed tries at ``span`` (``None`` for a HEAD), the last one with ``cause``."""
        what = describe_span(span)
        error = cls(
            errno.EIO,
            f"s3://{bucket}/{key} {what}: gave up after {attempts} attempts: {type(cause).__name__}: {cause}; "
            "raise read_attempts (or read_timeout, for stalls) or check the endpoint",
        )
        # Plain attributes beside OSError's own arguments, so the error pickles
        # (torch gathers a failed rank's exceptions across processes).
        error.bucket, error.key, error.attempts = bucket, key, attempts
        error.start, error.end = span if span is not None else (None, None)
        return error
