"""The first pages of folders' listings, on their way or arrived moments ago, for whoever asks next.

A folder's first page is asked for by ``info``'s probe of the folder, by the
``find`` that usually follows, and, sent beside the HEAD of a path that reads
as a folder's name, before anyone knows the path is no object
(``folder_probe.py``). Whoever asks while the page is on its way waits for
that request instead of sending another; whoever asks after it arrived takes
it, within the same short window as the filesystem's other recent answers.

A page asked for beside a HEAD is a guess that the path is a folder. A
filesystem that keeps guessing wrong (a bucket of objects without
extensions, their ``info`` asked one after another) stops after
``WRONG_GUESSES_AT_MOST`` in a row, and guesses again once a HEAD of such a
name is answered 404 (a folder, or nothing): a wrong guess costs a LIST, and
a run of them costs two.

A page that failed serves nobody: the next to ask sends the request again,
and hears the failure (or the answer) for itself. A page requested in a
parent process is never awaited in a forked child, whose event loop is
another.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .recent_answers import RecentAnswers

logger = logging.getLogger(__name__)

Page = dict[str, Any]
"""A ListObjectsV2 answer, as botocore parses it."""

WRONG_GUESSES_AT_MOST = 2
"""Pages asked for beside HEADs that then answered an object, in a row, after which no more are asked for so."""


class FolderPages:
    """First pages by folder (``bucket/folder``), each kept ``within`` seconds after its request went out.

    Used on the event loop only (``forget`` excepted, which any thread may call).
    """

    def __init__(self, at_most: int) -> None:
        self._pages: RecentAnswers[asyncio.Future[Page]] = RecentAnswers(at_most)
        self._wrong_in_a_row = 0

    def guesses(self) -> bool:
        """Whether a HEAD of a folder's name has the folder's page asked for beside it (not after too many misses)."""
        return self._wrong_in_a_row < WRONG_GUESSES_AT_MOST

    def head_answered(self, *, object_found: bool) -> None:
        """A HEAD of a folder's name was answered: an object (the guess was wrong), or 404 (it was right)."""
        self._wrong_in_a_row = self._wrong_in_a_row + 1 if object_found else 0

    def send(self, folder: str, request: Callable[[], Awaitable[Page]]) -> asyncio.Future[Page]:
        """Start ``request`` for ``folder``'s first page on the running loop, kept for those who ask next."""
        future = asyncio.ensure_future(request())
        future.add_done_callback(functools.partial(_note_failure, folder))
        self._pages.put(folder, future)
        return future

    def asked(self, folder: str, within: float) -> bool:
        """Whether ``folder``'s first page was asked for less than ``within`` seconds ago (arrived or not)."""
        return self._pages.get(folder, within) is not None

    async def page(self, folder: str, within: float) -> Page | None:
        """``folder``'s first page asked for less than ``within`` seconds ago, once it arrives; None if none or failed.

        Waiting does not cancel the request when the waiter is cancelled:
        others may be waiting for it too.
        """
        asked = self._pages.get(folder, within)
        if asked is None:
            return None
        if not asked.done():
            if asked.get_loop() is not asyncio.get_running_loop():
                return None  # sent by a parent process before a fork: its loop does not run here
            await asyncio.wait([asked])
        if asked.cancelled() or asked.exception() is not None:
            return None
        return asked.result()

    def forget(self, path: str | None = None) -> None:
        """Forget the pages of ``path``'s folder, of those below it and above it (all, without a path)."""
        self._pages.forget(path)


def _note_failure(folder: str, future: asyncio.Future[Page]) -> None:
    """Hear a failed page out, so that one nobody waited for is not reported as an exception never retrieved."""
    if not future.cancelled() and future.exception() is not None:
        logger.debug("the first page of %s's listing did not arrive: %s", folder, future.exception())
