"""``python -m fsspec_s3reader``: the commands live in :mod:`fsspec_s3reader.cli`."""

from __future__ import annotations

import sys

from .cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
