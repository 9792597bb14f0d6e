"""The ``s3reader://`` fsspec filesystem: s3fs in every way, except how files open for reading.

Opening with ``"rb"`` returns the reader that the configured strategy builds
over this module's transport; everything else (listing, info, writing, every
s3fs option) is s3fs's own.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import dataclasses
import functools
import inspect
import logging
import operator
import os
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import aiobotocore.session  # type: ignore[import-untyped]
from fsspec.asyn import get_loop, sync, sync_wrapper
from s3fs import S3FileSystem
from s3fs.core import _error_wrapper as s3fs_retries

from .chunks import joined
from .constructor import ReaderConstructor, make_constructor, reader_option_names
from .folder_pages import FolderPages, Page
from .folder_probe import (
    first_page_request,
    is_first_page_request,
    is_folder_probe,
    names_a_folder,
    page_copy,
    page_key,
    probe_after,
    probe_answer,
)
from .footers_ahead import FootersAhead, ListedParquetFile
from .forking import ForkSafeLock
from .protocol import GetStream, ObjectInfo
from .readers.base import S3Reader
from .readers.folder_columns import announce_next_files, file_version, folder_of
from .readers.open_files import note_pyarrow_wrapper
from .recent_answers import RecentAnswers
from .redaction import protect_secrets
from .retry import DEFAULT_READ_ATTEMPTS, DEFAULT_READ_TIMEOUT, DEFAULT_RETRY_BACKOFF, RetryPolicy
from .s3fs_options import check_s3fs_options
from .stats import CountingBody, TransferCounter, TransferStats
from .transport import (
    DEFAULT_FIRST_GET_SIZE,
    DEFAULT_MAX_PARTS_IN_FLIGHT,
    DEFAULT_MAX_REQUESTS_IN_FLIGHT,
    DEFAULT_PART_SIZE,
    BotocoreCalls,
    LeanCalls,
    LimitedCalls,
    RequestLimiter,
    S3Calls,
    S3ObjectTransport,
    TransportSettings,
    endpoint_limiter,
)
from .transport.link_estimate import READ_TIMED_BODY, LinkEstimate, is_far
from .transport.object_requests import ObjectRequests
from .transport.object_transport import ObjectTail
from .transport.whole_reads import download, read_range
from .uris import without_scheme

logger = logging.getLogger(__name__)

_WRITE_MODES = frozenset({"wb", "ab", "xb"})
"""The modes s3fs writes in; reading ("rb") goes through a reader strategy."""

_S3FS_PARAMETERS = frozenset(inspect.signature(S3FileSystem.__init__).parameters)


@functools.cache
def _object_request_parameters() -> frozenset[str]:
    """Parameters an S3 GetObject or HeadObject request takes (``SSECustomerKey``, ``RequestPayer``, ...)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("s3")
    names: set[str] = set()
    for operation in ("GetObject", "HeadObject"):
        names.update(model.operation_model(operation).input_shape.members)
    return frozenset(names)


_SHARED_SESSIONS: dict[str, Any] = {}
_SHARED_SESSIONS_LOCK = ForkSafeLock()


def _shared_session(session_kwargs: dict[str, Any]) -> Any:
    """One aiobotocore session per distinct set of session options, for every filesystem of this process.

    A new botocore session costs ~0.1-0.2 s of the event loop's time before its
    first request: it parses the S3 model and endpoint files (a few MB of
    JSON) and registers hundreds of event handlers. A DCP load builds a
    filesystem of its own each time, and would pay that on every load. The
    session only holds configuration and parsed models; each filesystem
    still makes its own client (connections, credentials passed to it).
    """
    key = repr(sorted(session_kwargs.items()))
    with _SHARED_SESSIONS_LOCK:
        session = _SHARED_SESSIONS.get(key)
        if session is None:
            session = _SHARED_SESSIONS[key] = aiobotocore.session.AioSession(**session_kwargs)
        return session


_READ_FROM_THE_END = (".parquet", ".parq", ".pq")
"""Formats whose readers start at the end of the file (parquet's footer holds where everything else is)."""


def _read_from_end(key: str) -> bool:
    return key.lower().endswith(_READ_FROM_THE_END)


def _endpoint_of(endpoint_url: str | None, client_kwargs: dict[str, Any]) -> str:
    """Which endpoint a filesystem's requests go to, as the key of its adaptive limiter."""
    url = endpoint_url or client_kwargs.get("endpoint_url")
    if url:
        return str(url).rstrip("/")
    region = client_kwargs.get("region_name")
    return f"https://s3.{region}.amazonaws.com" if region else "https://s3.amazonaws.com"


