"""Fetching ahead of the reads: the seam between a reader and what foresees its next reads from the ones it served.

A reader hands every read to its ``Anticipation`` first; what was foreseen
comes back as segments with their bytes. The rest the reader's strategy
fetches as usual. The anticipation is told of the whole read before its
bytes arrive (``expect``: which bytes are wanted is enough to foresee more,
and what it foresees then travels beside them), and shown the bytes the
strategy fetched after (``observe``: what only the bytes tell,
such as a parquet footer). See ``parquet_prefetch.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..protocol import Chunk


@dataclass(frozen=True)
class Segment:
    """A piece of a read: ``take()`` gives its bytes when they were fetched ahead; None: the strategy fetches them."""

    start: int
    end: int
    take: Callable[[], list[Chunk]] | None = None


class Anticipation(Protocol):
    """Bytes fetched ahead of the reads that will ask for them, learned from the reads served so far."""

    def serve(self, start: int, end: int) -> list[Segment] | None:
        """``[start, end)`` in segments, those fetched ahead with their bytes; None when nothing was foreseen."""

    def expect(self, start: int, end: int) -> None:
        """A read about to be served, all of it: what it asks for, to foresee from before its bytes arrive."""

    def observe(self, start: int, end: int, pieces: list[Chunk]) -> None:
        """A read served the usual way, with its bytes, to learn from."""

    def speculation_end(self, start: int, limit: int) -> int:
        """Where a reader's own fetch past what the reads asked for, from ``start``, should stop (``limit`` at most).

        Bytes the anticipation fetches ahead, or knows no read will want,
        are not worth a reader's read-ahead: fetching them too costs them twice.
        """

    def release(self) -> None:
        """Stop fetching ahead and drop what is held."""

    @property
    def peak_held(self) -> int:
        """The most bytes fetched ahead (in flight or received, not yet read) held at once so far."""


def speculation_end(anticipation: Anticipation | None) -> Callable[[int, int], int] | None:
    """What a reader's buffer asks before it fills past a read: the anticipation's ``speculation_end``, if any."""
    return anticipation.speculation_end if anticipation is not None else None
