"""Helper processes of a benchmark run (servers, the link, workers): tied to the driver's life, stopped on demand.

Standard library only, so that the link (``link.py``) and its test need
nothing the ``bench`` extra installs.
"""

from __future__ import annotations

import argparse
import ctypes
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

LOOPBACK = "127.0.0.1"

_Started = TypeVar("_Started", bound="PortPrintingProcess")


def die_with_parent() -> None:
    """In a helper's process (Linux): be terminated when the benchmark dies, even by SIGKILL."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Ask a helper process to end, and make it if it will not within 10 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def proxy_arguments(module: str, doc: str | None) -> argparse.ArgumentParser:
    """The command line a proxy run as a ``PortPrintingProcess`` starts from: whom it forwards to, where it listens."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=(doc or "").split("\n")[0])
    parser.add_argument("--upstream-port", type=int, required=True, help="the server's port on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="where to listen (default: a free port, printed)")
    return parser


class PortPrintingProcess:
    """A ``benchmarks`` module run in a process of its own (off the driver's GIL) that prints the port it listens on.

    Tied to the driver's life; stopped by ``stop`` or by leaving the ``with`` block.
    """

    def __init__(self, module: str, arguments: Sequence[str], what: str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", module, *arguments],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"{what} did not start (it said {line!r})")
        self.port = int(line)

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        stop_process(self._process)

    def __enter__(self: _Started) -> _Started:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
