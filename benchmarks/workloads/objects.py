"""Workloads on plain objects: a large one read whole, the same one read at random offsets, many small ones."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fsspec_s3reader import S3ReaderFileSystem, TransferStats

from ..clients import obstore_store, ours, plain_s3fs, s3tc_client
from ..config import KIB, Context, Endpoint, Sizes
from ..counting import RequestCounter
from ..floors import NetworkFloorTrial, Piece, plan_pieces
from ..trial import Build, Contender, Trial, Workload, WrongDataError


@functools.lru_cache(maxsize=1)
def object_data(sizes: Sizes, seed: int) -> bytes:
    """The large object's bytes: random, so no layer can compress or deduplicate them."""
    return np.random.default_rng(seed).bytes(sizes.object_bytes)


def random_offsets(ctx: Context, endpoint: Endpoint) -> list[int]:
    """Where the small reads start; the same for every contender and every run (through the link, the first few)."""
    rng = np.random.default_rng(ctx.seed + 1)
    last_start = ctx.sizes.object_bytes - ctx.sizes.random_read_bytes
    offsets = rng.integers(0, last_start + 1, ctx.sizes.random_reads)
    return [int(offset) for offset in offsets[: ctx.random_reads_on(endpoint)]]


@functools.lru_cache(maxsize=1)
def small_objects_data(sizes: Sizes, seed: int) -> bytes:
    """All the small objects' bytes end to end; object ``i`` is the ``i``-th slice of ``small_object_bytes``."""
    return np.random.default_rng(seed + 3).bytes(sizes.small_objects * sizes.small_object_bytes)


def small_object_paths(ctx: Context, endpoint: Endpoint) -> list[str]:
    """The objects read on ``endpoint``: all of them on loopback, the first ``small_objects_link`` through the link."""
    return [f"{ctx.small_objects_prefix}/{index:05d}.bin" for index in range(ctx.small_objects_on(endpoint))]


def small_objects_expected(ctx: Context, endpoint: Endpoint) -> list[bytes]:
    data, size = small_objects_data(ctx.sizes, ctx.seed), ctx.sizes.small_object_bytes
    return [data[index * size : (index + 1) * size] for index in range(ctx.small_objects_on(endpoint))]


def _store_object(ctx: Context, fs: Any) -> None:
    if not fs.exists(ctx.object_path):
        fs.pipe_file(ctx.object_path, object_data(ctx.sizes, ctx.seed))


def _prepare_full_read(ctx: Context, endpoint: Endpoint, fs: Any) -> int:
    _store_object(ctx, fs)
    return ctx.sizes.object_bytes


def _prepare_random_reads(ctx: Context, endpoint: Endpoint, fs: Any) -> int:
    _store_object(ctx, fs)
    return ctx.sizes.random_reads * ctx.sizes.random_read_bytes


def _prepare_small_objects(ctx: Context, endpoint: Endpoint, fs: Any) -> int:
    data, size = small_objects_data(ctx.sizes, ctx.seed), ctx.sizes.small_object_bytes
    paths = [f"{ctx.small_objects_prefix}/{index:05d}.bin" for index in range(ctx.sizes.small_objects)]
    if not fs.exists(paths[-1]):
        fs.pipe({path: data[index * size : (index + 1) * size] for index, path in enumerate(paths)})
    return ctx.sizes.small_objects * size


def _bucket_and_key(path: str) -> tuple[str, str]:
    bucket, _, key = path.partition("/")
    return bucket, key


class ReadTrial(Trial):
    """A read whose result must equal ``expected`` exactly; ``fs`` is given when it keeps ``fs.stats``."""

    def __init__(
        self,
        read: Callable[[], Any],
        expected: Any,
        what: str,
        counter: RequestCounter | None = None,
        fs: Any = None,
    ) -> None:
        super().__init__(counter)
        self._read = read
        self._expected = expected
        self._what = what
        self._fs = fs

    def run(self) -> Any:
        return self._read()

    def verify(self, result: Any) -> None:
        # obstore returns its own buffer type, which compares equal to bytes with the same content.
        if result != self._expected:
            raise WrongDataError(f"{self._what}: the bytes read differ from the bytes stored")

    def own_stats(self) -> TransferStats | None:
        return self._fs.stats if isinstance(self._fs, S3ReaderFileSystem) else None