_LEAN_FILESYSTEM_CALLS = frozenset({"list_objects_v2", "head_object"})
"""s3fs's calls sent by the lean path: each page of ``ls``, ``find`` and ``glob``, and the HEAD and the probe of a
folder of ``info``, about 1 to 1.5 ms of botocore's CPU each (a page of 1000 keys, 50 ms; lean, 9 ms)."""

_DESCRIBED_FOR_SECONDS = 2.0
"""How long an ``info`` answer stands in for the next ``info`` of the path and for an open's first request,
and an object's tail, read by one reader, for the next reader's read of it.

pandas and pyarrow ask three times in a row of one file (``info``, then
``isfile`` before each of two opens): three HEADs one after another, each a
round trip; a ``pyarrow.dataset`` scan reads its first file's footer twice.
Within this window the first answer serves them all."""
_DESCRIBED_AT_MOST = 1024
_TAILS_KEPT_AT_MOST = 128
"""Object tails kept (each at most ``TAIL_TOLD_AT_MOST`` bytes, a parquet footer read is 64 KiB): 32 MiB at worst."""
_PAGES_KEPT_AT_MOST = 16
"""Listing pages kept from folder probes (each at most 1000 keys, about 0.5 MB as dicts)."""

_Answer = TypeVar("_Answer")


def _object_info_of(details: dict[str, Any]) -> ObjectInfo | None:
    """What an fsspec listing or ``info`` entry says of an object, if it describes one."""
    if details.get("type") != "file" or not isinstance(details.get("size"), int):
        return None
    return ObjectInfo(size=details["size"], etag=details.get("ETag"))


class _ListingView:
    """One cached folder listing, by name and (its parquet files) in name order, each built once."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries
        self.by_name = {entry.get("name"): entry for entry in entries}
        self._parquet_files: list[tuple[str, ObjectInfo]] | None = None

    @property
    def parquet_files(self) -> list[tuple[str, ObjectInfo]]:
        """The files whose names say parquet, sorted by name, with what the listing says of each."""
        if self._parquet_files is None:
            self._parquet_files = sorted(
                (entry["name"], info)
                for entry in self.entries
                if _read_from_end(entry.get("name", "")) and (info := _object_info_of(entry)) is not None
            )
        return self._parquet_files


def _listed_in(files: list[tuple[str, ObjectInfo]], path: str) -> bool:
    """Whether ``path`` is one of ``files`` (sorted by name)."""
    index = bisect.bisect_left(files, path, key=operator.itemgetter(0))
    return index < len(files) and files[index][0] == path


def _strategy_option_names() -> frozenset[str]:
    """Options that belong to a reader strategy; a name s3fs also takes stays s3fs's."""
    return reader_option_names() - _S3FS_PARAMETERS


def _credentials_in(client_kwargs: dict[str, Any]) -> list[Any]:
    """Credentials passed through ``client_kwargs`` rather than ``key``/``secret``/``token``."""
    names = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
    return [client_kwargs.get(name) for name in names]


