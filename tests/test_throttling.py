"""Adaptive concurrency: requests in flight to an endpoint halve when it throttles, grow back as requests succeed.

The rules are pinned down on an :class:`AdaptiveLimiter` of its own; then a
real ``503 SlowDown`` through the fault proxy, and a storm: four processes
loading one checkpoint at once through a proxy that throttles above a request
rate (``benchmarks/throttling.py``). No test here asserts a time: the machine
is shared, and how close a storm comes to the rate's floor is the benchmark's
to report (``python -m benchmarks.run --workloads throttle``).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
from botocore.exceptions import ClientError
from dcp_states import assert_same_state, blank_like, training_state
from fault_proxy import Fault, FaultProxy
from s3fs.errors import translate_boto_error

from fsspec_s3reader import S3ReaderFileSystem, S3StorageReader
from fsspec_s3reader.local_server import LocalS3Server
from fsspec_s3reader.transport import AdaptiveLimiter, endpoint_limiter, is_throttling
from fsspec_s3reader.transport.limits import INITIAL_WINDOW, Ticket

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the throttling proxy lives with the benchmarks, beside the library
    sys.path.insert(0, str(ROOT))

from benchmarks.throttling import ThrottlingProxy  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")


def _client_error(status: int, code: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "..."}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )


async def _take(limiter: AdaptiveLimiter, count: int) -> list[Ticket]:
    return [await limiter.acquire() for _ in range(count)]


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# -- what counts as throttling ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "throttling"),
    [
        (_client_error(503, "SlowDown"), True),
        (translate_boto_error(_client_error(503, "SlowDown")), True),  # as s3fs raises it, the cause behind
        (_client_error(503, "ServiceUnavailable"), True),
        (_client_error(400, "Throttling"), True),
        (_client_error(500, "InternalError"), False),  # retried, but not a sign of too many requests
        (_client_error(404, "NoSuchKey"), False),
        (ConnectionResetError(), False),
    ],
)
def test_only_a_503_or_a_throttling_code_counts_as_throttling(error: BaseException, throttling: bool) -> None:
    assert is_throttling(error) is throttling


# -- the window ------------------------------------------------------------------------------


class Traffic:
    """More requests than the window lets through: each place freed is taken by the next request at once."""

    def __init__(self, limiter: AdaptiveLimiter) -> None:
        self.limiter = limiter
        self.held: list[Ticket] = []
        self._waiting: list[asyncio.Task[Ticket]] = []

    async def start(self) -> Traffic:
        self._waiting = [asyncio.ensure_future(self.limiter.acquire()) for _ in range(200)]
        await self._settle()
        return self

    async def answer(self, count: int, outcome: Any) -> None:
        """The ``count`` oldest requests in flight are answered with ``outcome``; waiting ones take their places."""
        answered, self.held = self.held[:count], self.held[count:]
        for ticket in answered:
            self.limiter.release(ticket, outcome)
        await self._settle()

    async def window_of_successes(self) -> int:
        await self.answer(len(self.held), "ok")
        return self.limiter.limit

    async def stop(self) -> None:
        for waiter in self._waiting:
            waiter.cancel()
        await asyncio.gather(*self._waiting, return_exceptions=True)
        await self.answer(len(self.held), None)

    async def _settle(self) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        self.held += [waiter.result() for waiter in self._waiting if waiter.done() and not waiter.cancelled()]
        self._waiting = [waiter for waiter in self._waiting if not waiter.done()]


def test_a_burst_of_throttles_from_one_window_halves_it_once() -> None:
    limiter = AdaptiveLimiter("test", ceiling=64)

    async def storm() -> None:
        traffic = await Traffic(limiter).start()
        assert len(traffic.held) == INITIAL_WINDOW
        await traffic.answer(INITIAL_WINDOW, "throttled")
        await traffic.stop()

    _run(storm())
    assert limiter.limit == INITIAL_WINDOW // 2
    assert (limiter.throttled, limiter.decreases) == (INITIAL_WINDOW, 1)
    assert limiter.in_flight == 0


def test_each_window_that_is_throttled_again_halves_it_again_but_never_below_one() -> None:
    limiter = AdaptiveLimiter("test", ceiling=64)

    async def throttled_one_at_a_time() -> list[int]:
        traffic = await Traffic(limiter).start()
        limits = []
        for _ in range(6):
            await traffic.answer(len(traffic.held), "throttled")  # every one sent after the last decrease
            limits.append(limiter.limit)
        await traffic.stop()
        return limits

    assert _run(throttled_one_at_a_time()) == [4, 2, 1, 1, 1, 1]


def test_a_throttle_halves_the_window_its_request_was_sent_under() -> None:
    limiter = AdaptiveLimiter("test", ceiling=64)

    async def slow_start_overshoots() -> None:
        traffic = await Traffic(limiter).start()
        early = traffic.held.pop(0)  # sent under the initial window, answered late
        await traffic.window_of_successes()  # slow start: the window grows meanwhile
        assert limiter.limit > INITIAL_WINDOW
        limiter.release(early, "throttled")
        await traffic.stop()

    _run(slow_start_overshoots())
    assert limiter.limit == INITIAL_WINDOW // 2


def test_successes_double_a_full_window_until_the_first_throttle_then_add_one_per_window() -> None:
    limiter = AdaptiveLimiter("test", ceiling=64)

    async def full_windows() -> tuple[list[int], int]:
        traffic = await Traffic(limiter).start()
        limits = [await traffic.window_of_successes(), await traffic.window_of_successes()]
        sent_under = int(traffic.held[0].window)
        await traffic.answer(1, "throttled")
        limits.append(limiter.limit)
        await traffic.answer(len(traffic.held), None)  # the rest of the throttled window: neither sign
        limits += [await traffic.window_of_successes(), await traffic.window_of_successes()]
        await traffic.stop()
        return limits, sent_under

    limits, sent_under = _run(full_windows())
    assert limits[:2] == [2 * INITIAL_WINDOW, 4 * INITIAL_WINDOW]
    assert limits[2:] == [sent_under // 2, sent_under // 2 + 1, sent_under // 2 + 2]


def test_successes_grow_neither_a_window_that_is_not_full_nor_past_the_ceiling() -> None:
    limiter = AdaptiveLimiter("test", ceiling=12)

    async def one_at_a_time_then_full() -> list[int]:
        for _ in range(20):  # never more than one in flight: the window is not what limits
            (ticket,) = await _take(limiter, 1)
            limiter.release(ticket, "ok")
        limits = [limiter.limit]
        traffic = await Traffic(limiter).start()
        limits += [await traffic.window_of_successes() for _ in range(3)]
        await traffic.stop()
        return limits

    assert _run(one_at_a_time_then_full()) == [INITIAL_WINDOW, 12, 12, 12]


def test_a_halved_window_lets_fewer_requests_through_until_enough_are_answered() -> None:
    limiter = AdaptiveLimiter("test", ceiling=64)

    async def queue() -> list[int]:
        traffic = await Traffic(limiter).start()
        await traffic.answer(1, "throttled")  # the window halves to 4 with 7 still out
        sizes = [len(traffic.held)]
        await traffic.answer(3, None)
        sizes.append(len(traffic.held))  # 4 out: a full window of 4
        await traffic.answer(1, None)
        sizes.append(len(traffic.held))  # one answered, one let through
        await traffic.stop()
        return sizes

    assert _run(queue()) == [7, 4, 4]


def test_a_waiter_that_gives_up_passes_its_place_on() -> None:
    limiter = AdaptiveLimiter("test", ceiling=1)

    async def cancel_one() -> None:
        (held,) = await _take(limiter, 1)
        quitter = asyncio.ensure_future(limiter.acquire())
        stayer = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)
        quitter.cancel()
        limiter.release(held, "ok")
        ticket = await asyncio.wait_for(stayer, 5)
        limiter.release(ticket, "ok")

    _run(cancel_one())
    assert limiter.in_flight == 0


def test_a_place_freed_on_one_event_loop_wakes_a_waiter_on_another() -> None:
    limiter = AdaptiveLimiter("test", ceiling=1)
    other_loop = asyncio.new_event_loop()
    thread = threading.Thread(target=other_loop.run_forever, daemon=True)
    thread.start()
    try:
        (held,) = _run(_take(limiter, 1))
        waiting = asyncio.run_coroutine_threadsafe(limiter.acquire(), other_loop)
        assert not _wait_briefly(waiting)

        async def free() -> None:
            limiter.release(held, "ok")

        _run(free())
        ticket = waiting.result(timeout=5)
        asyncio.run_coroutine_threadsafe(_release(limiter, ticket), other_loop).result(timeout=5)
    finally:
        other_loop.call_soon_threadsafe(other_loop.stop)
        thread.join(timeout=5)
    assert limiter.in_flight == 0


async def _release(limiter: AdaptiveLimiter, ticket: Ticket) -> None:
    limiter.release(ticket, "ok")


def _wait_briefly(future: Any) -> bool:
    try:
        future.result(timeout=0.2)
    except TimeoutError:
        return False
    return True


def test_a_forked_child_starts_with_nothing_in_flight_and_keeps_what_the_parent_learned() -> None:
    limiter = endpoint_limiter(f"http://fork-test-{uuid.uuid4().hex}", 64)

    async def learn() -> Ticket:
        (throttled,) = await _take(limiter, 1)
        limiter.release(throttled, "throttled")
        return (await _take(limiter, 1))[0]  # still out at the fork

    held = _run(learn())
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        ok = limiter.in_flight == 0 and limiter.limit == INITIAL_WINDOW // 2
        os.write(writer, b"ok" if ok else f"{limiter.in_flight} {limiter.limit}".encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    assert os.read(reader, 100) == b"ok"
    os.close(reader)
    _run(_release(limiter, held))


# -- the filesystem --------------------------------------------------------------------------


def test_filesystems_of_one_endpoint_share_one_limiter_unless_adaptation_is_off(storage_options: dict) -> None:
    endpoint = f"http://127.0.0.1:1/{uuid.uuid4().hex}"
    options = {**storage_options, "endpoint_url": endpoint, "skip_instance_cache": True}
    first = S3ReaderFileSystem(max_requests_in_flight=16, **options)
    second = S3ReaderFileSystem(max_requests_in_flight=32, **options)
    shared = first.object_calls.adaptive  # type: ignore[attr-defined]
    assert shared is second.object_calls.adaptive  # type: ignore[attr-defined]
    assert shared.ceiling == 32  # the larger of the two; each keeps its own limit too
    assert first.object_calls.limiter.limit == 16  # type: ignore[attr-defined]
    elsewhere = S3ReaderFileSystem(**storage_options, skip_instance_cache=True)
    assert elsewhere.object_calls.adaptive is not shared  # type: ignore[attr-defined]
    fixed = S3ReaderFileSystem(adaptive_concurrency=False, **options)
    assert fixed.object_calls.adaptive is None  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="adaptive_concurrency"):
        S3ReaderFileSystem(adaptive_concurrency="yes", **options)


def test_a_slow_down_on_a_read_is_retried_and_lowers_the_endpoints_window(
    proxied_options: dict, fault_proxy: FaultProxy, bucket: str, fs: S3ReaderFileSystem
) -> None:
    objects = {f"{bucket}/object-{index}": os.urandom(1000 + index) for index in range(6)}
    fs.pipe(objects)
    fault_proxy.add(Fault.status(503, "SlowDown"), method="GET", nth=3)
    proxied = S3ReaderFileSystem(skip_instance_cache=True, **proxied_options)
    shared = proxied.object_calls.adaptive  # type: ignore[attr-defined]
    throttled, decreases = shared.throttled, shared.decreases  # shared with earlier tests through this proxy
    assert proxied.cat(list(objects)) == objects
    assert (shared.throttled - throttled, shared.decreases - decreases) == (1, 1)
    assert shared.in_flight == 0


# -- a storm ---------------------------------------------------------------------------------

LOADERS = 4
RATE = 100.0
"""GETs and HEADs a second the proxy serves, all loaders together; the excess is answered 503 SlowDown."""
BURST = 10.0
DELAY_MS = 200.0
"""Every answer's delay: at RATE, the proxy's limit is RATE x DELAY = 20 requests in flight, all loaders together
(S3's 5,500 GET/s at 30 ms is 165), so the loaders' windows, not only how fast they send, decide how much they ask."""


@pytest.fixture(scope="module")
def throttling_proxy(s3_server: LocalS3Server) -> Iterator[ThrottlingProxy]:
    port = int(s3_server.endpoint_url.rsplit(":", 1)[1])
    with ThrottlingProxy(port, rate=RATE, burst=BURST, delay_ms=DELAY_MS) as proxy:
        yield proxy


def _load_in_child(uri: str, options: dict[str, Any], state: Any, start: Any, results: Any) -> None:
    torch.set_num_threads(1)  # the parent's intra-op threads are not in the child (as DataLoader workers do)
    try:
        reader = S3StorageReader(uri, part_size=4096, max_gap_size=0, **options)
        target = blank_like(state)
        start.wait()
        dcp.load(target, storage_reader=reader)
        assert_same_state(target, state)
        results.put("ok")
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.timeout(240)
def test_four_processes_loading_one_checkpoint_through_a_throttling_endpoint_load_it_exactly_and_rarely_throttled(
    storage_options: dict, fs: S3ReaderFileSystem, throttling_proxy: ThrottlingProxy
) -> None:
    bucket = f"storm-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    state = training_state(seed=5, width=1024)  # ~140 GETs per load with 4 KiB parts
    uri = f"s3://{bucket}/checkpoint"
    dcp.save(state, checkpoint_id=uri, storage_writer=_writer(uri, storage_options))
    options = {**storage_options, "endpoint_url": throttling_proxy.endpoint_url}
    options.update(read_attempts=20, retry_backoff=0.05)
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(LOADERS + 1), context.SimpleQueue()
    loaders = [
        context.Process(target=_load_in_child, args=(uri, options, state, start, results)) for _ in range(LOADERS)
    ]
    for loader in loaders:
        loader.start()
    throttling_proxy.reset()
    start.wait(timeout=60)
    for loader in loaders:
        loader.join(timeout=180)
    outcomes = [results.get() for _ in loaders if not results.empty()]
    assert outcomes == ["ok"] * LOADERS
    counts = throttling_proxy.counts()
    assert counts.throttled > 0, f"the storm never reached {RATE:.0f} requests/s: it tested nothing ({counts})"
    # Four processes, each with a window of its own that grows until the endpoint throttles it: 16-21% of the
    # requests are answered 503 (measured over eight runs; a busy machine shifts the timing), never a majority.
    assert counts.throttled_share < 0.25, counts


def _writer(uri: str, options: dict[str, Any]) -> Any:
    from fsspec_s3reader import S3StorageWriter

    return S3StorageWriter(uri, thread_count=2, **options)