Read = Callable[[Any, Context, Endpoint], Any]
"""What a contender does in one run, given its client (a filesystem, an s3tc ``S3Client`` or an obstore store)
and the endpoint (which decides how many small objects are read)."""


@dataclass(frozen=True)
class Reads:
    """Builds a workload's contenders: each reads with its own client, and must return ``expected(ctx, endpoint)``."""

    what: str
    expected: Callable[[Context, Endpoint], Any]
    floor_pieces: Callable[[Context, Endpoint], list[Piece]]
    """The network floor's GETs: exactly what ``expected`` holds, in that order."""

    def s3fs(self, read: Read, **options: Any) -> Build:
        """s3fs with ``options`` (defaults otherwise), counted on the client side too."""
        return self._build(lambda ctx, endpoint: plain_s3fs(endpoint, **options), read)

    def ours(self, read: Read, **options: Any) -> Build:
        """Our filesystem; ``options`` pick the strategy (``reader="range_based", buffer_size=0``)."""
        return self._build(lambda ctx, endpoint: ours(endpoint, **options), read)

    def s3tc(self, read: Read) -> Build:
        return self._build(lambda ctx, endpoint: (s3tc_client(endpoint), None), read)

    def obstore(self, read: Read) -> Build:
        return self._build(lambda ctx, endpoint: (obstore_store(endpoint, ctx.bucket), None), read)

    def network_floor(self) -> Build:
        """boto3 on 8 threads fetching exactly the expected bytes, ``FLOOR_PIECE`` at most per GET."""

        def build(ctx: Context, endpoint: Endpoint) -> Trial:
            expected = self.expected(ctx, endpoint)
            pieces = self.floor_pieces(ctx, endpoint)
            check = _check_in_order(b"".join(expected) if isinstance(expected, list) else expected, self.what)
            return NetworkFloorTrial(endpoint, ctx.bucket, pieces, check)

        return build

    def _build(self, connect: Callable[[Context, Endpoint], tuple[Any, RequestCounter | None]], read: Read) -> Build:
        def build(ctx: Context, endpoint: Endpoint) -> Trial:
            client, counter = connect(ctx, endpoint)
            expected = self.expected(ctx, endpoint)
            return ReadTrial(lambda: read(client, ctx, endpoint), expected, self.what, counter, client)

        return build


def _check_in_order(expected: bytes, what: str) -> Callable[[Any, list[bytes]], None]:
    """The floor's pieces, one after another, must be the expected bytes end to end."""

    def check(pieces: Any, fetched: list[bytes]) -> None:
        view, position = memoryview(expected), 0
        for data in fetched:
            if view[position : position + len(data)] != data:
                raise WrongDataError(f"the network floor's {what}: the bytes fetched differ from the bytes stored")
            position += len(data)
        if position != len(expected):
            raise WrongDataError(f"the network floor's {what}: {position} bytes fetched, {len(expected)} stored")

    return check


def _s3tc_reader(name: str, *options: Any) -> Any:
    from s3torchconnector import S3ReaderConstructor

    factory: Callable[..., Any] = getattr(S3ReaderConstructor, name)
    return factory(*options)


# -- the large object, read whole ----------------------------------------------------------


def _whole_object(ctx: Context, endpoint: Endpoint) -> bytes:
    return object_data(ctx.sizes, ctx.seed)


def _whole_object_pieces(ctx: Context, endpoint: Endpoint) -> list[Piece]:
    _, key = _bucket_and_key(ctx.object_path)
    return plan_pieces([(key, 0, ctx.sizes.object_bytes)])


def _open_and_read(fs: Any, ctx: Context, endpoint: Endpoint) -> bytes:
    with fs.open(ctx.object_path, "rb") as f:
        data: bytes = f.read()
    return data


def _cat_file(fs: Any, ctx: Context, endpoint: Endpoint) -> bytes:
    data: bytes = fs.cat_file(ctx.object_path)
    return data


