"""The benchmark's S3-shaped link holds back first bytes and paces each connection, and changes no byte.

The link (``benchmarks/link.py``) stands in front of a tiny HTTP server from
the standard library here, so the test needs neither Node.js nor the ``bench``
extra. Only lower bounds on time are asserted: a busy machine makes the link
slower, never faster.
"""

from __future__ import annotations

import http.client
import http.server
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the benchmarks package lives beside the library, not inside it
    sys.path.insert(0, str(ROOT))

from benchmarks.link import BURST_SECONDS, MB, LinkProxy  # noqa: E402

BODY = os.urandom(10 * 1024 * 1024)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: several requests on one connection

    def do_GET(self) -> None:
        body = BODY if self.path == "/large" else b"small"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet


@pytest.fixture(scope="module")
def upstream_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _get(connection: http.client.HTTPConnection, path: str) -> tuple[bytes, float, float]:
    """The body, the seconds to the response's first line and to its last byte."""
    began = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    first = time.perf_counter() - began
    body = response.read()
    return body, first, time.perf_counter() - began


def test_a_10_mib_get_at_50_mb_s_takes_at_least_its_size_over_the_rate_and_returns_the_exact_bytes(
    upstream_port: int,
) -> None:
    with LinkProxy(upstream_port, delay_ms=0, mbps=50) as link:
        connection = http.client.HTTPConnection("127.0.0.1", link.port, timeout=30)
        body, _, seconds = _get(connection, "/large")
        connection.close()
    assert body == BODY
    # 10 MiB at 50 MB/s is 0.21 s; an idle connection's burst credit may save it BURST_SECONDS.
    assert seconds >= len(BODY) / (50 * MB) - BURST_SECONDS >= 0.2


def test_every_response_on_a_connection_waits_the_set_delay_for_its_first_byte(upstream_port: int) -> None:
    delay = 0.15
    with LinkProxy(upstream_port, delay_ms=delay * 1000, mbps=0) as link:
        connection = http.client.HTTPConnection("127.0.0.1", link.port, timeout=30)
        firsts = []
        for _ in range(2):  # the second request reuses the connection: it waits again
            body, first, _ = _get(connection, "/small")
            assert body == b"small"
            firsts.append(first)
        connection.close()
    assert min(firsts) >= delay


def test_without_delay_or_cap_the_link_only_forwards(upstream_port: int) -> None:
    with LinkProxy(upstream_port, delay_ms=0, mbps=0) as link:
        connection = http.client.HTTPConnection("127.0.0.1", link.port, timeout=30)
        assert _get(connection, "/large")[0] == BODY
        assert _get(connection, "/small")[0] == b"small"
        connection.close()
