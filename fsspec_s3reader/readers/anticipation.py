"""Fetching ahead of the reads: the seam between a reader and what foresees its next reads from the ones it served.

A reader hands every read to its ``Anticipation`` first; what was foreseen
comes back as segments with their bytes, the rest the reader's strategy
fetches as usual and shows to the anticipation, which learns from it (the
parquet footer, then the columns read: ``parquet_prefetch.py``).
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

    def observe(self, start: int, end: int, pieces: list[Chunk]) -> None:
        """A read served the usual way, to learn from."""

    def release(self) -> None:
        """Stop fetching ahead and drop what is held."""