class S3ReaderFileSystem(S3FileSystem):  # type: ignore[misc]  # s3fs ships no type hints
    """An s3fs filesystem whose read-mode files are reader strategies.

    Parameters beyond s3fs's own (every s3fs parameter keeps working):

    reader:
        A strategy name (``"adaptive"``, ``"sequential"``, ``"range_based"``, ``"dcp_optimized"``,
        or one added with ``register_reader``) or a constructor from
        :class:`S3ReaderConstructor`. Default: ``"adaptive"``.
    buffer_size, max_gap_size, ...:
        Options of the strategy named by ``reader`` (e.g. ``buffer_size`` for
        ``"range_based"``), so they can travel in ``storage_options``.
    part_size:
        Bytes per ranged GET when a long range is fetched as concurrent parts.
        Unset, a read the caller waits for whole is cut into parts that fit
        the link as this filesystem's GETs find it (at most 8 MiB each); given,
        every part is this long, so request counts follow from sizes alone.
    max_parts_in_flight:
        How many of those GETs run at once per open file.
    read_attempts:
        Tries per HEAD or per part before a read gives up with
        ``ReadRetriesExhaustedError`` (default 5; 1 means no retries). Each
        try is exactly one HTTP request: neither s3fs nor botocore retries
        the readers' requests on top.
    read_timeout:
        Seconds a GET may wait for its headers or for the next bytes of its
        body before the try counts as failed (default 30).
    retry_backoff:
        Seconds before the first retry, doubled for each further one (capped
        at 10 s), with jitter (default 0.2).
    first_get_size:
        When a reader needs an object's size, ask with a GET of its first
        this-many bytes (its last, for a ``.parquet`` file, read from its
        footer) and keep them for the reads that follow (default 64 KiB: a
        small object costs one request; 0 asks with a HEAD instead).
    max_requests_in_flight:
        How many requests this filesystem keeps in flight at once, all its
        files and ``cat``/``get`` calls together (default 64).
    adaptive_concurrency:
        Lower the requests in flight when the endpoint throttles (``503
        SlowDown``) and raise them again as requests succeed, in one window
        shared by every filesystem of this process that uses the same
        endpoint, at most the largest ``max_requests_in_flight`` among them
        (default True; False keeps this filesystem's own fixed limit only).
    lean_requests:
        Send GETs, HEADs and listings as one signed HTTP request each, with the
        endpoint, addressing style, region and credentials botocore gives
        for the bucket, instead of through botocore's whole request pipeline
        (default True; False sends every request through botocore).

    ``fs.stats`` tells how many requests this filesystem sent (GET, HEAD,
    other) and how many body bytes it received, for its readers and for
    s3fs's own calls alike, and how many bytes its readers handed to their
    callers; ``fs.reset_stats()`` starts the count again.
    """

    protocol = ("s3reader",)

    def __init__(
        self,
        *args: Any,
        reader: str | ReaderConstructor | None = None,
        part_size: int | None = None,
        max_parts_in_flight: int = DEFAULT_MAX_PARTS_IN_FLIGHT,
        read_attempts: int = DEFAULT_READ_ATTEMPTS,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        retry_backoff: float = DEFAULT_RETRY_BACKOFF,
        first_get_size: int = DEFAULT_FIRST_GET_SIZE,
        max_requests_in_flight: int = DEFAULT_MAX_REQUESTS_IN_FLIGHT,
        lean_requests: bool = True,
        adaptive_concurrency: bool = True,
        **kwargs: Any,
    ) -> None:
        check_s3fs_options(kwargs)
        options = {name: kwargs.pop(name) for name in _strategy_option_names() & kwargs.keys()}
        self._reader_constructor = make_constructor(reader, options)
        self._link_estimate = LinkEstimate(smallest_timed_body=READ_TIMED_BODY)
        self._transport_settings = TransportSettings(
            part_size=DEFAULT_PART_SIZE if part_size is None else part_size,
            max_parts_in_flight=max_parts_in_flight,
            retry_policy=RetryPolicy(read_attempts, read_timeout, retry_backoff),
            first_get_size=first_get_size,
            pin_versions=bool(kwargs.get("version_aware", False)),
            # the link as this filesystem's GETs find it: a read waited for whole is cut into parts that fit it,
            # unless the caller chose the part size
            link_estimate=self._link_estimate,
            reads_fit_link=part_size is None,
        )
        self._counter = TransferCounter()
        # an info answered moments ago, for the info, isdir and open that usually follow it
        self._just_described: RecentAnswers[dict[str, Any]] = RecentAnswers(_DESCRIBED_AT_MOST)
        # an object's last bytes read moments ago (a parquet footer), for the next reader of that version
        self._recent_tails: RecentAnswers[ObjectTail] = RecentAnswers(_TAILS_KEPT_AT_MOST)
        # the first page of a folder's listing, asked for by info's probe of the folder (or beside its HEAD), for
        # the probe and the find that follow
        self._folder_pages = FolderPages(_PAGES_KEPT_AT_MOST)
        # the footers of a listed folder's next parquet files, fetched as one of them opens
        self._footers_ahead = FootersAhead(self._fetch_tail_ahead)
        self._listing_view: _ListingView | None = None  # the folder listing the last open looked in
        super().__init__(*args, **kwargs)
        protect_secrets(self.key, self.secret, self.token, *_credentials_in(self.client_kwargs))
        self._object_calls = self._make_object_calls(max_requests_in_flight, lean_requests, adaptive_concurrency)

    def _make_object_calls(self, max_requests_in_flight: int, lean: bool, adaptive: bool) -> LimitedCalls:
        for name, value in (("lean_requests", lean), ("adaptive_concurrency", adaptive)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r}")
        limiter = RequestLimiter(max_requests_in_flight)
        defaults = {**self.s3_additional_kwargs, **self.req_kw}
        calls: S3Calls = BotocoreCalls(self._client_for, lambda: self.loop, self._counter, defaults)
        self._lean_calls = None
        if lean:
            calls = self._lean_calls = LeanCalls(
                calls, self._client_for, self._counter, defaults, self.client_kwargs, limiter.limit
            )
            weakref.finalize(self, calls.http_clients.close)  # its connections go when the filesystem does
        shared = (
            endpoint_limiter(_endpoint_of(self.endpoint_url, self.client_kwargs), limiter.limit) if adaptive else None
        )
        return LimitedCalls(calls, limiter, shared)

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        """Accept ``s3://`` and ``s3a://`` paths too, so DCP and pandas paths work unchanged."""
        return super()._strip_protocol(without_scheme(path) if isinstance(path, str) else path)

    @property
    def retry_policy(self) -> RetryPolicy:
        """How reads are retried: ``read_attempts``, ``read_timeout`` and ``retry_backoff``."""
        return self._transport_settings.retry_policy

    @property
    def transport_settings(self) -> TransportSettings:
        """How this filesystem's readers fetch: part size, parts in flight, retries, first GET, pinning."""
        return self._transport_settings

    @property
    def object_calls(self) -> S3Calls:
        """How this filesystem's transports reach S3: its event loop, and one counted request per call."""
        return self._object_calls

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        # fsspec refuses to work in a forked child ("not fork-safe"); a
        # DataLoader worker forked after the parent read through this
        # filesystem needs it to work, so start over with a fresh client.
        if self._pid != os.getpid():
            self._start_over_after_fork()
        loop: asyncio.AbstractEventLoop = self._loop
        return loop

    def _start_over_after_fork(self) -> None:
        """Drop the parent's event loop, client and connections; the next call sets up this process's own."""
        self._pid = os.getpid()
        self._loop = get_loop()
        self._s3 = None
        self._s3creator = None
        self._kwargs_helper = None
        self._set_session_lock = asyncio.Lock()
        if self._session_is_owned:
            self.session = None

    @property
    def reader_constructor(self) -> ReaderConstructor:
        """The strategy that ``open(path, "rb")`` uses."""
        return self._reader_constructor

    @property
    def stats(self) -> TransferStats:
        """Requests sent and body bytes received by this filesystem so far (a snapshot)."""
        return self._counter.snapshot()

    def reset_stats(self) -> None:
        self._counter.reset()

    async def set_session(self, refresh: bool = False, kwargs: dict[str, Any] | None = None) -> Any:
        if getattr(self, "session", None) is None:  # the caller gave none: reuse this process's
            self.session = _shared_session(self.kwargs)
        return await super().set_session(refresh=refresh, kwargs=kwargs or {})

    def object_transport(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        *,
        request_kwargs: dict[str, Any] | None = None,
        calls: S3Calls | None = None,
        read_from_end: bool = False,
        listed: ObjectInfo | None = None,
        known_tail: ObjectTail | None = None,
        on_tail: Callable[[ObjectTail], None] | None = None,
        **settings: Any,
    ) -> S3ObjectTransport:
        """The source a reader of ``s3://bucket/key`` is built on: ``get_object_info`` and ``get_stream``.

        ``settings`` override this filesystem's :class:`TransportSettings`
        (``part_size=...``); ``calls`` replaces how requests are sent (a
        wrapper around :attr:`object_calls`, say, in a test); ``read_from_end``
        makes the first GET ask for the object's last bytes; ``listed`` is
        what a listing said of the object (its size), taken instead of a first
        request; ``known_tail`` is the object's last bytes another reader
        received moments ago (they pin their version), and ``on_tail`` hears of
        the last bytes this one receives.
        """
        chosen = dataclasses.replace(self._transport_settings, **settings) if settings else self._transport_settings
        return S3ObjectTransport(
            calls or self._object_calls,
            bucket,
            key,
            version_id,
            settings=chosen,
            request_kwargs=request_kwargs,
            read_from_end=read_from_end,
            listed=listed,
            known_tail=known_tail,
            on_tail=on_tail,
        )

    def _listed_info(self, path: str) -> ObjectInfo | None:
        """The size and ETag of ``path`` as this filesystem last heard them, if it still may trust that.

        From a listing it keeps (``ls``, ``find``), or from an ``info`` that
        asked S3 a moment ago (pyarrow's fsspec handler asks ``isfile`` before
        each open). A file opened after either then sends nothing until its
        first read, and that read asks for the very bytes it wants. As with
        s3fs, ``invalidate_cache()`` forgets the listings.
        """
        described = self._described_moments_ago(path)
        if described is not None:
            return _object_info_of(described)
        entry = self._listed_entry(path)
        return None if entry is None else _object_info_of(entry)

    def _listed_entry(self, path: str) -> dict[str, Any] | None:
        """``path``'s entry in its folder's listing as this filesystem keeps it (None if not there, or not kept)."""
        listing = self._cached_listing(self._parent(path))
        return None if listing is None else listing.by_name.get(path)

    def _fetch_footers_from(self, path: str) -> Sequence[tuple[str, ObjectInfo]]:
        """``path`` opens from a folder this filesystem listed: its footer, then its next parquet files', set out.

        Returns the next files as listed, to be named to the readers of the folder.
        """
        siblings = self._parquet_files_listed(path.rpartition("/")[0])
        if not siblings or not _listed_in(siblings, path):
            return []
        return self._footers_ahead.fetch_from(
            path,
            siblings,
            lambda name: self._tail_read_moments_ago(name, None) is not None,
            one_server_queue=not is_far(self._link_estimate.sample()),
        )

    def _listed_parquet_file(self, path: str, listed: ObjectInfo) -> ListedParquetFile:
        bucket, _, key = path.partition("/")  # a listing's name: no scheme, no version (split_path costs ~10 us)

        def tail() -> tuple[int, bytes] | None:
            found = self._tail_read_moments_ago(path, listed)
            return None if found is None else (found.start, found.data)

        def open_transport() -> GetStream:
            return self.object_transport(bucket, key, read_from_end=True, listed=listed).get_stream

        return ListedParquetFile(key, file_version(bucket, key, listed), listed.size, tail, open_transport)

    def _parquet_files_listed(self, folder: str) -> list[tuple[str, ObjectInfo]] | None:
        """The parquet files of ``folder``'s cached listing, sorted by name, with what the listing says of each."""
        listing = self._cached_listing(folder) if self.dircache.use_listings_cache else None
        return None if listing is None else listing.parquet_files

    def _cached_listing(self, folder: str) -> _ListingView | None:
        """``folder``'s listing as s3fs keeps it (None if not listed, or expired), viewed once per listing.

        A scan opens every file of a folder: looking each up in the listing
        (as s3fs's ``_ls_from_cache`` does) would cost the square of its size.
        """
        try:
            entries = self.dircache[folder]
        except KeyError:
            return None
        view = self._listing_view
        if view is None or view.entries is not entries:
            view = self._listing_view = _ListingView(entries)
        return view

    def _fetch_tail_ahead(self, path: str, listed: ObjectInfo) -> concurrent.futures.Future[None]:
        bucket, key, _ = self.split_path(path)
        transport = self.object_transport(
            bucket, key, read_from_end=True, listed=listed, on_tail=functools.partial(self._recent_tails.put, path)
        )
        return transport.fetch_tail_ahead()

    def invalidate_cache(self, path: str | None = None) -> None:
        """Forget listings (s3fs's) and recent ``info`` answers of ``path``, below and above it (all, without a path).

        s3fs calls this after every write, so a file written since its
        ``info`` opens with its new size; its folders, which a write or a
        delete may have made or emptied, are asked again too, as s3fs forgets
        their listings.
        """
        stripped = None if path is None else self._strip_protocol(path)
        self._just_described.forget(stripped)
        self._recent_tails.forget(stripped)
        self._folder_pages.forget(stripped)
        super().invalidate_cache(path)

    def _moments_ago(self, memory: RecentAnswers[_Answer], path: str) -> _Answer | None:
        """What ``memory`` kept of ``path`` within ``_DESCRIBED_FOR_SECONDS``, unless listings are not cached.

        Both memories (``info`` answers, tails) obey the same window and the
        same switch as s3fs's listings cache.
        """
        if not self.dircache.use_listings_cache:
            return None
        return memory.get(path, _DESCRIBED_FOR_SECONDS)

    def _described_moments_ago(self, path: str) -> dict[str, Any] | None:
        """What an ``info`` of ``path`` answered within the window."""
        return self._moments_ago(self._just_described, path)

    def _tail_read_moments_ago(self, path: str, listed: ObjectInfo | None) -> ObjectTail | None:
        """The last bytes of ``path`` a reader received within the window, if nothing since said otherwise.

        ``listed``: what a listing or ``info`` says of the object now; a tail of
        another size or ETag is not used.
        """
        tail = self._moments_ago(self._recent_tails, path)
        if tail is None or (listed is not None and (listed.size, listed.etag) != (tail.info.size, tail.info.etag)):
            return None
        return tail

    async def _info(
        self,
        path: str,
        bucket: str | None = None,
        key: str | None = None,
        refresh: bool = False,
        version_id: str | None = None,
    ) -> dict[str, Any]:
        """s3fs's ``info``; an answer of the last 2 s serves again (``refresh=True`` asks S3 anyway).

        The same window as the listings s3fs keeps, made short: a write
        through this filesystem, ``invalidate_cache()`` and
        ``use_listings_cache=False`` end it.
        """
        stripped = self._strip_protocol(path)
        if not refresh and version_id is None:
            described = self._described_moments_ago(stripped)
            if described is not None:
                return dict(described)
        details: dict[str, Any] = await super()._info(
            path, bucket=bucket, key=key, refresh=refresh, version_id=version_id
        )
        if details.get("type") in ("file", "directory") and version_id is None:
            self._just_described.put(stripped, dict(details))
        return details

    async def _isdir(self, path: str) -> bool:
        """s3fs's ``isdir``, answered by an ``info`` of the last 2 s where there was one.

        pyarrow asks ``info`` of a dataset's folder (a HEAD, then a LIST of one
        key) and then ``isdir`` of it (another LIST): the second round trip
        would only repeat what the first said.
        """
        described = self._described_as_folder(path)
        return described if described is not None else bool(await super()._isdir(path))

    def isdir(self, path: str) -> bool:  # s3fs binds its own coroutine as ``isdir``: this one is ours
        """``_isdir``, answered on the caller's thread where an ``info`` of the last 2 s says (see ``isfile``)."""
        described = self._described_as_folder(path)
        return described if described is not None else bool(sync(self.loop, self._isdir, path))

    def _described_as_folder(self, path: str) -> bool | None:
        """Whether an ``info`` of the last 2 s said ``path`` is a folder; None without one."""
        described = self._described_moments_ago(self._strip_protocol(path))
        return None if described is None else bool(described["type"] == "directory")

    def isfile(self, path: str) -> bool:
        """fsspec's ``isfile``, answered on the caller's thread where a listing or an ``info`` of the last 2 s says.

        pyarrow's fsspec handler asks ``isfile`` before each open of a
        dataset's files. Through the event loop, busy receiving the files
        already open, each answer took about 1 ms (0.8 ms median, 16 ms at
        worst, on a scan of 8 files on loopback), and the open waited for it;
        here it is a lookup. Anything this filesystem does not keep (a version,
        a name also listed as a folder) asks the usual way.
        """
        known = self._known_type(path)
        if known is not None:
            return known == "file"
        return bool(sync(self.loop, self._isfile, path))

    def _known_type(self, path: str) -> str | None:
        """The type ``_info`` would give ``path`` from what this filesystem keeps; None where it would look further."""
        stripped = self._strip_protocol(path)
        if "?" in stripped or not stripped.strip("/"):  # a version, or the root: s3fs's own rules
            return None
        described = self._described_moments_ago(stripped)
        if described is not None:
            return str(described.get("type"))
        if stripped.rstrip("/") in self.dircache:  # listed as a folder itself: s3fs answers from that listing
            return None
        entry = self._listed_entry(stripped)
        return None if entry is None else str(entry.get("type"))

    def _object_requests(self, path: str, version_id: str | None, request_kwargs: dict[str, Any]) -> ObjectRequests:
        bucket, key, path_version_id = self.split_path(path)
        settings = self._transport_settings
        return ObjectRequests(
            self._object_calls,
            bucket,
            key,
            version_id or path_version_id,
            retry_policy=settings.retry_policy,
            pin_versions=settings.pin_versions,
            request_kwargs=request_kwargs,
        )

    async def _cat_file(
        self,
        path: str,
        version_id: str | int | None = None,
        start: int | None = None,
        end: int | None = None,
        **kwargs: Any,
    ) -> bytes:
        """The bytes ``[start, end)`` of one object, through this filesystem's transport (no HEAD; parallel parts).

        What ``cat``, ``cat_ranges`` and the async readers of zarr and
        ``fsspec.parquet`` call, concurrently, for each object or range.
        ``cat_file(path, start, end)`` reads as fsspec documents it: s3fs's
        second parameter is the version, so a number there is the start (and
        the next one the end), never a version ID, which is text.
        """
        if isinstance(version_id, int):
            if start is not None and end is not None:
                raise TypeError(
                    f"cat_file({path!r}, {version_id!r}, {start!r}, {end!r}): too many positions; "
                    "pass start=, end= and version_id= by name"
                )
            version_id, start, end = None, version_id, start if end is None else end
        kwargs.pop("chunksize", None), kwargs.pop("max_concurrency", None)  # s3fs's tuning: the parts are ours
        settings = self._transport_settings
        chunks = await read_range(
            self._object_requests(path, version_id, kwargs),
            start,
            end,
            part_size=settings.part_size,
            parts_in_flight=settings.max_parts_in_flight,
        )
        data = joined(chunks)
        self._counter.record_delivered(len(data))
        return data

    async def _get_file(
        self, rpath: str, lpath: str, callback: Any = None, version_id: str | None = None, **kwargs: Any
    ) -> None:
        """Download one object to ``lpath`` through this filesystem's transport, as parallel parts."""
        if os.path.isdir(lpath):
            return
        kwargs.pop("chunksize", None), kwargs.pop("max_concurrency", None)
        settings = self._transport_settings
        size = await download(
            self._object_requests(rpath, version_id, kwargs),
            lpath,
            part_size=settings.part_size,
            parts_in_flight=settings.max_parts_in_flight,
            set_size=callback.set_size if callback is not None else lambda size: None,
            progress=callback.relative_update if callback is not None else lambda count: None,
        )
        self._counter.record_delivered(size)

    async def _client_for(self, bucket: str) -> Any:
        """The aiobotocore client for ``bucket`` (s3fs keeps one per region when it caches regions)."""
        await self.set_session()
        return await self.get_s3(bucket)

    async def _call_s3(self, method: str, *akwarglist: Any, **kwargs: Any) -> Any:
        """s3fs's own calls (listing, info, writing, cat_file), sent by ``_send_s3``; a folder probe lists a page.

        ``info``'s probe of a folder is sent as the first page of the folder's
        listing, kept for a ``find`` that asks it within the window
        (``folder_probe.py``); the HEAD of a path that reads as a folder's
        name has that page asked for beside it. Not on a version-aware
        filesystem, whose listings ask for versions, nor with request
        parameters (``requester_pays``: ``req_kw``), which the page would have
        to carry, nor with listings not cached.
        """
        if not any(akwarglist) and self._pages_serve_probes():
            if method == "list_objects_v2" and is_folder_probe(kwargs):
                return probe_answer(await self._first_page(kwargs), kwargs)
            if method == "list_objects_v2" and is_first_page_request(kwargs):
                probed = await self._folder_pages.page(page_key(kwargs), _DESCRIBED_FOR_SECONDS)
                if probed is not None:
                    return page_copy(probed)
            if method == "head_object" and names_a_folder(kwargs):
                return await self._head_beside_folder_page(kwargs)
        return await self._send_s3(method, *akwarglist, **kwargs)

    async def _head_beside_folder_page(self, head: dict[str, Any]) -> Any:
        """The HEAD of a path named like a folder, its folder's first page asked for beside it (while guesses hit)."""
        pages = self._folder_pages
        probe = probe_after(head)
        if pages.guesses() and not pages.asked(page_key(probe), _DESCRIBED_FOR_SECONDS):
            self._send_first_page(probe)
        try:
            answer = await self._send_s3("head_object", **head)
        except FileNotFoundError:
            pages.head_answered(object_found=False)
            raise
        pages.head_answered(object_found=True)
        return answer

    def _pages_serve_probes(self) -> bool:
        return self.dircache.use_listings_cache and not self.version_aware and not self.req_kw

    async def _first_page(self, probe: dict[str, Any]) -> Page:
        """The first page of ``probe``'s folder: one asked for moments ago (arrived or on its way), else a new one.

        A new one is shielded: if this caller is cancelled, the request goes
        on for the others who wait for it.
        """
        folder = page_key(probe)
        page = await self._folder_pages.page(folder, _DESCRIBED_FOR_SECONDS)
        if page is None:
            page = await asyncio.shield(self._send_first_page(probe))
        return page

    def _send_first_page(self, probe: dict[str, Any]) -> asyncio.Future[Page]:
        """Send for the first page of ``probe``'s folder, kept in the folder pages for whoever asks next."""
        return self._folder_pages.send(page_key(probe), functools.partial(self._list_first_page, probe))

    async def _list_first_page(self, probe: dict[str, Any]) -> Page:
        page: Page = await self._send_s3("list_objects_v2", **first_page_request(probe))
        return page

    async def _send_s3(self, method: str, *akwarglist: Any, **kwargs: Any) -> Any:
        # Count each request once, and the bytes of every body read from it. The
        # readers' requests go through object_calls, which counts them the same way.
        if method in _LEAN_FILESYSTEM_CALLS and self._lean_calls is not None:
            return await self._call_lean(self._lean_calls, method, *akwarglist, **kwargs)
        self._counter.record_request(method)
        response = await super()._call_s3(method, *akwarglist, **kwargs)
        if method == "get_object" and "Body" in response:
            response["Body"] = CountingBody(response["Body"], self._counter)
        return response

    # s3fs binds its own coroutine here (``call_s3 = sync_wrapper(_call_s3)``): bind ours, counted and lean alike.
    call_s3 = sync_wrapper(_call_s3)

    async def _call_lean(self, lean: LeanCalls, method: str, *akwarglist: Any, **kwargs: Any) -> Any:
        """A listing or a HEAD sent as s3fs would send it (its parameters, its retries), without botocore's pipeline."""
        client = await self._client_for(kwargs.get("Bucket", ""))
        request = self._get_s3_method_kwargs(getattr(client, method), *akwarglist, **kwargs)
        return await s3fs_retries(functools.partial(lean.send_once, method), kwargs=request, retries=self.retries)

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        acl: Any = False,
        version_id: str | None = None,
        fill_cache: bool | None = None,
        cache_type: str | None = None,
        autocommit: bool = True,
        size: int | None = None,
        requester_pays: bool | None = None,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        if isinstance(mode, str) and sorted(mode) == ["b", "r"]:
            mode = "rb"  # "br" is the same mode, as Python's open() reads it
        elif mode not in _WRITE_MODES:
            raise ValueError(
                f"cannot open s3://{path} in mode {mode!r}: S3 objects open for reading ('rb', or 'r' for text) "
                "or for writing a whole new object ('wb', 'ab', 'xb'); they cannot be updated in place ('+')"
            )
        if mode != "rb":
            return super()._open(
                path,
                mode=mode,
                block_size=block_size,
                acl=acl,
                version_id=version_id,
                fill_cache=fill_cache,
                cache_type=cache_type,
                autocommit=autocommit,
                size=size,
                requester_pays=requester_pays,
                cache_options=cache_options,
                **kwargs,
            )
        note_pyarrow_wrapper(self)  # pyarrow's threads may drop its wrapper last: the exit waits for that
        opened = self.open_reader(path, version_id=version_id, **kwargs)
        # the block a cache chained over this file fetches (blockcache::), as s3fs's files have it
        opened.blocksize = block_size if isinstance(block_size, int) else self.default_block_size
        return opened

    def open_reader(
        self,
        path: str,
        *,
        version_id: str | None = None,
        reader: str | ReaderConstructor | None = None,
        **kwargs: Any,
    ) -> S3Reader:
        """Open ``path`` for reading.

        ``reader`` and strategy options (``buffer_size``, ...) choose the
        strategy for this file only; any other keyword goes into every S3
        request for it, as s3fs does (e.g. ``SSECustomerKey``).
        """
        reopen = functools.partial(self.open_reader, path, version_id=version_id, reader=reader, **kwargs)
        bucket, key, path_version_id = self.split_path(path)
        if not key:
            raise IsADirectoryError(f"s3://{bucket} is a bucket, not an object; name a key inside it")
        if (version_id or "?versionId=" in str(path)) and not self.version_aware:
            # s3fs would drop a ?versionId= here and read the latest version instead
            raise ValueError(f"reading a version of {path} needs a version-aware filesystem: pass version_aware=True")
        options = {name: kwargs.pop(name) for name in _strategy_option_names() & kwargs.keys()}
        # Only when there is something to check: loading botocore's S3 model costs ~0.3 s.
        unexpected = sorted(kwargs.keys() - _object_request_parameters()) if kwargs else []
        if unexpected:
            raise TypeError(
                f"opening s3://{bucket}/{key}: unexpected keyword argument(s) {', '.join(unexpected)}; "
                f"strategy options are {', '.join(sorted(_strategy_option_names()))}, and any other keyword "
                "must be a GetObject request parameter (e.g. SSECustomerKey)"
            )
        if reader is None and not options:
            constructor = self._reader_constructor
        else:
            constructor = make_constructor(reader if reader is not None else self._reader_constructor.name, options)
        version = version_id or path_version_id
        path = f"{bucket}/{key}"
        listed = None if version else self._listed_info(path)
        # A file read from its end (a parquet footer) passes what one reader received of its end to the next
        # reader of that version (a dataset scan reads its first file's footer twice); not with request
        # parameters, which may change the answer.
        shares_tail = _read_from_end(key) and not version and not kwargs
        # A file of a listed folder: its footer is sent for before its neighbours' (it is the one read at once)
        next_files = self._fetch_footers_from(path) if shares_tail and listed is not None else []
        if shares_tail:
            self._footers_ahead.wait_for(path)
        transport = self.object_transport(
            bucket,
            key,
            version,
            request_kwargs=kwargs,
            read_from_end=_read_from_end(key),
            listed=listed,
            known_tail=self._tail_read_moments_ago(path, listed) if shares_tail else None,
            on_tail=functools.partial(self._recent_tails.put, path) if shares_tail else None,
        )
        logger.debug("opening s3://%s/%s with the %s reader", bucket, key, getattr(constructor, "name", "?"))
        opened = constructor(bucket, key, transport.get_object_info, transport.get_stream)
        # once the reader has joined its folder (nothing is kept for a folder with no reader open), and only
        # from a far server: from a near one the next files' chunks would slow the reads waited for now
        if next_files and is_far(self._link_estimate.sample()):
            announce_next_files(
                folder_of(bucket, key), [self._listed_parquet_file(name, listed) for name, listed in next_files]
            )
        opened.bind_to_filesystem(self._counter.record_delivered, reopen, self._counter.record_held_ahead)
        return opened
