"""The lean path's HTTP/1.1 client against a scripted server on loopback: framing, reuse, errors, limits.

Each test's server answers from a script (the raw bytes an S3 endpoint, or
a broken one, would send), so every way an answer can be delimited or cut is
exercised on a real socket. The S3 round trips themselves are covered
against the moto server by the lean path's tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import ipaddress
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from fsspec_s3reader.transport import http1
from fsspec_s3reader.transport.http1 import Http1Client, Http1Response, MalformedAnswerError

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]
"""Given a request's head, write the answer; return False to close the connection after it."""


class ScriptedServer:
    def __init__(self, answer: Answer, ssl_context: ssl.SSLContext | None = None) -> None:
        self._answer = answer
        self._ssl = ssl_context
        self.requests: list[bytes] = []
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._ssl)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def origin(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                keep = await self._answer(head, writer)
                await writer.drain()
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def fixed(raw: bytes, *, keep: bool = True) -> Answer:
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(raw)
        return keep

    return answer


def falls_silent(head_rest: bytes, *, then: bytes = b"", silent_for: float) -> Answer:
    """A 200 whose head ends with ``head_rest``, then ``then`` 50 ms later; then nothing until the server closes."""

    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\n" + head_rest)
        await writer.drain()
        if then:
            await asyncio.sleep(0.05)
            writer.write(then)
            await writer.drain()
        await asyncio.sleep(silent_for)
        return False

    return answer


def client(limit: int = 4) -> Http1Client:
    return Http1Client(limit, False, 5.0, lambda method: None)


async def get(http: Http1Client, server: ScriptedServer, method: str = "GET") -> Http1Response:
    return await http.request(method, server.origin, "/b/k?x=1", {"range": "bytes=0-9"}, host="h", counts_as="get")


async def fetch(http: Http1Client, server: ScriptedServer, times: int = 1) -> list[bytes]:
    """GET ``times`` times one after another, each body read whole and released."""
    bodies = []
    for _ in range(times):
        response = await get(http, server)
        try:
            bodies.append(await response.read())
        finally:
            response.release()
    return bodies


@contextlib.asynccontextmanager
async def serving(answer: Answer, limit: int = 4) -> AsyncIterator[tuple[ScriptedServer, Http1Client]]:
    async with ScriptedServer(answer) as server:
        http = client(limit)
        try:
            yield server, http
        finally:
            await http.close()


@pytest.fixture
def run() -> Callable[[Awaitable[object]], object]:
    def run(coroutine: Awaitable[object]) -> object:
        async def main() -> object:
            return await coroutine

        return asyncio.run(main())

    return run


OK_10 = b'HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\nETag: "e"\r\n\r\n0123456789'


def test_a_request_carries_its_head_and_the_answer_its_body(run: Callable[..., object]) -> None:
    async def scenario() -> None:
        async with serving(fixed(OK_10)) as (server, http):
            response = await get(http, server)
            assert (response.status, response.reason, response.headers["etag"]) == (206, "Partial Content", '"e"')
            assert await response.read() == b"0123456789"
            response.release()
            head = server.requests[0].decode()
            assert head.startswith("GET /b/k?x=1 HTTP/1.1\r\nHost: h\r\n")
            assert "range: bytes=0-9\r\n" in head
            assert "\r\nUser-Agent: fsspec-s3reader/" in head

    run(scenario())


def test_a_body_read_to_its_end_leaves_the_connection_for_the_next_request(run: Callable[..., object]) -> None:
    async def scenario() -> None:
        async with serving(fixed(OK_10)) as (server, http):
            assert await fetch(http, server, 3) == [b"0123456789"] * 3
            assert server.connections == 1
            # one released before its end is closed: the next request opens another
            (await get(http, server)).release()
            assert await fetch(http, server) == [b"0123456789"]
            assert server.connections == 2

    run(scenario())


def test_pieces_are_handed_out_as_received_and_cut_at_the_limit_asked(run: Callable[..., object]) -> None:
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nabcdef")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"ghijkl")
        return True

    async def scenario() -> None:
        async with serving(answer) as (server, http):
            response = await get(http, server)
            assert await response.read_some(4) == b"abcd"
            assert await response.read_some(100) == b"ef"
            assert await response.read_some(100) == b"ghijkl"
            assert await response.read_some(100) == b""
            assert response.at_eof()
            response.release()

    run(scenario())


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\n<Err\r\n6;ext=1\r\nor/>ok\r\n0\r\nX-Trailer: t\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n4\r\n<Err\r\n6\r\nor/>ok\r\n0\r\n\r\n",
    ],
)
def test_a_chunked_body_is_unframed_and_the_connection_kept(run: Callable[..., object], raw: bytes) -> None:
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        for at in range(0, len(raw), 5):  # the framing split anywhere
            writer.write(raw[at : at + 5])
            await writer.drain()
        return True

    async def scenario() -> None:
        async with serving(answer) as (server, http):
            assert await fetch(http, server, 2) == [b"<Error/>ok"] * 2
            assert server.connections == 1

    run(scenario())


