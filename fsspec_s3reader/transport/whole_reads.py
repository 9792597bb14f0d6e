"""Reads that want a span of an object at once, on the event loop: ``cat_file`` and ``get_file``.

fsspec's many-object calls (``cat``, ``cat_ranges``, zarr's and
``fsspec.parquet``'s async reads) come down to one ``_cat_file`` per object
or range, run concurrently. Here each is served by the transport's requests,
so it is counted, retried, resumed and pinned like a reader's: the first part
is one GET that also tells the object's size (no HEAD), and a longer span
continues as parallel parts::

    read_range(start, end)
      first GET [start, start + part_size)  -> size, ETag (pinned)
      then      | part | part | part | ... |  up to parts_in_flight at once, If-Match
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import IncompleteObjectError
from ..protocol import Chunk
from .object_requests import ObjectRequests
from .object_transport import split_into_parts

_T = TypeVar("_T")


async def run_bounded(coroutines: list[Coroutine[Any, Any, _T]], at_once: int) -> list[_T]:
    """The coroutines' results in order, at most ``at_once`` running; the first failure cancels the rest."""
    semaphore = asyncio.Semaphore(at_once)

    async def bounded(coroutine: Coroutine[Any, Any, _T]) -> _T:
        async with semaphore:
            return await coroutine

    tasks = [asyncio.ensure_future(bounded(coroutine)) for coroutine in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()


async def _first_part(requests: ObjectRequests, start: int, end: int) -> list[Chunk] | None:
    """The first part, which learns the size; None when ``start`` lies at or past the object's end."""
    try:
        return await requests.get_part(start, end, up_to_object_end=True)
    except IncompleteObjectError:
        return None  # 416: nothing at start (an empty object, or past its end)


async def read_range(
    requests: ObjectRequests, start: int | None, end: int | None, *, part_size: int, parts_in_flight: int
) -> list[Chunk]:
    """The object's bytes ``[start, end)`` as fsspec's ``cat_file`` reads them, as received.

    ``None`` is the start or the end of the object; a negative offset counts
    from the end, as in a slice; a span past the end is cut at the end.
    """
    start = 0 if start is None else start
    if start < 0 and end is None:  # the last -start bytes: one suffix GET
        try:
            return (await requests.get_tail(-start))[1]
        except IncompleteObjectError:
            return []
    if start < 0 or (end is not None and end < 0):
        size = await requests.size()
        start = max(0, size + start) if start < 0 else start
        end = size + end if end is not None and end < 0 else end
    if end is not None and end <= start:
        return []
    first_end = start + part_size if end is None else min(end, start + part_size)
    chunks = await _first_part(requests, start, first_end)
    if chunks is None:
        return []
    assert requests.info is not None  # the first part's Content-Range told it
    stop = requests.info.size if end is None else min(end, requests.info.size)
    rest = split_into_parts(first_end, stop, part_size)
    parts = await run_bounded([requests.get_part(s, e) for s, e in rest], parts_in_flight)
    return chunks + [chunk for part in parts for chunk in part]


async def download(
    requests: ObjectRequests,
    path: str | os.PathLike[str],
    *,
    part_size: int,
    parts_in_flight: int,
    set_size: Callable[[int], Any] = lambda size: None,
    progress: Callable[[int], Any] = lambda count: None,
) -> int:
    """Write the whole object to the local ``path`` as parallel parts, each at its offset; return its size.

    Memory stays at the parts in flight; the file is complete only when this returns.
    """
    with open(path, "wb") as out:
        chunks = await _first_part(requests, 0, part_size)
        size = requests.info.size if requests.info is not None else 0
        set_size(size)

        def write(at: int, received: list[Chunk]) -> None:
            for chunk in received:
                os.pwrite(out.fileno(), chunk, at)
                at += len(chunk)
            progress(sum(len(chunk) for chunk in received))

        write(0, chunks or [])

        async def fetch(start: int, end: int) -> None:
            write(start, await requests.get_part(start, end))

        await run_bounded([fetch(s, e) for s, e in split_into_parts(part_size, size, part_size)], parts_in_flight)
        out.truncate(size)
    return size