def _s3tc_full_read(client: Any, ctx: Context, endpoint: Endpoint) -> bytes:
    bucket, key = _bucket_and_key(ctx.object_path)
    with client.get_object(bucket, key, reader_constructor=_s3tc_reader("sequential")) as reader:
        data: bytes = reader.read()
    return data


_FULL = Reads("full read of the large object", _whole_object, _whole_object_pieces)

FULL_READ = Workload(
    key="full_read",
    title="Sequential read of one large object",
    what="read every byte of one object, from its start to its end",
    contenders=(
        Contender("s3fs-open", "peer", "s3fs `open().read()`", _FULL.s3fs(_open_and_read)),
        Contender("s3fs-cat", "peer", "s3fs `cat_file`", _FULL.s3fs(_cat_file)),
        Contender("s3tc-sequential", "peer", "s3tc `sequential()`", _FULL.s3tc(_s3tc_full_read)),
        Contender("adaptive", "ours", "ours `adaptive` (default)", _FULL.ours(_open_and_read), as_shipped=True),
        Contender("sequential", "ours", "ours `sequential`", _FULL.ours(_open_and_read, reader="sequential")),
        Contender("range_based", "ours", "ours `range_based`", _FULL.ours(_open_and_read, reader="range_based")),
        Contender(
            "network-floor", "network-floor", "boto3, ranges of at most 16 MiB, 8 threads", _FULL.network_floor()
        ),
    ),
    notes=(
        "Every contender must fetch the object once, so the bytes are equal by construction; what differs is how. "
        "s3fs `open().read()` sends one GET and reads its body on one connection: through the link, one connection's "
        "bandwidth. s3fs `cat_file` fetches 50 MiB ranges concurrently and joins them. Ours fetch 8 MiB ranged GETs,"
        " up to 8 in flight (`part_size`, `max_parts_in_flight`), and copy the received pieces once, into the bytes "
        "`read()` returns. s3tc's native client (the CRT) splits the GET into 8 MiB parts fetched in parallel. The "
        "network floor fetches ranges of at most 16 MiB on 8 connections and leaves them unjoined."
    ),
    prepare=_prepare_full_read,
)


# -- the large object, small reads at random offsets -----------------------------------------


def _random_pieces(ctx: Context, endpoint: Endpoint) -> list[bytes]:
    data, length = object_data(ctx.sizes, ctx.seed), ctx.sizes.random_read_bytes
    return [data[offset : offset + length] for offset in random_offsets(ctx, endpoint)]


def _random_floor_pieces(ctx: Context, endpoint: Endpoint) -> list[Piece]:
    _, key = _bucket_and_key(ctx.object_path)
    length = ctx.sizes.random_read_bytes
    # Not merged: the reads stay separate requests even where two happen to touch, as the readers send them.
    return [(key, offset, offset + length) for offset in random_offsets(ctx, endpoint)]


def _read_at_offsets(f: Any, ctx: Context, endpoint: Endpoint) -> list[bytes]:
    pieces = []
    for offset in random_offsets(ctx, endpoint):
        f.seek(offset)
        pieces.append(f.read(ctx.sizes.random_read_bytes))
    return pieces


def _random_reads(**open_options: Any) -> Read:
    def read(fs: Any, ctx: Context, endpoint: Endpoint) -> list[bytes]:
        with fs.open(ctx.object_path, "rb", **open_options) as f:
            return _read_at_offsets(f, ctx, endpoint)

    return read


def _s3tc_random_reads(buffer_size: int | None = None) -> Read:
    def read(client: Any, ctx: Context, endpoint: Endpoint) -> list[bytes]:
        bucket, key = _bucket_and_key(ctx.object_path)
        with client.get_object(bucket, key, reader_constructor=_s3tc_reader("range_based", buffer_size)) as f:
            return _read_at_offsets(f, ctx, endpoint)

    return read


def _obstore_random_reads(store: Any, ctx: Context, endpoint: Endpoint) -> list[Any]:
    import obstore

    _, key = _bucket_and_key(ctx.object_path)
    length = ctx.sizes.random_read_bytes
    return [obstore.get_range(store, key, start=offset, length=length) for offset in random_offsets(ctx, endpoint)]


_RANDOM = Reads("small reads at random offsets", _random_pieces, _random_floor_pieces)