def test_a_body_without_length_ends_with_the_connection(run: Callable[..., object]) -> None:
    async def scenario() -> None:
        async with serving(fixed(b"HTTP/1.0 200 OK\r\n\r\nall of it", keep=False)) as (server, http):
            assert await fetch(http, server) == [b"all of it"]

    run(scenario())


def test_a_head_answer_has_no_body_whatever_its_length_says(run: Callable[..., object]) -> None:
    async def scenario() -> None:
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\nx-amz-meta-a: 1\r\n\r\n"
        async with serving(fixed(raw)) as (server, http):
            for _ in range(2):
                response = await get(http, server, "HEAD")
                assert response.headers["Content-Length"] == "12345"
                assert response.at_eof()
                response.release()
            assert server.connections == 1

    run(scenario())


def test_connection_close_is_honoured(run: Callable[..., object]) -> None:
    async def scenario() -> None:
        raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
        async with serving(fixed(raw, keep=False)) as (server, http):
            assert await fetch(http, server, 2) == [b"ok"] * 2
            assert server.connections == 2

    run(scenario())


def test_a_kept_connection_the_server_closed_while_idle_is_replaced_once(run: Callable[..., object]) -> None:
    answered = 0

    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        nonlocal answered
        answered += 1
        if answered == 2:
            return False  # the second request: closed without a word, as an idle timeout would
        writer.write(OK_10)
        return True

    async def scenario() -> None:
        async with serving(answer) as (server, http):
            assert await fetch(http, server, 2) == [b"0123456789"] * 2
            assert (len(server.requests), server.connections) == (3, 2)

    run(scenario())


def test_a_new_connection_closed_before_any_answer_is_an_error_the_retries_know(run: Callable[..., object]) -> None:
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        return False

    async def scenario() -> None:
        async with serving(answer) as (server, http):
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await get(http, server)
            assert len(server.requests) == 1

    run(scenario())


def test_a_body_cut_short_is_a_payload_error(run: Callable[..., object]) -> None:
    async def scenario() -> None:
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"
        async with serving(fixed(raw, keep=False)) as (server, http):
            response = await get(http, server)
            assert await response.read_some() == b"only this"
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read_some()
            response.release()

    run(scenario())


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_what_is_not_http_fails_with_a_clear_error(run: Callable[..., object], raw: bytes) -> None:
    async def scenario() -> None:
        async with serving(fixed(raw)) as (server, http):
            with pytest.raises(MalformedAnswerError):
                await fetch(http, server)

    run(scenario())


def test_connecting_nowhere_names_the_origin(run: Callable[..., object]) -> None:
    async def scenario() -> None:
        http = client()
        with pytest.raises(aiohttp.ClientConnectionError, match=r"127\.0\.0\.1:9"):
            await http.request("GET", "http://127.0.0.1:9", "/", {}, host="h", counts_as="get")
        await http.close()

    run(scenario())


