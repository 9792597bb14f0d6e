"""What every reader strategy shares: the read-only file API, checked and uniform.

A strategy only says which bytes to hand out (``_pieces``) and how big the
object is (``_object_size``); this base turns that into ``read``, ``readinto``,
``seek``, ``readline`` and friends with the semantics of ``io.BytesIO``.
"""

from __future__ import annotations

import io
import operator
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

from ..in_place import one_view
from ..protocol import Chunk
from .anticipation import Anticipation, Segment
from .file_api import FsspecFileAPI
from .open_files import HELD_ELSEWHERE, HeldElsewhere
from .options import OptionCheck, checked_options, option_defaults

_READLINE_CHUNK = 8 * 1024
_READLINE_FIRST_PROBE = 256  # most lines are short: look a little ahead first, then further


def _as_byte_view(buffer: Any) -> memoryview:
    """A writable, flat view of bytes over any buffer a caller hands to ``readinto``."""
    view = memoryview(buffer)
    if view.readonly:
        raise TypeError(f"readinto() argument must be a writable bytes-like object, not {type(buffer).__name__}")
    if not view.c_contiguous:
        raise TypeError("readinto() argument must be a contiguous buffer")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def close_stream(stream: Iterator[Chunk] | None) -> None:
    """Stop a stream a reader no longer needs, releasing its connection and what it fetched ahead."""
    close = getattr(stream, "close", None)
    if close is not None:
        close()


def _checked_size(size: Any) -> int:
    """``read``'s size argument as ``io.BytesIO`` reads it: None or negative mean 'all'; any integer-like will do."""
    if size is None:
        return -1
    try:
        return operator.index(size)
    except TypeError:
        raise TypeError(f"argument should be integer or None, not '{type(size).__name__}'") from None