def _random_ours(**options: Any) -> Build:
    return _RANDOM.ours(_random_reads(), reader="range_based", **options)


NOT_ON_LINK = 0
"""``link_runs`` of a reader that fetches a block per random read: gigabytes at one connection's bandwidth."""

BUFFER_PER_READ_RUNS = 1
"""Measured runs of a reader that fills an 8 MiB buffer per 4 KiB read: 1.5 GB a run, and the same every run."""

RANDOM_READS = Workload(
    key="random_reads",
    title="Small reads at random offsets",
    what="seek to random offsets of the large object and read a few KiB at each, through one open file",
    contenders=(
        # Each of its misses fetches a 50 MiB block: one measured run is all the time budget allows.
        Contender(
            "s3fs-open",
            "peer",
            "s3fs `open()` (defaults: 50 MiB read-ahead)",
            _RANDOM.s3fs(_random_reads()),
            1,
            link_runs=NOT_ON_LINK,
        ),
        Contender(
            "s3fs-none", "peer", 's3fs `open(cache_type="none")`', _RANDOM.s3fs(_random_reads(cache_type="none"))
        ),
        Contender(
            "s3fs-64k", "peer", "s3fs `open(block_size=64 KiB)`", _RANDOM.s3fs(_random_reads(block_size=64 * KIB))
        ),
        Contender(
            "s3tc-range",
            "peer",
            "s3tc `range_based()` (8 MiB buffer)",
            _RANDOM.s3tc(_s3tc_random_reads()),
            BUFFER_PER_READ_RUNS,
            link_runs=NOT_ON_LINK,
        ),
        Contender("s3tc-range-0", "peer", "s3tc `range_based(buffer_size=0)`", _RANDOM.s3tc(_s3tc_random_reads(0))),
        Contender("obstore", "peer", "obstore `get_range` each", _RANDOM.obstore(_obstore_random_reads)),
        Contender("adaptive", "ours", "ours `adaptive` (default)", _RANDOM.ours(_random_reads()), as_shipped=True),
        Contender(
            "range_based",
            "ours",
            "ours `range_based` (8 MiB buffer)",
            _random_ours(),
            BUFFER_PER_READ_RUNS,
            link_runs=NOT_ON_LINK,
        ),
        Contender("range_based-0", "ours", "ours `range_based(buffer_size=0)`", _random_ours(buffer_size=0)),
        Contender(
            "range_based-64k", "ours", "ours `range_based(buffer_size=64 KiB)`", _random_ours(buffer_size=64 * KIB)
        ),
        Contender("network-floor", "network-floor", "boto3, exact ranges, 8 threads", _RANDOM.network_floor()),
    ),
    notes=(
        "The bytes needed are the reads themselves; everything above that is read-ahead that random access throws "
        "away. A read-ahead cache (s3fs's default, 50 MiB past each miss) or a read buffer (ours and s3tc's "
        "`range_based`: a read smaller than `buffer_size`, 8 MiB by default, fills the whole buffer) fetches a block"
        " per miss, so its cost scales with the block, not with the read; through the link those rows would take "
        "minutes and are timed on loopback only. Without a buffer (or with one not much bigger than a read) each "
        "read is one ranged GET of what it asks for, one after another: the time is then the request count times "
        "one request's cost, which on loopback is mostly the client's CPU per request (the *CPU ms / request* "
        "column) and through the link mostly the round trip. obstore's `get_range` is one GET per call from Rust. "
        "The network floor knows every offset up front and sends 8 at a time, which a file read through "
        "`seek`/`read` cannot."
    ),
    prepare=_prepare_random_reads,
    per_request_cpu=True,
)


# -- many small objects -------------------------------------------------------------------


def _small_floor_pieces(ctx: Context, endpoint: Endpoint) -> list[Piece]:
    return [(_bucket_and_key(path)[1], None, None) for path in small_object_paths(ctx, endpoint)]


def _cat_each(fs: Any, ctx: Context, endpoint: Endpoint) -> list[bytes]:
    return [fs.cat_file(path) for path in small_object_paths(ctx, endpoint)]


def _cat_batched(fs: Any, ctx: Context, endpoint: Endpoint) -> list[bytes]:
    paths = small_object_paths(ctx, endpoint)
    found: dict[str, bytes] = fs.cat(paths)
    return [found[path] for path in paths]


