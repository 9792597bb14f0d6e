"""Choosing a reader strategy: constructors, and the registry that names them.

A *reader constructor* is a callable ``(bucket, key, get_object_info,
get_stream) -> S3Reader`` with a ``name``. Each built-in strategy is one
reader class, registered under its own ``strategy`` name; its options are the
keyword-only parameters of its ``__init__`` (defaults and checks live there
alone), so ``storage_options={"reader": "range_based", "buffer_size": 1 << 20}``
and ``S3ReaderConstructor.range_based(buffer_size=1 << 20)`` build the same
:class:`StrategyConstructor`. Users add strategies with ``register_reader``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .plan import ItemRange, gap_size, ranges_by_object
from .protocol import Chunk, GetObjectInfo, GetStream, ObjectInfo
from .readers.adaptive import AdaptiveS3Reader
from .readers.base import S3Reader
from .readers.dcp_optimized import DCPOptimizedS3Reader
from .readers.ranged import RangedS3Reader
from .readers.sequential import SequentialS3Reader
from .uris import object_uri

logger = logging.getLogger(__name__)


@runtime_checkable
class ReaderConstructor(Protocol):
    """Builds the reader for one object. ``name`` says which strategy it is."""

    @property
    def name(self) -> str: ...

    def __call__(self, bucket: str, key: str, get_object_info: GetObjectInfo, get_stream: GetStream) -> S3Reader: ...


class StrategyConstructor:
    """Builds one strategy's readers with fixed options: ``reader_class(bucket, key, info, stream, **options)``.

    The options are checked here, once, by the reader class's own checks.
    Value-like: two constructors of one strategy with equal options are equal
    and print alike, which fsspec's instance cache relies on (it keys
    filesystems by the text of their arguments).
    """

    def __init__(self, reader_class: type[S3Reader], **options: Any) -> None:
        self._reader_class = reader_class
        self._options = reader_class.check_options(**options)

    @property
    def name(self) -> str:
        return self._reader_class.strategy

    @property
    def reader_class(self) -> type[S3Reader]:
        return self._reader_class

    @property
    def options(self) -> dict[str, Any]:
        """Every option of the strategy, defaults filled in."""
        return dict(self._options)

    def __getattr__(self, name: str) -> Any:
        # Each option reads as an attribute too: S3ReaderConstructor.range_based(5).buffer_size == 5.
        options = self.__dict__.get("_options", {})
        if name in options:
            return options[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __call__(self, bucket: str, key: str, get_object_info: GetObjectInfo, get_stream: GetStream) -> S3Reader:
        return self._reader_class(bucket, key, get_object_info, get_stream, **self._options)  # type: ignore[call-arg]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, StrategyConstructor)
        return (self._reader_class, self._options) == (other._reader_class, other._options)

    def __hash__(self) -> int:
        return hash((self._reader_class, tuple(sorted(self._options.items()))))

    def __repr__(self) -> str:
        options = ", ".join(f"{name}={value!r}" for name, value in sorted(self._options.items()))
        return f"{self.name}({options})"


class PlannedSource(Protocol):
    """Where a DCP load's file is read from instead of the filesystem: bytes fetched ahead (``LoadPipeline``)."""

    def get_object_info(self) -> ObjectInfo: ...

    def get_stream(self, start: int, end: int, /, *, ahead: bool = False) -> Iterator[Chunk]: ...


