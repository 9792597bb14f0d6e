"""What a storage reader hands torch's per-rank metadata fallback, so a failed metadata read reaches the caller.

torch's load (``state_dict_loader._load_state_dict``) catches any error of
``read_metadata()``, then calls ``read_metadata(rank=r)`` for a per-rank file
``__<r>.metadata``; when that fails too, it raises
``AssertionError("metadata is None; global metadata read failed: ...")``,
which keeps the messages and drops the errors, their types and their causes.
Callers who catch ``ReadRetriesExhaustedError`` or ``PermissionError`` in
``CheckpointException.failures`` would never see theirs, and a failing
endpoint would be asked twice over. So the fallback gets a stand-in instead
of an error: torch takes it for metadata and calls ``set_up_storage_reader``,
which raises the original error, inside the same planning step, where torch
reports it unchanged.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any, NoReturn, cast

from torch.distributed.checkpoint.metadata import Metadata

_METADATA_FILE = ".metadata"


class UnreadMetadata:
    """Stands in for checkpoint metadata that could not be read, and raises why at its first use.

    ``bool()`` is true (torch tests the metadata that way); any attribute a
    planner looks up raises the error, as ``raise_if_unread`` does.
    """

    def __init__(self, error: Exception) -> None:
        self._error = error

    def raise_why(self) -> NoReturn:
        raise self._error

    def __getattr__(self, name: str) -> Any:
        self.raise_why()


def raise_if_unread(metadata: Any) -> None:
    """Raise the read error that ``metadata`` stands in for; nothing for real metadata."""
    if isinstance(metadata, UnreadMetadata):
        metadata.raise_why()


def metadata_after_failure(failure: Exception, read_rank_file: Callable[[], Metadata], checkpoint: str) -> Metadata:
    """What torch's per-rank fallback gets after ``.metadata`` failed with ``failure``.

    The per-rank file is read only when ``.metadata`` is absent (a checkpoint
    saved without collectives has only per-rank files). Any other failure
    (retries spent, access denied, a corrupt file) says ``.metadata`` exists
    and could not be read: nothing more is requested, and that failure is
    the one raised.
    """
    if not isinstance(failure, FileNotFoundError):
        return _stand_in(failure)
    try:
        return read_rank_file()
    except FileNotFoundError as exc:
        missing = FileNotFoundError(
            errno.ENOENT,
            f"no DCP checkpoint metadata at {checkpoint} (neither {_METADATA_FILE} "
            f"nor {os.path.basename(str(exc.filename or 'the per-rank file'))})",
            str(failure.filename or checkpoint),
        )
        missing.__cause__ = failure
        return _stand_in(missing)
    except Exception as exc:
        return _stand_in(exc)


def _stand_in(error: Exception) -> Metadata:
    return cast(Metadata, UnreadMetadata(error))
