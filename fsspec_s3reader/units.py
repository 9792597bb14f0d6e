"""Byte counts as people read them, for log lines and the command line.

One formatter, so the load summary, ``plan`` and ``stat`` print sizes alike.
"""

from __future__ import annotations

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


def format_bytes(count: float) -> str:
    """``17 B``, ``4.0 KiB``, ``96.1 MiB``, ``1.50 GiB``: binary units, the precision a reader can compare."""
    if count < KIB:
        return f"{count:.0f} B"
    if count < MIB:
        return f"{count / KIB:.1f} KiB"
    if count < GIB:
        return f"{count / MIB:.1f} MiB"
    return f"{count / GIB:.2f} GiB"