class S3Reader(FsspecFileAPI):
    """A read-only, seekable file over one S3 object.

    Subclasses decide when and how bytes are fetched; every one of them
    returns, for any sequence of calls, what ``io.BytesIO(object_bytes)``
    would. One deliberate difference: a relative seek (``whence`` 1 or 2)
    that lands before the start raises ``ValueError`` where ``io.BytesIO``
    quietly moves to 0, because such a seek is always an offset bug.
    """

    strategy: ClassVar[str] = "unknown"
    """The name this strategy is registered under (``"sequential"``, ...)."""

    _held_elsewhere: ClassVar[HeldElsewhere] = HELD_ELSEWHERE
    """Where a reader other threads use is noted (a class attribute: a close while the interpreter clears
    the modules' globals, late in its shutdown, still finds it)."""

    option_checks: ClassVar[Mapping[str, OptionCheck]] = {}
    """Per option, its check ``check(name, value)``: returns the value or raises an error naming the option.

    A strategy's options are the keyword-only parameters of its ``__init__``,
    with their defaults; this is the one place that says what each accepts.
    """

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """The strategy's options and their defaults: the keyword-only parameters of ``__init__``."""
        return option_defaults(cls)

    @classmethod
    def check_options(cls, **given: Any) -> dict[str, Any]:
        """Every option of the strategy: ``given`` over the defaults, each checked (``None`` means the default).

        Raises ``ValueError`` for a name the strategy does not take, and the
        option's own error for a value it does not accept.
        """
        return checked_options(cls, cls.strategy, cls.option_checks, given)

    def __init__(self, bucket: str, key: str) -> None:
        super().__init__()
        self._bucket = bucket
        self._key = key
        self._position = 0
        self._delivery_observer: Callable[[int], None] | None = None
        self._held_ahead_observer: Callable[[int], None] | None = None
        self._anticipation: Anticipation | None = None
        """What fetches ahead the reads this file's format foretells (a parquet file's column chunks), if anything."""
        self._used_elsewhere = False
        self._note_the_thread()

    # -- what a strategy provides -------------------------------------------------------

    @abstractmethod
    def _object_size(self) -> int:
        """The object's size in bytes."""

    @abstractmethod
    def _pieces(self, start: int, length: int) -> Iterable[Chunk]:
        """Exactly the bytes ``[start, start + length)``, in order, in as few copies as it can.

        ``length`` is positive and the range lies within the object.
        """

    def _available(self, start: int, wanted: int) -> int:
        """How many of ``wanted`` bytes from ``start`` exist; a strategy may answer without a size lookup."""
        return max(0, min(wanted, self._object_size() - start))

    def _release(self) -> None:
        """Drop buffers and streams; called once, on close."""

    def _readline_step(self) -> int:
        """How much ``readline`` reads next while looking for a newline; a strategy may align it to its buffer."""
        return _READLINE_CHUNK

    # -- identity ---------------------------------------------------------------------

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def key(self) -> str:
        return self._key

    @property
    def size(self) -> int:
        """The object's size in bytes (fsspec file objects expose it)."""
        return self._object_size()

    def bind_to_filesystem(
        self,
        record_delivered: Callable[[int], None] | None,
        reopen: Callable[[], S3Reader] | None,
        record_held_ahead: Callable[[int], None] | None = None,
    ) -> None:
        """Called by the filesystem that opened this reader.

        ``record_delivered(n)`` is told of the ``n`` bytes each read hands to
        the caller (``fs.stats.bytes_delivered``). ``reopen()`` opens the same
        object again; pickling uses it, as s3fs files pickle by reopening.
        ``record_held_ahead(n)`` is told, as the reader closes, the most bytes
        it held fetched ahead at once (``fs.stats.peak_bytes_ahead``).
        """
        self._delivery_observer = record_delivered
        self._reopen = reopen
        self._held_ahead_observer = record_held_ahead

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"position {self._position}"
        return f"<{type(self).__name__} s3://{self._bucket}/{self._key} {state}>"

    # -- the file API ---------------------------------------------------------------

    def readable(self) -> bool:
        self._check_open()
        return True

    def seekable(self) -> bool:
        self._check_open()
        return True

    def writable(self) -> bool:
        self._check_open()
        return False

    def tell(self) -> int:
        self._check_open()
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` relative to the start (0), the position (1) or the end (2).

        Seeking past the end is allowed (reads there return ``b""``); a target
        before the start raises ``ValueError``. No bytes are fetched here.
        """
        self._check_open()
        try:
            offset = operator.index(offset)
        except TypeError:
            raise TypeError(f"integer argument expected, got '{type(offset).__name__}'") from None
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._position + offset
        elif whence == io.SEEK_END:
            target = self._object_size() + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if target < 0:
            raise ValueError(
                f"negative seek value {target} in s3://{self._bucket}/{self._key} (offset {offset}, whence {whence})"
            )
        self._position = target
        return target

    def read(self, size: int | None = -1) -> bytes:
        self._check_open()
        data = self._read_at_position(_checked_size(size))
        self._delivered(len(data))
        return data

    def read_buffer(self, nbytes: int | None = -1) -> Chunk:
        """Like ``read``, but the received buffer itself when the bytes came as one piece, with no copy.

        Pieces received side by side in their object's arena (a parquet
        file's: ``in_place.py``) are one view of it, also with no copy.
        pyarrow reads a Python file through ``read_buffer`` when it has one and
        keeps what it returns as it is; bytes returned by ``read`` it copies.
        """
        self._check_open()
        start = self._position
        pieces = self._take(_checked_size(nbytes))
        data = pieces[0] if len(pieces) == 1 else one_view(pieces, start) or b"".join(pieces)
        self._delivered(len(data))
        return data

    def read1(self, size: int | None = -1) -> bytes:
        """Same as ``read``: every read here is already at most one fetch's worth of work."""
        return self.read(size)

    def readinto(self, buffer: Any) -> int:
        self._check_open()
        view = _as_byte_view(buffer)
        length = self._available(self._position, len(view)) if len(view) else 0
        if length == 0:
            return 0
        filled = 0
        for piece in self._serve(self._position, length):
            piece_length = len(piece)
            view[filled : filled + piece_length] = piece
            filled += piece_length
        self._check_length(filled, length)
        self._position += length
        self._delivered(length)
        return length

    def readinto1(self, buffer: Any) -> int:
        return self.readinto(buffer)

    def readline(self, size: int | None = -1) -> bytes:
        """Read through the next ``\\n`` (or ``size`` bytes), fetching in chunks, not byte by byte."""
        self._check_open()
        limit = _checked_size(size)
        parts: list[bytes] = []
        taken = 0
        probe = _READLINE_FIRST_PROBE
        while limit < 0 or taken < limit:
            step = min(probe, self._readline_step())
            if limit >= 0:
                step = min(step, limit - taken)
            probe = min(probe * 2, _READLINE_CHUNK)
            chunk = self._read_at_position(step)
            if not chunk:
                break
            newline = chunk.find(b"\n")
            if newline >= 0:
                overshoot = len(chunk) - newline - 1
                self._position -= overshoot
                parts.append(chunk[: newline + 1])
                break
            parts.append(chunk)
            taken += len(chunk)
        line = b"".join(parts)
        self._delivered(len(line))
        return line

    def write(self, data: Any) -> int:
        raise io.UnsupportedOperation(f"s3://{self._bucket}/{self._key} is open for reading only; open it with 'wb'")

    def truncate(self, size: int | None = None) -> int:
        raise io.UnsupportedOperation(f"s3://{self._bucket}/{self._key} is open for reading only")

    def detach(self) -> io.RawIOBase:
        raise io.UnsupportedOperation("an S3 reader has no raw stream to detach")

    def close(self) -> None:
        if not self.closed:
            try:
                if self._anticipation is not None:
                    self._anticipation.release()
                    if self._held_ahead_observer is not None:
                        self._held_ahead_observer(self._anticipation.peak_held)
                self._release()
            finally:
                super().close()
                self._held_elsewhere.closed(self)

    # -- internals ------------------------------------------------------------------

    def _read_at_position(self, wanted: int) -> bytes:
        """Up to ``wanted`` bytes (all the rest when negative) from the position, which moves past them."""
        pieces = self._take(wanted)
        if len(pieces) == 1 and type(pieces[0]) is bytes:
            return pieces[0]  # a whole chunk as received: hand it out without a copy
        return b"".join(pieces)

    def _take(self, wanted: int) -> list[Chunk]:
        """The pieces of up to ``wanted`` bytes (all the rest when negative) from the position; it moves past them."""
        if wanted < 0:
            wanted = max(0, self._object_size() - self._position)
        length = self._available(self._position, wanted) if wanted else 0
        if length == 0:
            return []
        pieces = list(self._serve(self._position, length))
        self._check_length(sum(len(piece) for piece in pieces), length)
        self._position += length
        return pieces

    def _serve(self, start: int, length: int) -> Iterable[Chunk]:
        """A read's bytes: through the ``cache`` a tool installed (fsspec's blockcache), what was fetched ahead
        for it (``_anticipation``), or the strategy's; the strategy's are shown to the anticipation to learn from."""
        self._note_the_thread()
        if self._cache is not None:
            return (self._cache._fetch(start, start + length),)
        if self._anticipation is None:
            return self._pieces(start, length)
        segments = self._anticipation.serve(start, start + length) or [Segment(start, start + length)]
        # the whole read at once: what it learns must not foresee the bytes of its own later segments
        self._anticipation.expect(start, start + length)
        served: dict[int, list[Chunk]] = {}
        for segment in segments:  # what was not foreseen first: it travels while the rest arrives
            if segment.take is None:
                served[segment.start] = list(self._pieces(segment.start, segment.end - segment.start))
                self._anticipation.observe(segment.start, segment.end, served[segment.start])
        for segment in segments:
            if segment.take is not None:
                served[segment.start] = segment.take()
        return [piece for segment in segments for piece in served[segment.start]]

    def _fetch_range(self, start: int, end: int) -> bytes:
        """The object's bytes ``[start, end)`` from the strategy, never through ``cache``: what a cache fetches with."""
        self._check_open()
        length = self._available(start, end - start) if end > start else 0
        data = b"".join(self._pieces(start, length)) if length else b""
        self._check_length(len(data), length)
        return data

    def _delivered(self, count: int) -> None:
        if count and self._delivery_observer is not None:
            self._delivery_observer(count)

    def _note_the_thread(self) -> None:
        """Opened or read by another thread than the main one (pyarrow's): the interpreter's exit waits for its
        close (``open_files.py``)."""
        if not self._used_elsewhere and threading.get_ident() != threading.main_thread().ident:
            self._used_elsewhere = True
            self._held_elsewhere.add(self)

    # -- checks ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"I/O operation on closed file s3://{self._bucket}/{self._key}")

    def _check_length(self, delivered: int, expected: int) -> None:
        if delivered != expected:  # a strategy bug, never the caller's: fail loudly rather than misalign
            raise AssertionError(
                f"{type(self).__name__} produced {delivered} bytes where {expected} were due "
                f"at offset {self._position} of s3://{self._bucket}/{self._key}"
            )
