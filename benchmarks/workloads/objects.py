"""Workloads 1 and 2 on one large random object: read it whole, and read small pieces at random offsets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fsspec_s3reader import S3ReaderFileSystem, TransferStats

from ..config import KIB, MIB, Context
from ..filesystems import ours, plain_s3fs
from ..trial import Contender, Trial, Workload, WrongDataError

Opener = Callable[[Any, str], Any]
"""Opens a path for reading on a filesystem; how a contender chooses its cache or strategy."""


def object_data(ctx: Context) -> bytes:
    """The object's bytes: random, so no layer can compress or deduplicate them."""
    return np.random.default_rng(ctx.seed).bytes(ctx.sizes.object_bytes)


def random_offsets(ctx: Context) -> list[int]:
    """Where the small reads start; the same for every contender and every run."""
    rng = np.random.default_rng(ctx.seed + 1)
    last_start = ctx.sizes.object_bytes - ctx.sizes.random_read_bytes
    return [int(offset) for offset in rng.integers(0, last_start + 1, ctx.sizes.random_reads)]


def _store_object(ctx: Context, fs: Any) -> None:
    if not fs.exists(ctx.object_path):
        fs.pipe_file(ctx.object_path, object_data(ctx))


def _prepare_full_read(ctx: Context, fs: Any) -> int:
    _store_object(ctx, fs)
    return ctx.sizes.object_bytes


def _prepare_random_reads(ctx: Context, fs: Any) -> int:
    _store_object(ctx, fs)
    return ctx.sizes.random_reads * ctx.sizes.random_read_bytes


def _own_stats(fs: Any) -> TransferStats | None:
    return fs.stats if isinstance(fs, S3ReaderFileSystem) else None


# -- workload 1: the whole object ---------------------------------------------------------


class FullReadTrial(Trial):
    def __init__(self, ctx: Context, fs: Any, counter: Any, read: Callable[[Any, str], bytes]) -> None:
        super().__init__(counter)
        self._fs = fs
        self._path = ctx.object_path
        self._read = read
        self._expected = object_data(ctx)

    def run(self) -> bytes:
        return self._read(self._fs, self._path)

    def verify(self, result: bytes) -> None:
        if result != self._expected:
            raise WrongDataError(f"full read of {self._path} returned {len(result)} bytes that differ from the object")

    def own_stats(self) -> TransferStats | None:
        return _own_stats(self._fs)


def _open_and_read(fs: Any, path: str) -> bytes:
    with fs.open(path, "rb") as f:
        data: bytes = f.read()
    return data


def _cat_file(fs: Any, path: str) -> bytes:
    data: bytes = fs.cat_file(path)
    return data


def _full_read_s3fs(read: Callable[[Any, str], bytes]) -> Callable[[Context], Trial]:
    def build(ctx: Context) -> Trial:
        fs, counter = plain_s3fs(ctx)
        return FullReadTrial(ctx, fs, counter, read)

    return build


def _full_read_ours(**options: Any) -> Callable[[Context], Trial]:
    def build(ctx: Context) -> Trial:
        fs, counter = ours(ctx, **options)
        return FullReadTrial(ctx, fs, counter, _open_and_read)

    return build


FULL_READ = Workload(
    key="full_read",
    title="Full read of one large object",
    what="read every byte of one object",
    baseline="s3fs-open",
    contenders=(
        Contender("s3fs-open", "s3fs `open().read()` (defaults)", _full_read_s3fs(_open_and_read)),
        Contender("s3fs-cat", "s3fs `cat_file`", _full_read_s3fs(_cat_file)),
        Contender("sequential", "ours `sequential`", _full_read_ours(reader="sequential")),
        Contender("range_based", "ours `range_based` (8 MiB buffer)", _full_read_ours(reader="range_based")),
        Contender(
            "sequential-one-get",
            "ours `sequential`, `part_size=1 GiB` (one GET)",
            _full_read_ours(reader="sequential", part_size=1024 * MIB),
        ),
    ),
    notes=(
        "Every contender must fetch the object once, so the bytes are equal by construction; what differs is how. s3fs"
        " `open().read()` sends one GET and reads its body on one connection. s3fs `cat_file` fetches 50 MiB ranges "
        "concurrently (`_cat_file_concurrent`) and joins them. Ours fetch 8 MiB ranged GETs, up to 8 in flight "
        "(`part_size`, `max_parts_in_flight`): against real S3 that multiplies what one connection delivers; here each"
        " extra request costs server CPU the client has to wait for, so one large GET wins; the one-GET row shows "
        "what is left of the difference when ours sends a single request too. Both of our readers keep the pieces "
        "the HTTP client received and copy them once, into the bytes `read()` returns."
    ),
    prepare=_prepare_full_read,
)