def _open_read_each(fs: Any, ctx: Context, endpoint: Endpoint) -> list[bytes]:
    pieces = []
    for path in small_object_paths(ctx, endpoint):
        with fs.open(path, "rb") as f:
            pieces.append(f.read())
    return pieces


def _s3tc_each(client: Any, ctx: Context, endpoint: Endpoint) -> list[bytes]:
    pieces = []
    for path in small_object_paths(ctx, endpoint):
        with client.get_object(*_bucket_and_key(path)) as reader:
            pieces.append(reader.read())
    return pieces


def _obstore_each(store: Any, ctx: Context, endpoint: Endpoint) -> list[Any]:
    import obstore

    return [obstore.get(store, _bucket_and_key(path)[1]).bytes() for path in small_object_paths(ctx, endpoint)]


def _obstore_concurrent(store: Any, ctx: Context, endpoint: Endpoint) -> list[Any]:
    """Every GET in flight at once through obstore's async API, on a new event loop per run."""
    import obstore

    async def one(key: str) -> Any:
        response = await obstore.get_async(store, key)
        return await response.bytes_async()

    async def every() -> list[Any]:
        return list(await asyncio.gather(*(one(_bucket_and_key(p)[1]) for p in small_object_paths(ctx, endpoint))))

    return asyncio.run(every())


_SMALL = Reads("many small objects", small_objects_expected, _small_floor_pieces)

SMALL_OBJECTS = Workload(
    key="small_objects",
    title="Many small objects",
    what="read many small objects whole, each by its name",
    contenders=(
        Contender("s3fs-cat_file", "peer", "s3fs `cat_file` each", _SMALL.s3fs(_cat_each)),
        Contender("s3fs-open", "peer", "s3fs `open().read()` each", _SMALL.s3fs(_open_read_each)),
        Contender("s3fs-cat", "peer", "s3fs `cat(list)`", _SMALL.s3fs(_cat_batched)),
        Contender("s3tc-each", "peer", "s3tc `get_object().read()` each", _SMALL.s3tc(_s3tc_each)),
        Contender("obstore-each", "peer", "obstore `get().bytes()` each", _SMALL.obstore(_obstore_each)),
        Contender(
            "obstore-async",
            "peer",
            "obstore `get_async` all at once (`asyncio.gather`)",
            _SMALL.obstore(_obstore_concurrent),
        ),
        Contender(
            "adaptive",
            "ours",
            "ours `open().read()` each (default `adaptive`)",
            _SMALL.ours(_open_read_each),
            as_shipped=True,
        ),
        Contender(
            "first-get",
            "ours",
            "ours `open().read()` each, `first_get_size=64 KiB`",
            _SMALL.ours(_open_read_each, first_get_size=64 * KIB),
        ),
        Contender("cat", "ours", "ours `cat(list)`", _SMALL.ours(_cat_batched), as_shipped=True),
        Contender("network-floor", "network-floor", "boto3, whole-object GETs, 8 threads", _SMALL.network_floor()),
    ),
    notes=(
        "Each object costs at least one GET, so this is a test of per-request cost and of concurrency. Fewer objects "
        "are read through the link than on loopback (the sizes above), since one at a time costs a round trip each; "
        "requests, bytes and CPU per request are counted on the loopback set. One object at a time (`cat_file`, "
        "`open().read()`, s3tc `get_object`, obstore `get`) pays a round trip per object; a reader that sends a "
        "HEAD per object first (for its size) pays two. `cat(list)` sends the requests concurrently (fsspec's "
        "batches of up to 1280 coroutines); obstore's async API sends all at once; the network floor sends 8 at a "
        "time from threads. The floor is boto3 in Python: where a request's client-side CPU is most of its cost, as "
        "on loopback, a native client (s3tc's CRT, obstore's Rust) can beat it."
    ),
    prepare=_prepare_small_objects,
    per_request_cpu=True,
)

WORKLOADS = {FULL_READ.key: FULL_READ, RANDOM_READS.key: RANDOM_READS, SMALL_OBJECTS.key: SMALL_OBJECTS}
