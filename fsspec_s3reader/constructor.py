"""Choosing a reader strategy: constructor objects, and a registry that names them.

A *reader constructor* is a callable ``(bucket, key, get_object_info,
get_stream) -> S3Reader`` with a ``name``. ``S3ReaderConstructor`` makes the
built-in ones; the registry maps names to factories so that
``storage_options={"reader": "range_based", "buffer_size": 1 << 20}`` works,
and so that a user can add a strategy of their own with ``register_reader``.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from .protocol import GetObjectInfo, GetStream
from .readers.adaptive import (
    DEFAULT_FIRST_READAHEAD,
    DEFAULT_MAX_READAHEAD,
    DEFAULT_RANDOM_BUFFER_SIZE,
    AdaptiveS3Reader,
    validate_adaptive_options,
)
from .readers.base import S3Reader
from .readers.dcp_optimized import (
    DEFAULT_CONNECTION_THROUGHPUT,
    DEFAULT_FIRST_BYTE_LATENCY,
    DEFAULT_PREFETCH_BYTES,
    DCPOptimizedS3Reader,
    ItemRange,
    break_even_gap,
    validate_max_gap_size,
    validate_prefetch_bytes,
)
from .readers.ranged import DEFAULT_BUFFER_SIZE, RangedS3Reader, validate_buffer_size
from .readers.sequential import SequentialS3Reader
from .uris import object_uri

if TYPE_CHECKING:
    from torch.distributed.checkpoint.planner import ReadItem

logger = logging.getLogger(__name__)


@runtime_checkable
class ReaderConstructor(Protocol):
    """Builds the reader for one object. ``name`` says which strategy it is."""

    @property
    def name(self) -> str: ...

    def __call__(self, bucket: str, key: str, get_object_info: GetObjectInfo, get_stream: GetStream) -> S3Reader: ...


@dataclass(frozen=True)
class SequentialConstructor:
    """Builds :class:`SequentialS3Reader`: whole object streamed once, any access pattern."""

    name: ClassVar[str] = SequentialS3Reader.strategy

    def __call__(self, bucket: str, key: str, get_object_info: GetObjectInfo, get_stream: GetStream) -> S3Reader:
        return SequentialS3Reader(bucket, key, get_object_info, get_stream)


@dataclass(frozen=True)
class RangeBasedConstructor:
    """Builds :class:`RangedS3Reader` with the given ``buffer_size`` (bytes; 0 disables buffering)."""

    buffer_size: int = DEFAULT_BUFFER_SIZE
    name: ClassVar[str] = RangedS3Reader.strategy

    def __post_init__(self) -> None:
        validate_buffer_size(self.buffer_size)

    def __call__(self, bucket: str, key: str, get_object_info: GetObjectInfo, get_stream: GetStream) -> S3Reader:
        return RangedS3Reader(bucket, key, get_object_info, get_stream, buffer_size=self.buffer_size)


@dataclass(frozen=True)
class AdaptiveConstructor:
    """Builds :class:`AdaptiveS3Reader`: streams forward reads, ranged GETs after the first jump."""

    buffer_size: int = DEFAULT_RANDOM_BUFFER_SIZE
    first_readahead: int = DEFAULT_FIRST_READAHEAD
    max_readahead: int = DEFAULT_MAX_READAHEAD
    name: ClassVar[str] = AdaptiveS3Reader.strategy

    def __post_init__(self) -> None:
        validate_adaptive_options(self.buffer_size, self.first_readahead, self.max_readahead)

    def _options(self) -> dict[str, int]:
        return {
            "buffer_size": self.buffer_size,
            "first_readahead": self.first_readahead,
            "max_readahead": self.max_readahead,
        }

    def __call__(self, bucket: str, key: str, get_object_info: GetObjectInfo, get_stream: GetStream) -> S3Reader:
        return AdaptiveS3Reader(bucket, key, get_object_info, get_stream, **self._options())


class DCPOptimizedConstructor:
    """Builds :class:`DCPOptimizedS3Reader` for the files of one DCP load.

    Holds the load plan's ranges, keyed by object URI; ``S3StorageReader``
    injects them with :meth:`set_item_ranges_by_file` before torch opens a
    file. ``.metadata`` files are read with the sequential reader; a file the
    plan does not mention is read with the range-based reader (with a warning).

    The ranges are state of one load: give each storage reader its own
    constructor (``S3StorageReader`` copies the one you pass with :meth:`fresh`).

    Two ranges share one GET when the gap between them costs less to read
    than a new request costs to start: ``first_byte_latency`` (seconds) times
    ``connection_throughput`` (bytes per second), 2 MB by default. Interleaved
    data a partial load skips (optimizer state between model weights) is then
    skipped, and small gaps (a few KiB between two tensors) are read through.
    ``max_gap_size`` (bytes, ``float("inf")`` for one GET per file) overrides
    the computed gap. ``prefetch_bytes`` bounds how much of the groups after
    the current one each file fetches ahead (32 MiB by default).
    """

    name: ClassVar[str] = DCPOptimizedS3Reader.strategy

    def __init__(
        self,
        max_gap_size: float | None = None,
        *,
        first_byte_latency: float = DEFAULT_FIRST_BYTE_LATENCY,
        connection_throughput: float = DEFAULT_CONNECTION_THROUGHPUT,
        prefetch_bytes: int = DEFAULT_PREFETCH_BYTES,
    ) -> None:
        computed = break_even_gap(first_byte_latency, connection_throughput)
        self._max_gap_size = computed if max_gap_size is None else validate_max_gap_size(max_gap_size)
        self._prefetch_bytes = validate_prefetch_bytes(prefetch_bytes)
        self._settings: dict[str, Any] = {
            "max_gap_size": max_gap_size,
            "first_byte_latency": first_byte_latency,
            "connection_throughput": connection_throughput,
            "prefetch_bytes": prefetch_bytes,
        }
        self._ranges_by_file: dict[str, list[ItemRange]] = {}

    @property
    def max_gap_size(self) -> float:
        """The gap, in bytes, up to which two ranges share a GET (given, or computed from latency and throughput)."""
        return self._max_gap_size

    @property
    def item_ranges_by_file(self) -> dict[str, list[ItemRange]]:
        """The injected ranges: ``{"s3://bucket/key": [ItemRange, ...]}``, each list sorted."""
        return {uri: list(ranges) for uri, ranges in self._ranges_by_file.items()}

    def fresh(self) -> DCPOptimizedConstructor:
        """A constructor with the same settings and no ranges, for another load."""
        return DCPOptimizedConstructor(**self._settings)

    def clear(self) -> None:
        self._ranges_by_file = {}

    def set_item_ranges_by_file(
        self,
        plan_items: Iterable[ReadItem],
        storage_data: Mapping[Any, Any],
        base_path: str | os.PathLike[str],
    ) -> None:
        """Record, per file, the byte ranges that ``plan_items`` will read.

        ``storage_data`` is the checkpoint metadata's map from storage index to
        ``(relative_path, offset, length)``; ``base_path`` is the checkpoint's
        URI. An empty plan means this rank reads nothing. Replaces any ranges
        recorded before.
        """
        items = list(plan_items)
        if not items:
            self._ranges_by_file = {}
            return
        if not storage_data:
            raise ValueError(
                f"the load plan has {len(items)} items but storage_data is empty; "
                "pass the checkpoint metadata's storage_data (set_up_storage_reader receives it)"
            )
        base = object_uri(base_path)
        ranges_by_file: dict[str, list[ItemRange]] = {}
        for item in items:
            try:
                stored = storage_data[item.storage_index]
            except KeyError:
                raise ValueError(
                    f"read item {item.storage_index} is not in storage_data; "
                    "the plan and the metadata come from different checkpoints"
                ) from None
            uri = f"{base}/{stored.relative_path}"
            ranges_by_file.setdefault(uri, []).append(ItemRange(stored.offset, stored.offset + stored.length))
        for ranges in ranges_by_file.values():
            ranges.sort(key=lambda r: (r.start, r.end))
        self._ranges_by_file = ranges_by_file

    def __call__(self, bucket: str, key: str, get_object_info: GetObjectInfo, get_stream: GetStream) -> S3Reader:
        if key.endswith(".metadata"):
            return SequentialS3Reader(bucket, key, get_object_info, get_stream)
        ranges = self._ranges_by_file.get(f"s3://{bucket}/{key}")
        if ranges is None:
            logger.warning(
                "no load-plan ranges for s3://%s/%s; reading it with the range-based reader. "
                "Load through S3StorageReader to fetch only the planned bytes.",
                bucket,
                key,
            )
            return RangedS3Reader(bucket, key, get_object_info, get_stream)
        return DCPOptimizedS3Reader(
            bucket, key, ranges, get_object_info, get_stream, self._max_gap_size, self._prefetch_bytes
        )

    def __repr__(self) -> str:
        # Distinct per object: fsspec caches filesystems by the repr of their
        # options, and two loads must never share one constructor's ranges.
        files = len(self._ranges_by_file)
        return f"<DCPOptimizedConstructor max_gap_size={self._max_gap_size} files={files} at {id(self):#x}>"


class S3ReaderConstructor:
    """Factory methods for the built-in strategies, and how to tell them apart.

    - ``adaptive()`` (the default): streams while reads go forward, switches
      to ranged reads at the first backward or far jump. Right for most files
      when you do not know how they will be read (pandas, pyarrow, ``open``).
    - ``sequential()``: full reads, repeated access, small files. Memory: the object.
    - ``range_based(buffer_size=None)``: random access into big objects; fetches
      only what is read, in ``buffer_size`` blocks for small reads.
    - ``dcp_optimized(max_gap_size=None)``: PyTorch DCP loads through
      :class:`~fsspec_s3reader.S3StorageReader`; fetches only the load plan's
      ranges, coalescing those whose gap is cheaper to read than to skip
      (2 MB by default; ``max_gap_size`` in bytes overrides it).
    """

    @staticmethod
    def sequential() -> ReaderConstructor:
        return SequentialConstructor()

    @staticmethod
    def range_based(buffer_size: int | None = None) -> ReaderConstructor:
        return RangeBasedConstructor(DEFAULT_BUFFER_SIZE if buffer_size is None else buffer_size)

    @staticmethod
    def dcp_optimized(
        max_gap_size: float | None = None,
        *,
        first_byte_latency: float = DEFAULT_FIRST_BYTE_LATENCY,
        connection_throughput: float = DEFAULT_CONNECTION_THROUGHPUT,
        prefetch_bytes: int = DEFAULT_PREFETCH_BYTES,
    ) -> DCPOptimizedConstructor:
        return DCPOptimizedConstructor(
            max_gap_size,
            first_byte_latency=first_byte_latency,
            connection_throughput=connection_throughput,
            prefetch_bytes=prefetch_bytes,
        )

    @staticmethod
    def adaptive(
        buffer_size: int | None = None,
        first_readahead: int = DEFAULT_FIRST_READAHEAD,
        max_readahead: int = DEFAULT_MAX_READAHEAD,
    ) -> ReaderConstructor:
        return AdaptiveConstructor(
            DEFAULT_RANDOM_BUFFER_SIZE if buffer_size is None else buffer_size, first_readahead, max_readahead
        )

    @staticmethod
    def default() -> ReaderConstructor:
        """The adaptive strategy: streams front-to-back reads, fetches only what random reads ask for."""
        return S3ReaderConstructor.adaptive()

    @staticmethod
    def get_reader_type_string(constructor: Any) -> str:
        """The strategy's name (``"sequential"``, ``"range_based"``, ``"dcp_optimized"``, ...), or ``"unknown"``."""
        name = getattr(constructor, "name", None)
        return name if isinstance(name, str) and callable(constructor) else "unknown"