def test_no_more_than_limit_requests_are_in_flight_and_a_cancelled_one_frees_its_place(
    run: Callable[..., object],
) -> None:
    release = asyncio.Event()
    in_flight = 0
    most = 0

    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        if b"/slow" in head:
            await release.wait()
        writer.write(OK_10)
        in_flight -= 1
        return True

    async def one(http: Http1Client, server: ScriptedServer, target: str = "/") -> bytes:
        response = await http.request("GET", server.origin, target, {}, host="h", counts_as="get")
        try:
            return await response.read()
        finally:
            response.release()

    async def scenario() -> None:
        async with serving(answer, limit=2) as (server, http):
            stuck = asyncio.ensure_future(one(http, server, "/slow"))
            await asyncio.sleep(0.05)
            results = await asyncio.gather(*(one(http, server) for _ in range(6)))
            assert results == [b"0123456789"] * 6
            assert most == 2  # the stuck one and one at a time beside it
            stuck.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stuck
            release.set()
            assert await asyncio.gather(one(http, server), one(http, server)) == [b"0123456789"] * 2

    run(scenario())


def test_reading_pauses_while_much_waits_unread_and_resumes_as_it_is_read(run: Callable[..., object]) -> None:
    size = 8 * 1024 * 1024
    body = bytes(range(256)) * (size // 256)

    async def scenario() -> None:
        answer = fixed(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + body)
        async with serving(answer) as (server, http):
            response = await get(http, server)
            await asyncio.sleep(0.2)  # the server writes as fast as it can; the client stops taking it
            assert response._buffered < size
            assert await response.read() == body
            response.release()

    run(scenario())


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (``cryptography`` comes with moto)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.mark.parametrize("verify", [True, False])
def test_https_with_the_context_given_or_none_verified(
    run: Callable[..., object], tmp_path: Path, verify: bool
) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    client_context: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(cert_file)) if verify else False

    async def scenario() -> None:
        server = ScriptedServer(fixed(OK_10), ssl_context=server_context)
        async with server:
            http = Http1Client(4, client_context, 5.0, lambda method: None)
            origin = server.origin.replace("http://", "https://")
            for _ in range(2):
                response = await http.request("GET", origin, "/", {}, host="h", counts_as="get")
                assert await response.read() == b"0123456789"
                response.release()
            assert server.connections == 1
            # a context that trusts nothing of this server's refuses it
            strict = Http1Client(4, ssl.create_default_context(), 5.0, lambda method: None)
            with pytest.raises(aiohttp.ClientConnectionError, match="certificate"):
                await strict.request("GET", origin, "/", {}, host="h", counts_as="get")
            await http.close()

    run(scenario())


def test_failed_exchanges_free_their_place_once(run: Callable[..., object]) -> None:
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        return False  # every request: the connection closes without an answer

    async def scenario() -> None:
        async with serving(answer, limit=2) as (server, http):
            for _ in range(5):
                with pytest.raises(aiohttp.ServerDisconnectedError):
                    await get(http, server)
            gc.collect()
            await asyncio.sleep(0.01)  # what a collected answer would free, freed on the loop
            assert http._places._value == 2

    run(scenario())


def test_a_connection_idle_too_long_is_closed_rather_than_reused(run: Callable[..., object]) -> None:
    async def scenario() -> None:
        async with ScriptedServer(fixed(OK_10)) as server:
            http = Http1Client(4, False, 5.0, lambda method: None, kept_idle_at_most=0.05)
            assert await fetch(http, server, 2) == [b"0123456789"] * 2
            assert server.connections == 1
            await asyncio.sleep(0.1)
            assert await fetch(http, server) == [b"0123456789"]
            assert server.connections == 2
            await http.close()

    run(scenario())


# -- received straight into the caller's buffer ------------------------------------------------


