"""The network floor: every byte a workload needs, fetched by a plain parallel client, and nothing parsed.

A workload's time has two floors no client beats on this machine: the same
work from local memory (each workload builds that one), and the network's own
limit, built here. The network floor knows every needed byte range before it
starts (what a reader learns only from a footer or a ``.metadata`` file), merges
touching ranges, cuts them into GETs of at most ``FLOOR_PIECE`` (smaller where
that keeps all connections busy) and sends them ``FLOOR_CONNECTIONS`` at a time
with boto3: one round of requests, no deserialization. Its result is checked bit for bit
outside the clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from .clients import FLOOR_CONNECTIONS, FLOOR_PIECE, RangeFetcher
from .config import Endpoint
from .trial import Trial, WrongDataError

Piece = tuple[str, int | None, int | None]
"""``(key, start, end)`` of one GET; ``start`` and ``end`` None for the whole object."""


SMALLEST_PIECE = 1024 * 1024
"""Below this a range is not cut further to keep connections busy: the request would cost more than its bytes."""


def plan_pieces(ranges: Iterable[tuple[str, int, int]]) -> list[Piece]:
    """``(key, start, end)`` ranges, touching or overlapping ones of a key merged, then cut into pieces of at most
    ``FLOOR_PIECE``, or of an eighth of the total where that is smaller (but not below ``SMALLEST_PIECE``)."""
    merged: dict[str, list[list[int]]] = {}
    for key, start, end in sorted(ranges):
        spans = merged.setdefault(key, [])
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    total = sum(end - start for spans in merged.values() for start, end in spans)
    piece = min(FLOOR_PIECE, max(SMALLEST_PIECE, -(-total // FLOOR_CONNECTIONS)))
    return [
        (key, offset, min(offset + piece, end))
        for key, spans in merged.items()
        for start, end in spans
        for offset in range(start, end, piece)
    ]


class NetworkFloorTrial(Trial):
    """Fetch ``pieces`` from ``bucket``, ``FLOOR_CONNECTIONS`` at a time; ``check`` verifies them after the clock."""

    def __init__(
        self,
        endpoint: Endpoint,
        bucket: str,
        pieces: Sequence[Piece],
        check: Callable[[Sequence[Piece], list[bytes]], None],
    ) -> None:
        super().__init__()
        self._fetcher = RangeFetcher(endpoint)
        self._bucket = bucket
        self._pieces = list(pieces)
        self._check = check

    def run(self) -> list[bytes]:
        return self._fetcher.fetch(self._pieces, self._bucket)

    def verify(self, result: list[bytes]) -> None:
        self._check(self._pieces, result)


def check_against(expected: Callable[[str, int | None, int | None], bytes], what: str) -> Callable[..., None]:
    """A ``check`` that compares each piece with ``expected(key, start, end)``."""

    def check(pieces: Sequence[Piece], fetched: list[bytes]) -> None:
        for (key, start, end), data in zip(pieces, fetched, strict=True):
            if data != expected(key, start, end):
                raise WrongDataError(f"{what}: bytes {start}-{end} of {key} differ from the stored ones")

    return check
