"""An S3-compatible server on the loopback interface (moto), for the demo, tests and benchmarks.

No account and no network: objects live in the server's memory and vanish
when it stops. Needs ``moto[server]`` (the ``demo`` and ``test`` extras).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
CREDENTIALS = {"key": "testing", "secret": "testing"}
"""Any credentials do for moto; these are passed explicitly so none are looked up."""


def _die_with_parent() -> None:
    """In the server's process (Linux): be terminated when the process that started it dies, even by SIGKILL."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


class LocalS3Server:
    """moto's S3 server on 127.0.0.1, in a thread of this process or in a process of its own.

    ``separate_process=True`` keeps the server off this interpreter's GIL, which
    matters when measuring the client's speed; a thread starts faster and is
    enough for tests.
    """

    def __init__(self, separate_process: bool = False) -> None:
        self._separate_process = separate_process
        self._thread_server: Any = None
        self._process: subprocess.Popen[bytes] | None = None
        self._endpoint_url: str | None = None

    @property
    def endpoint_url(self) -> str:
        if self._endpoint_url is None:
            raise RuntimeError("the local S3 server is not running; call start() or use it as a context manager")
        return self._endpoint_url

    @property
    def storage_options(self) -> dict[str, Any]:
        """What to pass to fsspec, pandas or the DCP classes to reach this server."""
        return {"endpoint_url": self.endpoint_url, **CREDENTIALS}

    def start(self) -> str:
        try:
            import moto.server
        except ImportError as exc:
            raise ImportError(
                "the local S3 server needs moto: pip install 'fsspec_s3reader[demo]' (or 'moto[server]')"
            ) from exc
        if self._separate_process:
            port = _free_port()
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
            atexit.register(self.stop)
            self._endpoint_url = f"http://{LOOPBACK}:{port}"
            self._wait_until_ready()
        else:
            # werkzeug logs every request at INFO; that is noise in a demo or a test run
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            self._thread_server = moto.server.ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
            self._thread_server.start()
            host, port = self._thread_server.get_host_and_port()
            self._endpoint_url = f"http://{host}:{port}"
        logger.info("local S3 server listening on %s", self._endpoint_url)
        return self._endpoint_url

    def _wait_until_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"the moto server exited at start with status {self._process.returncode}")
            try:
                with urllib.request.urlopen(f"{self._endpoint_url}/moto-api/", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"the moto server at {self._endpoint_url} did not answer within {timeout:.0f}s")

    def stop(self) -> None:
        if self._thread_server is not None:
            self._thread_server.stop()
            self._thread_server = None
        if self._process is not None:
            atexit.unregister(self.stop)
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        self._endpoint_url = None

    def __enter__(self) -> LocalS3Server:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextmanager
def s3_storage_options(endpoint_url: str | None = None) -> Iterator[dict[str, Any]]:
    """Storage options for ``endpoint_url``, or for an embedded server that runs until the block ends.

    What the demo and the examples do with their ``--endpoint``: a real
    endpoint takes its credentials from the usual AWS variables or profile;
    without one, nothing outside this machine is needed.
    """
    if endpoint_url is not None:
        yield {"endpoint_url": endpoint_url}
        return
    with LocalS3Server() as server:
        yield server.storage_options