def test_a_body_is_received_into_the_buffer_given_and_the_connection_kept(run: Callable[..., object]) -> None:
    body = os.urandom(3 * 1024 * 1024 + 5)

    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 206 Partial Content\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:1000])
        await writer.drain()
        await asyncio.sleep(0.02)  # the rest after the caller's buffer is in place, in pieces of any size
        for at in range(1000, len(body), 300_001):
            writer.write(body[at : at + 300_001])
            await writer.drain()
        return True

    async def scenario() -> None:
        async with serving(answer) as (server, http):
            for _ in range(2):
                response = await get(http, server)
                buffer = memoryview(bytearray(len(body)))
                assert await response.receive_into(buffer, idle_timeout=5) == len(body)
                assert buffer == body
                assert response.at_eof()
                response.release()
            assert server.connections == 1

    run(scenario())


def test_receiving_into_a_smaller_buffer_leaves_the_rest_for_the_next_call(run: Callable[..., object]) -> None:
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"defghijkl")
        return True

    async def scenario() -> None:
        async with serving(answer) as (server, http):
            response = await get(http, server)
            first, rest = bytearray(5), bytearray(100)
            assert await response.receive_into(memoryview(first)) == 5
            assert await response.receive_into(memoryview(rest)) == 7
            assert (first, rest[:7]) == (b"abcde", b"fghijkl")
            assert await response.receive_into(memoryview(rest)) == 0
            response.release()
            assert await fetch(http, server) == [b"abcdefghijkl"]
            assert server.connections == 1

    run(scenario())


def test_a_body_cut_short_hands_over_what_arrived_then_fails(run: Callable[..., object]) -> None:
    async def scenario() -> None:
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"
        async with serving(fixed(raw, keep=False)) as (server, http):
            response = await get(http, server)
            buffer = memoryview(bytearray(100))
            assert await response.receive_into(buffer) == 9  # the caller knows where to resume
            assert buffer[:9] == b"only this"
            with pytest.raises(aiohttp.ClientPayloadError, match="closed before the whole answer"):
                await response.receive_into(buffer[9:])
            response.release()

    run(scenario())