# -- workload 2: small reads at random offsets ----------------------------------------


class RandomReadsTrial(Trial):
    def __init__(self, ctx: Context, fs: Any, counter: Any, open_file: Opener) -> None:
        super().__init__(counter)
        self._fs = fs
        self._path = ctx.object_path
        self._open = open_file
        self._offsets = random_offsets(ctx)
        self._length = ctx.sizes.random_read_bytes
        self._expected = object_data(ctx)

    def run(self) -> list[bytes]:
        pieces = []
        with self._open(self._fs, self._path) as f:
            for offset in self._offsets:
                f.seek(offset)
                pieces.append(f.read(self._length))
        return pieces

    def verify(self, result: list[bytes]) -> None:
        for offset, piece in zip(self._offsets, result, strict=True):
            if piece != self._expected[offset : offset + self._length]:
                raise WrongDataError(f"{len(piece)} bytes read at offset {offset} of {self._path} are wrong")

    def own_stats(self) -> TransferStats | None:
        return _own_stats(self._fs)


def _open_with(**open_options: Any) -> Opener:
    def open_file(fs: Any, path: str) -> Any:
        return fs.open(path, "rb", **open_options)

    return open_file


def _random_reads_s3fs(**open_options: Any) -> Callable[[Context], Trial]:
    def build(ctx: Context) -> Trial:
        fs, counter = plain_s3fs(ctx)
        return RandomReadsTrial(ctx, fs, counter, _open_with(**open_options))

    return build


def _random_reads_ours(**options: Any) -> Callable[[Context], Trial]:
    def build(ctx: Context) -> Trial:
        fs, counter = ours(ctx, reader="range_based", **options)
        return RandomReadsTrial(ctx, fs, counter, _open_with())

    return build


RANDOM_READS = Workload(
    key="random_reads",
    title="Small reads at random offsets",
    what="seek to random offsets of the same object and read a few KiB at each, through one open file",
    baseline="s3fs-open",
    contenders=(
        # Each of its misses fetches a 50 MiB block: one measured run is all the time budget allows.
        Contender("s3fs-open", "s3fs `open()` (defaults: readahead, 50 MiB blocks)", _random_reads_s3fs(), 1),
        Contender("s3fs-none", 's3fs `open(cache_type="none")`', _random_reads_s3fs(cache_type="none")),
        Contender("s3fs-64k", "s3fs `open(block_size=64 KiB)`", _random_reads_s3fs(block_size=64 * KIB)),
        Contender("range_based", "ours `range_based` (8 MiB buffer)", _random_reads_ours()),
        Contender("range_based-0", "ours `range_based(buffer_size=0)`", _random_reads_ours(buffer_size=0)),
        Contender(
            "range_based-64k", "ours `range_based(buffer_size=64 KiB)`", _random_reads_ours(buffer_size=64 * KIB)
        ),
    ),
    notes=(
        "The bytes needed are the reads themselves; everything above that is read-ahead that random access throws "
        "away. A read-ahead cache (s3fs's default, 50 MiB past each miss) or a read buffer (ours: a read smaller than "
        "`buffer_size`, 8 MiB by default, fills the whole buffer) fetches a block per miss, so its cost scales with "
        "the block, not with the read. Without a buffer (or with one not much bigger than a read) each read is one "
        "ranged GET of about what it asks for. With request counts about equal, the time here follows the bytes "
        "fetched. On real S3 each request would cost tens of milliseconds of waiting rather than milliseconds of CPU, "
        "the same for every contender that sends one per read."
    ),
    prepare=_prepare_random_reads,
)

WORKLOADS = {FULL_READ.key: FULL_READ, RANDOM_READS.key: RANDOM_READS}