class DCPOptimizedConstructor(StrategyConstructor):
    """Builds :class:`DCPOptimizedS3Reader` for the files of one DCP load.

    Holds the load plan's ranges, keyed by object URI; ``S3StorageReader``
    sets them once per load, before torch opens a file.
    ``.metadata`` files are read with the sequential reader; a file the plan
    does not mention is read with the range-based reader (with a warning).

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

    def __init__(self, max_gap_size: float | None = None, **options: Any) -> None:
        super().__init__(DCPOptimizedS3Reader, max_gap_size=max_gap_size, **options)
        self._given = {"max_gap_size": max_gap_size, **options}
        self._ranges_by_object: dict[str, tuple[ItemRange, ...]] = {}
        self._sources: dict[str, PlannedSource] = {}
        self._sources_gap: float | None = None

    @property
    def given_options(self) -> dict[str, Any]:
        """The options as they were given: ``None`` where the default was left (a cost a load may measure instead)."""
        return {name: self._given.get(name) for name in self._options}

    @property
    def max_gap_size(self) -> float:
        """The gap, in bytes, up to which two ranges share a GET (given, or computed from latency and throughput)."""
        return gap_size(
            self._options["max_gap_size"], self._options["first_byte_latency"], self._options["connection_throughput"]
        )

    @property
    def item_ranges_by_file(self) -> dict[str, list[ItemRange]]:
        """The ranges set for this load: ``{"s3://bucket/key": [ItemRange, ...]}``, each list sorted."""
        return {uri: list(ranges) for uri, ranges in self._ranges_by_object.items()}

    def fresh(self) -> DCPOptimizedConstructor:
        """A constructor with the same settings and no ranges, for another load."""
        return DCPOptimizedConstructor(**self._given)

    def clear(self) -> None:
        self._ranges_by_object = {}
        self._sources = {}

    def set_sources(self, sources: Mapping[str, PlannedSource], max_gap_size: float | None = None) -> None:
        """Read these objects (``{"s3://bucket/key": source}``) from the given sources, not the filesystem's.

        The storage reader hands over what its load pipeline fetches ahead.
        ``max_gap_size``, the gap the sources' ranges were grouped with,
        replaces the strategy's for their files, so that each reader's range
        groups are the ones fetched.
        """
        self._sources = {object_uri(uri): source for uri, source in sources.items()}
        self._sources_gap = max_gap_size

    def set_ranges(self, ranges_by_object: Mapping[str, Iterable[ItemRange]]) -> None:
        """Use these ranges (``{"s3://bucket/key": [ItemRange, ...]}``, what a load plan reads) from now on."""
        self._ranges_by_object = {
            object_uri(uri): tuple(sorted(ranges, key=lambda r: (r.start, r.end)))
            for uri, ranges in ranges_by_object.items()
        }

    def set_item_ranges_by_file(
        self, plan_items: Iterable[Any], storage_data: Mapping[Any, Any], base_path: str | os.PathLike[str]
    ) -> None:
        """Record, per file, the byte ranges that the DCP ``plan_items`` will read.

        ``storage_data`` is the checkpoint metadata's map from storage index to
        ``(relative_path, offset, length)``; ``base_path`` is the checkpoint's
        URI. An empty plan means this rank reads nothing. Replaces any ranges
        recorded before.
        """
        self.set_ranges(ranges_by_object(plan_items, storage_data, base_path))

    def __call__(self, bucket: str, key: str, get_object_info: GetObjectInfo, get_stream: GetStream) -> S3Reader:
        uri = object_uri(f"{bucket}/{key}")
        source = self._sources.get(uri)
        options = dict(self._options)
        if source is not None:
            get_object_info, get_stream = source.get_object_info, source.get_stream
            if self._sources_gap is not None:
                options["max_gap_size"] = self._sources_gap
        if key.endswith(".metadata"):
            return SequentialS3Reader(bucket, key, get_object_info, get_stream)
        ranges = self._ranges_by_object.get(uri)
        if ranges is None:
            logger.warning(
                "no load-plan ranges for s3://%s/%s; reading it with the range-based reader. "
                "Load through S3StorageReader to fetch only the planned bytes.",
                bucket,
                key,
            )
            return RangedS3Reader(bucket, key, get_object_info, get_stream)
        return DCPOptimizedS3Reader(bucket, key, ranges, get_object_info, get_stream, **options)

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        # Distinct per object: fsspec caches filesystems by the repr of their
        # options, and two loads must never share one constructor's ranges.
        files = len(self._ranges_by_object)
        return f"<DCPOptimizedConstructor max_gap_size={self.max_gap_size} files={files} at {id(self):#x}>"


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

    An option left at ``None`` takes the strategy's default.
    """

    @staticmethod
    def sequential() -> ReaderConstructor:
        return StrategyConstructor(SequentialS3Reader)

    @staticmethod
    def range_based(buffer_size: int | None = None) -> ReaderConstructor:
        return StrategyConstructor(RangedS3Reader, buffer_size=buffer_size)

    @staticmethod
    def dcp_optimized(
        max_gap_size: float | None = None,
        *,
        first_byte_latency: float | None = None,
        connection_throughput: float | None = None,
        prefetch_bytes: int | None = None,
    ) -> DCPOptimizedConstructor:
        return DCPOptimizedConstructor(
            max_gap_size,
            first_byte_latency=first_byte_latency,
            connection_throughput=connection_throughput,
            prefetch_bytes=prefetch_bytes,
        )

    @staticmethod
    def adaptive(
        buffer_size: int | None = None, first_readahead: int | None = None, max_readahead: int | None = None
    ) -> ReaderConstructor:
        return StrategyConstructor(
            AdaptiveS3Reader, buffer_size=buffer_size, first_readahead=first_readahead, max_readahead=max_readahead
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


@dataclass(frozen=True)
class _Registered:
    """One name's entry: how to build its constructor from options, and which options it takes."""

    factory: ReaderFactory
    options: frozenset[str]


_REGISTRY: dict[str, _Registered] = {}


def _register(name: str, entry: _Registered, replace: bool) -> None:
    if not name or not isinstance(name, str):
        raise ValueError(f"a reader name must be a non-empty string, got {name!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"a reader named {name!r} is already registered; pass replace=True to override it")
    _REGISTRY[name] = entry


def register_reader(
    strategy: type[S3Reader] | str, factory: ReaderFactory | None = None, *, replace: bool = False
) -> None:
    """Make a strategy choosable by name, e.g. ``storage_options={"reader": name}``.

    ``register_reader(MyReader)`` registers a reader class under its own
    ``strategy`` name; its options are the keyword-only parameters of its
    ``__init__``. ``register_reader(name, factory)`` registers a factory
    instead: ``factory(**options)`` returns a reader constructor, and its
    keyword parameters are the options. A name already taken raises unless
    ``replace=True``.
    """
    if isinstance(strategy, type) and issubclass(strategy, S3Reader):
        if factory is not None:
            raise TypeError("register a reader class alone (its strategy name is its own), or a name and a factory")
        options = frozenset(strategy.option_defaults())
        _register(strategy.strategy, _Registered(functools.partial(StrategyConstructor, strategy), options), replace)
        return
    if not callable(factory):
        raise TypeError(f"the factory for reader {strategy!r} must be callable, got {factory!r}")
    parameters = inspect.signature(factory).parameters.values()
    options = frozenset(p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
    _register(strategy, _Registered(factory, options), replace)


def registered_readers() -> tuple[str, ...]:
    """The names ``reader=`` accepts, sorted."""
    return tuple(sorted(_REGISTRY))


def reader_option_names() -> frozenset[str]:
    """Every option any registered strategy takes; a filesystem keeps these out of S3 calls."""
    return frozenset().union(*(entry.options for entry in _REGISTRY.values()))


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
    entry = _REGISTRY.get(reader)
    if entry is None:
        raise ValueError(f"unknown reader {reader!r}; valid names are {', '.join(registered_readers())}")
    unexpected = sorted(set(options) - entry.options)
    if unexpected:
        takes = f"takes {', '.join(sorted(entry.options))}" if entry.options else "takes no options"
        raise ValueError(f"reader {reader!r} does not take {', '.join(unexpected)}; it {takes}")
    return entry.factory(**options)


for _reader_class in (AdaptiveS3Reader, SequentialS3Reader, RangedS3Reader):
    register_reader(_reader_class)
# The DCP strategy's constructor also holds a load's ranges; its options are still its reader's.
_register(
    DCPOptimizedS3Reader.strategy,
    _Registered(DCPOptimizedConstructor, frozenset(DCPOptimizedS3Reader.option_defaults())),
    replace=False,
)