def test_a_body_times_out_when_silent_for_the_idle_timeout_not_when_long(run: Callable[..., object]) -> None:
    async def trickle(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n")
        for byte in b"abcdefgh":  # 0.4 s in all, never 0.15 s silent
            await asyncio.sleep(0.05)
            writer.write(bytes([byte]))
            await writer.drain()
        return True

    async def scenario() -> None:
        async with serving(trickle) as (server, http):
            response = await get(http, server)
            buffer = memoryview(bytearray(8))
            assert await response.receive_into(buffer, idle_timeout=0.15) == 8
            assert buffer == b"abcdefgh"
            response.release()
        async with serving(falls_silent(b"Content-Length: 8\r\n\r\nabc", silent_for=1)) as (server, http):
            response = await get(http, server)
            assert await response.receive_into(buffer, idle_timeout=0.15) == 3
            with pytest.raises(TimeoutError, match=r"0\.15 s"):  # not the server's close, a second later
                await response.receive_into(buffer[3:], idle_timeout=0.15)
            response.release()

    run(scenario())


@pytest.mark.skipif(not http1._CAN_WAIT_FOR_BYTES, reason="the socket's wake-up mark is set on Linux only")
@pytest.mark.parametrize("wake_at_most", [1, http1._WAKE_AT_MOST])
def test_a_long_body_wakes_the_loop_once_per_mark_not_at_every_piece(
    run: Callable[..., object], monkeypatch: pytest.MonkeyPatch, wake_at_most: int
) -> None:
    monkeypatch.setattr(http1, "_WAKE_AT_MOST", wake_at_most)
    body = os.urandom(3 * 1024 * 1024 + 7)
    wakes: list[int] = []
    counted = http1._Connection.buffer_updated

    def counting(self: http1._Connection, nbytes: int) -> None:
        if self._filling is not None:
            wakes.append(nbytes)
        counted(self, nbytes)

    monkeypatch.setattr(http1._Connection, "buffer_updated", counting)

    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 206 Partial Content\r\nContent-Length: %d\r\n\r\n" % len(body))
        await writer.drain()
        for at in range(0, len(body), 64 * 1024):  # pieces that arrive one by one, as a near server sends them
            writer.write(body[at : at + 64 * 1024])
            await writer.drain()
            await asyncio.sleep(0.001)
        return True

    async def scenario() -> None:
        async with serving(answer) as (server, http):
            for _ in range(2):  # the next answer's head, on the same connection, wakes the loop at once
                wakes.clear()
                response = await get(http, server)
                buffer = memoryview(bytearray(len(body)))
                assert await response.receive_into(buffer, idle_timeout=5) == len(body)
                assert buffer == body
                response.release()
                pieces = len(body) // (64 * 1024)
                if wake_at_most > 1:  # a wake per mark's worth, and the bytes after the last
                    assert len(wakes) <= len(body) // wake_at_most + 2, wakes
                else:
                    assert len(wakes) >= pieces // 2, wakes
            assert server.connections == 1

    run(scenario())


@pytest.mark.skipif(not http1._CAN_WAIT_FOR_BYTES, reason="the socket's wake-up mark is set on Linux only")
def test_bytes_below_the_mark_are_handed_over_when_the_server_falls_silent(run: Callable[..., object]) -> None:
    # the caller waits for a mark's worth of bytes when these few come
    silent = falls_silent(b"Content-Length: 3000000\r\n\r\n", then=b"x" * 1000, silent_for=2)

    async def scenario() -> None:
        async with serving(silent) as (server, http):
            response = await get(http, server)
            buffer = memoryview(bytearray(3_000_000))
            assert await response.receive_into(buffer, idle_timeout=0.3) == 1000
            assert buffer[:1000] == b"x" * 1000
            with pytest.raises(TimeoutError, match=r"0\.3 s"):  # not the server's close, seconds later
                await response.receive_into(buffer[1000:], idle_timeout=0.3)
            response.release()

    run(scenario())


def test_a_chunked_body_is_received_into_a_buffer_unframed(run: Callable[..., object]) -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n<Err\r\n6\r\nor/>ok\r\n0\r\n\r\n"

    async def scenario() -> None:
        async with serving(fixed(raw)) as (server, http):
            response = await get(http, server)
            buffer = memoryview(bytearray(20))
            assert await response.receive_into(buffer) == 10
            assert buffer[:10] == b"<Error/>ok"
            response.release()

    run(scenario())


def test_a_body_is_received_into_a_buffer_through_tls(run: Callable[..., object], tmp_path: Path) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    body = os.urandom(2 * 1024 * 1024 + 3)
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body

    async def scenario() -> None:
        async with ScriptedServer(fixed(raw), ssl_context=server_context) as server:
            http = Http1Client(4, False, 5.0, lambda method: None)
            origin = server.origin.replace("http://", "https://")
            for _ in range(2):
                response = await http.request("GET", origin, "/", {}, host="h", counts_as="get")
                buffer = memoryview(bytearray(len(body)))
                assert await response.receive_into(buffer, idle_timeout=5) == len(body)
                assert buffer == body
                response.release()
            assert server.connections == 1
            await http.close()

    run(scenario())


def test_a_chunked_body_cut_short_hands_over_what_arrived_then_fails(run: Callable[..., object]) -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n<Err\r\n6\r\nor"

    async def scenario() -> None:
        async with serving(fixed(raw, keep=False)) as (server, http):
            response = await get(http, server)
            buffer = memoryview(bytearray(20))
            assert await response.receive_into(buffer, idle_timeout=5) == 6
            assert buffer[:6] == b"<Error"
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.receive_into(buffer[6:], idle_timeout=5)
            response.release()

    run(scenario())
