"""Helper processes of a benchmark run (servers, the link, workers): tied to the driver's life, stopped on demand.

Standard library only, so that the link (``link.py``) and its test need
nothing the ``bench`` extra installs.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
from typing import Any

LOOPBACK = "127.0.0.1"


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
