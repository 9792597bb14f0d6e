"""Fetching ahead of the reads: the seam between a reader and what foresees its next reads from the ones it served.

A reader hands every read to its ``Anticipation`` first; what was foreseen
comes back as segments with their bytes. The rest the reader's strategy
fetches as usual; the anticipation is told of it before (``expect``: which
bytes are wanted is enough to foresee more, and what it foresees then travels
beside them) and shown its bytes after (``observe``: what only the bytes tell,
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
        """A read about to be served the usual way: what it asks for, to foresee from before its bytes arrive."""

    def observe(self, start: int, end: int, pieces: list[Chunk]) -> None:
        """A read served the usual way, with its bytes, to learn from."""

    def release(self) -> None:
        """Stop fetching ahead and drop what is held."""

    @property
    def peak_held(self) -> int:
        """The most bytes fetched ahead (in flight or received, not yet read) held at once so far."""