# -- the registry ---------------------------------------------------------------------

ReaderFactory = Callable[..., ReaderConstructor]
"""Takes a strategy's options as keyword arguments and returns its constructor."""


_FACTORIES: dict[str, ReaderFactory] = {}


def _option_names(factory: ReaderFactory) -> frozenset[str]:
    parameters = inspect.signature(factory).parameters.values()
    return frozenset(p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


def register_reader(name: str, factory: ReaderFactory, *, replace: bool = False) -> None:
    """Make a strategy choosable by name, e.g. ``storage_options={"reader": name}``.

    ``factory(**options)`` must return a reader constructor; its keyword
    parameters are the options a user may pass alongside ``reader=name``.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"a reader name must be a non-empty string, got {name!r}")
    if name in _FACTORIES and not replace:
        raise ValueError(f"a reader named {name!r} is already registered; pass replace=True to override it")
    if not callable(factory):
        raise TypeError(f"the factory for reader {name!r} must be callable, got {factory!r}")
    _FACTORIES[name] = factory


def registered_readers() -> tuple[str, ...]:
    """The names ``reader=`` accepts, sorted."""
    return tuple(sorted(_FACTORIES))


def reader_option_names() -> frozenset[str]:
    """Every option any registered strategy takes; a filesystem keeps these out of S3 calls."""
    names: set[str] = set()
    for factory in _FACTORIES.values():
        names |= _option_names(factory)
    return frozenset(names)


def make_constructor(
    reader: str | ReaderConstructor | None = None, options: Mapping[str, Any] | None = None
) -> ReaderConstructor:
    """The constructor that ``reader`` (a name, a constructor, or None for the default) and ``options`` ask for."""
    options = dict(options or {})
    if reader is None:
        reader = S3ReaderConstructor.default().name
    if not isinstance(reader, str):
        if not callable(reader):
            raise TypeError(
                f"reader must be a strategy name {list(registered_readers())} or a reader constructor, got {reader!r}"
            )
        if options:
            raise ValueError(
                f"options {sorted(options)} only apply to a reader chosen by name; "
                f"build the constructor with them instead (e.g. S3ReaderConstructor.range_based(buffer_size=...))"
            )
        return reader
    factory = _FACTORIES.get(reader)
    if factory is None:
        raise ValueError(f"unknown reader {reader!r}; valid names are {', '.join(registered_readers())}")
    accepted = _option_names(factory)
    unexpected = sorted(set(options) - accepted)
    if unexpected:
        takes = f"takes {', '.join(sorted(accepted))}" if accepted else "takes no options"
        raise ValueError(f"reader {reader!r} does not take {', '.join(unexpected)}; it {takes}")
    return factory(**options)


register_reader("adaptive", S3ReaderConstructor.adaptive)
register_reader("sequential", S3ReaderConstructor.sequential)
register_reader("range_based", S3ReaderConstructor.range_based)
register_reader("dcp_optimized", S3ReaderConstructor.dcp_optimized)
