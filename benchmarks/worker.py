"""One contender of one workload in a process of its own: built once, then run on the driver's command.

Why a process per contender: peak memory is then that contender's alone
(no heap left warm by another), and no filesystem, thread pool or import of
another contender is in the way. The driver keeps all of a workload's workers
alive and asks them for runs in turn, so slow drift on the machine is shared.

Protocol, one JSON object per line: the driver writes the context, then
``build ENDPOINT``, ``run ENDPOINT``, ``fresh ENDPOINT`` or ``quit`` lines; the
worker answers ``{"ready": ...}`` once and one ``{"built": ...}``,
``{"result": ...}``, ``{"fresh": ...}`` or ``{"error": ...}`` per command. The
driver builds the trial for an endpoint before its first run there, outside
the clock and outside the counting server's count. ``fresh`` is one run in a
worker that has run nothing else (``measure_fresh``), for its memory.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import sys
import time
import traceback
from typing import IO, Any

from .config import Context
from .measure import FreshMemory, RunResult, measure, measure_fresh
from .servers import read_counts
from .trial import Trial
from .workloads import get_workload


def _protocol_channel() -> IO[str]:
    """Our stdout for the protocol alone; anything a library prints goes to stderr instead."""
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return channel


def _send(channel: IO[str], message: dict[str, Any]) -> None:
    channel.write(json.dumps(message) + "\n")
    channel.flush()


class ContenderTrials:
    """One contender's trials in this process, one per endpoint, each built when first run."""

    def __init__(self, workload_key: str, contender_key: str, ctx: Context) -> None:
        self._contender = get_workload(workload_key).contender(contender_key)
        self._ctx = ctx
        self._trials: dict[str, Trial] = {}

    def build(self, endpoint_name: str) -> Trial:
        trial = self._trials.get(endpoint_name)
        if trial is None:
            trial = self._contender.build(self._ctx, self._ctx.endpoint(endpoint_name))
            self._trials[endpoint_name] = trial
            # Everything alive now (modules, the expected data, the trial) lives to the end: exempt it from
            # garbage collection, so that the collection before each run scans only what runs left behind.
            gc.freeze()
        return trial

    def run(self, endpoint_name: str) -> RunResult:
        endpoint = self._ctx.endpoint(endpoint_name)
        counts = functools.partial(read_counts, endpoint.url) if endpoint.counted else None
        return measure(self.build(endpoint_name), endpoint_name, counts)

    def fresh(self, endpoint_name: str) -> FreshMemory:
        if self._trials:
            raise RuntimeError("a fresh-process run must be the worker's first and only run")
        return measure_fresh(self.build(endpoint_name))


def serve(workload_key: str, contender_key: str) -> int:
    channel = _protocol_channel()
    try:
        ctx = Context.from_json(sys.stdin.readline())
        started = time.perf_counter()
        trials = ContenderTrials(workload_key, contender_key, ctx)
        _send(channel, {"ready": True, "setup_seconds": time.perf_counter() - started})
        for command in sys.stdin:
            words = command.split()
            if words == ["quit"]:
                return 0
            if len(words) != 2 or words[0] not in ("build", "run", "fresh"):
                raise ValueError(
                    f"the worker understands 'build|run|fresh ENDPOINT' and 'quit', not {command.strip()!r}"
                )
            verb, endpoint = words
            if verb == "build":
                trials.build(endpoint)
                _send(channel, {"built": True})
            elif verb == "run":
                _send(channel, {"result": trials.run(endpoint).to_dict()})
            else:
                _send(channel, {"fresh": trials.fresh(endpoint).to_dict()})
    except Exception as exc:
        _send(channel, {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], sys.argv[2]))
