"""What S3 answered about a path moments ago, kept a short while for the requests that usually follow.

pandas and pyarrow ask about one file several times in a row: ``info``, then
``isfile`` before each open, and a dataset scan opens its first file twice
(once for the schema, once for the rows), reading its footer each time. Each
repeat is a round trip that would only hear again what the last one said.
A filesystem keeps the answers here for a few seconds (the same trade as
s3fs's listings cache, made short) and forgets a path's answers when it
writes or deletes there.
"""

from __future__ import annotations

import time
from typing import Generic, TypeVar

from .forking import ForkSafeLock

_T = TypeVar("_T")


class RecentAnswers(Generic[_T]):
    """Answers by path, each good for ``within`` seconds after it arrived; the oldest go first past ``at_most``.

    Safe to use from several threads (the event loop's, and the readers').
    """

    def __init__(self, at_most: int) -> None:
        self._at_most = at_most
        self._answers: dict[str, tuple[float, _T]] = {}
        self._lock = ForkSafeLock()

    def __len__(self) -> int:
        return len(self._answers)

    def put(self, path: str, answer: _T) -> None:
        with self._lock:
            self._answers.pop(path, None)  # to the end: the newest
            self._answers[path] = (time.monotonic(), answer)
            while len(self._answers) > self._at_most:
                del self._answers[next(iter(self._answers))]

    def get(self, path: str, within: float) -> _T | None:
        """What arrived for ``path`` less than ``within`` seconds ago, if anything did."""
        with self._lock:
            kept = self._answers.get(path)
            if kept is None:
                return None
            if time.monotonic() - kept[0] >= within:
                del self._answers[path]
                return None
            return kept[1]

    def forget(self, path: str | None = None) -> None:
        """Forget ``path``, what lies below it and the folders above it; everything, without a path.

        A write or a delete may create or empty the folders above a path, so
        what was said of them goes too.
        """
        with self._lock:
            if path is None:
                self._answers.clear()
                return
            for known in list(self._answers):
                if known == path or known.startswith(f"{path}/") or path.startswith(f"{known}/"):
                    del self._answers[known]
