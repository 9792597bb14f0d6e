"""Errors this package raises beyond the built-in ones.

Each subclasses the built-in that callers already catch (``OSError``), so
existing ``except OSError`` handlers keep working.
"""

from __future__ import annotations


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
