"""Ways to drive a contender's trial: in a worker process of its own (the default) or in this process."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any, Protocol

from .config import Context
from .measure import FreshMemory, RunResult
from .processes import die_with_parent
from .worker import ContenderTrials

REPO_ROOT = Path(__file__).resolve().parent.parent


class BenchmarkFailed(RuntimeError):
    """A contender crashed or read wrong data: no table may be written from this run."""


class Runner(Protocol):
    measures_memory: bool
    """Whether ``RunResult.peak_rss_growth`` is this contender's alone."""

    def wait_ready(self) -> None: ...

    def build(self, endpoint: str) -> None:
        """Build the trial for ``endpoint`` (outside the clock and the count); a no-op once built."""

    def run(self, endpoint: str) -> RunResult: ...

    def fresh(self, endpoint: str) -> FreshMemory:
        """One run in a worker that has run nothing else, for its memory (worker processes only)."""

    def close(self) -> None: ...


class InProcessRunner:
    """Runs the trial here: fast to start, but memory peaks are then shared with every earlier contender."""

    measures_memory = False

    def __init__(self, workload_key: str, contender_key: str, ctx: Context) -> None:
        self._name = f"{workload_key}/{contender_key}"
        self._trials = ContenderTrials(workload_key, contender_key, ctx)

    def wait_ready(self) -> None:
        """Nothing to wait for: each trial is built on its first run."""

    def build(self, endpoint: str) -> None:
        try:
            self._trials.build(endpoint)
        except Exception as exc:
            raise BenchmarkFailed(f"{self._name} on {endpoint}: {type(exc).__name__}: {exc}") from exc

    def run(self, endpoint: str) -> RunResult:
        try:
            return self._trials.run(endpoint)
        except Exception as exc:
            raise BenchmarkFailed(f"{self._name} on {endpoint}: {type(exc).__name__}: {exc}") from exc

    def fresh(self, endpoint: str) -> FreshMemory:
        raise BenchmarkFailed(f"{self._name}: a fresh-process memory run needs a worker process (--isolate)")

    def close(self) -> None:
        del self._trials


class WorkerProcessRunner:
    """Runs the trial in ``python -m benchmarks.worker``; starts at once, ``wait_ready`` waits for its setup."""

    measures_memory = True

    def __init__(self, workload_key: str, contender_key: str, ctx: Context) -> None:
        self._name = f"{workload_key}/{contender_key}"
        # Not a pipe: a chatty worker could fill it and block. Closed in close().
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", workload_key, contender_key],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            # A worker must not outlive a driver that was killed (it would hold its memory for nothing).
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
        self._send(ctx.to_json())

    def wait_ready(self) -> None:
        self._receive("ready")

    def build(self, endpoint: str) -> None:
        self._send(f"build {endpoint}")
        self._receive("built")

    def run(self, endpoint: str) -> RunResult:
        self._send(f"run {endpoint}")
        return RunResult.from_dict(self._receive("result"))

    def fresh(self, endpoint: str) -> FreshMemory:
        self._send(f"fresh {endpoint}")
        return FreshMemory.from_dict(self._receive("fresh"))

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self._send("quit")
                self._process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
        self._stderr.close()

    def _send(self, line: str) -> None:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            raise self._failure("the worker exited") from None

    def _receive(self, key: str) -> Any:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise self._failure("the worker exited without answering")
        message = json.loads(line)
        if "error" in message:
            raise self._failure(f"{message['error']}\n{message.get('traceback', '')}")
        return message[key]

    def _failure(self, what: str) -> BenchmarkFailed:
        self._process.poll()
        self._stderr.seek(0)
        tail = self._stderr.read().decode(errors="replace")[-4000:]
        return BenchmarkFailed(f"{self._name}: {what} (exit status {self._process.returncode})\n{tail}")


def start_runner(workload_key: str, contender_key: str, ctx: Context, *, isolate: bool) -> Runner:
    if isolate:
        return WorkerProcessRunner(workload_key, contender_key, ctx)
    return InProcessRunner(workload_key, contender_key, ctx)
