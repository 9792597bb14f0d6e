"""How the command line spells what it reads: S3 locations, byte ranges and sizes, and the errors for bad ones.

``UsageError`` (exit status 2) means the command line itself is wrong;
``CommandFailed`` (exit status 1), that the command could not do its job.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re

from .units import GIB, KIB, MIB
from .uris import S3_SCHEMES, without_scheme

_BUCKET_NAME = re.compile(r"[a-zA-Z0-9.\-_]{1,255}")  # what botocore accepts; S3 itself is stricter
_RANGE = re.compile(r"(?P<first>\d+)-(?P<last>\d*)|-(?P<suffix>\d+)")
_SIZE = re.compile(r"(?P<number>\d+)\s*(?P<unit>B|KiB|MiB|GiB)?")
_UNITS = {None: 1, "B": 1, "KiB": KIB, "MiB": MIB, "GiB": GIB}


class UsageError(Exception):
    """The command line is wrong (exit status 2): a URI that is not S3, a malformed range, an unknown option value."""


class CommandFailed(Exception):
    """The command could not do its job for a reason outside the command line (exit status 1)."""


# -- arguments -------------------------------------------------------------------------


def parse_object_uri(text: str) -> tuple[str, str]:
    """``(bucket, key)`` from ``s3://bucket/key`` or ``s3reader://bucket/key``; a usage error otherwise."""
    if not text.startswith(S3_SCHEMES):
        raise UsageError(f"{text!r} is not an S3 URI; write s3://bucket/key (or s3reader://bucket/key)")
    bucket, _, key = without_scheme(text).partition("/")
    if not bucket:
        raise UsageError(f"{text!r} names no bucket; write s3://bucket/key")
    if not _BUCKET_NAME.fullmatch(bucket):
        raise UsageError(
            f"{text!r}: {bucket!r} is not a valid bucket name (letters, digits, '.', '-', '_'); write s3://bucket/key"
        )
    if not key or key.endswith("/"):
        raise UsageError(f"{text!r} names a bucket or a prefix, not an object; write s3://{bucket}/key")
    return bucket, key


def parse_checkpoint_uri(text: str) -> str:
    """The checkpoint's ``s3://bucket/prefix``; a usage error for anything that is not an S3 prefix."""
    if not text.startswith(S3_SCHEMES):
        raise UsageError(f"{text!r} is not an S3 URI; write s3://bucket/prefix of the checkpoint")
    location = without_scheme(text).strip("/")
    bucket = location.partition("/")[0]
    if not bucket or not _BUCKET_NAME.fullmatch(bucket):
        raise UsageError(f"{text!r} names no valid bucket; write s3://bucket/prefix of the checkpoint")
    return f"s3://{location}"


@dataclasses.dataclass(frozen=True)
class ByteRange:
    """What ``--range`` asked for, spelled as in HTTP: ``a-b`` (both included), ``a-`` (to the end), ``-n`` (last n)."""

    first: int | None
    last: int | None
    suffix: int | None = None

    @classmethod
    def parse(cls, text: str) -> ByteRange:
        match = _RANGE.fullmatch(text.strip())
        if match is None:
            raise UsageError(
                f"--range {text!r}: write FIRST-LAST (bytes FIRST to LAST, both included, as in HTTP), "
                "FIRST- (to the end) or -N (the last N bytes)"
            )
        if match["suffix"] is not None:
            suffix = int(match["suffix"])
            if suffix == 0:
                raise UsageError("--range -0 asks for no bytes; write -N with N >= 1")
            return cls(None, None, suffix)
        first = int(match["first"])
        last = int(match["last"]) if match["last"] else None
        if last is not None and last < first:
            raise UsageError(f"--range {text}: LAST ({last}) is before FIRST ({first}); both are included")
        return cls(first, last)

    def resolve(self, size: int, uri: str) -> tuple[int, int]:
        """The half-open ``[start, end)`` inside an object of ``size`` bytes; a range past the end is clamped."""
        if self.suffix is not None:
            return max(0, size - self.suffix), size
        assert self.first is not None
        if self.first >= size:
            raise UsageError(
                f"--range starts at byte {self.first}, but {uri} has {size} bytes (0 to {size - 1})"
                if size
                else f"--range: {uri} is empty, there is no byte {self.first}"
            )
        end = size if self.last is None else min(self.last + 1, size)
        return self.first, end


def parse_size(text: str) -> float:
    """Bytes from ``1048576``, ``64KiB``, ``32 MiB``, or ``inf``."""
    if text.strip().lower() in ("inf", "infinity"):
        return math.inf
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: write bytes (1048576), 64KiB, 32MiB, 1GiB or inf")
    return int(match["number"]) * _UNITS[match["unit"]]
