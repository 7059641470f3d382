"""The gateway's connection bounds (``serving/gateway/connections.py``) on a real uvicorn server
started as ``python -m serving gateway`` starts it (``cli.uvicorn_config``), over raw sockets:
half-sent headers and stalled bodies are answered 408 and closed, a flood of idle sockets is
capped and then cleared, and requests that arrive whole are left alone, however long the
app takes. They also catch a uvicorn upgrade that breaks the internals the module leans on.
Those with a server are marked slow: together they wait out timeouts for about ten seconds."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi import FastAPI, Request

from serving.gateway.app import create_app
from serving.gateway.cli import build_parser, settings_from, uvicorn_config
from serving.gateway.connections import GuardedH11Protocol
from serving.gateway.settings import GatewaySettings

SETTINGS = GatewaySettings(
    targets=("127.0.0.1:1",),  # nothing listens: /healthz needs no model server
    host="127.0.0.1",
    port=0,
    log_level="warning",
    header_timeout=0.5,
    body_timeout=0.5,
    max_connections=20,
)
MARGIN = 3.0
"""Seconds a timeout may be late on a loaded two-core machine before a test fails."""
PATIENT = dataclasses.replace(SETTINGS, body_timeout=2.0)
"""For traffic that must pass: on a loaded machine a thread can stall for half a second, which
would look like a stalled client to a 0.5 s timeout."""


@contextmanager
def serving(settings: GatewaySettings, app: FastAPI | None = None) -> Iterator[int]:
    """uvicorn serving the CLI's config for ``settings`` in a thread; yields its port."""
    import uvicorn

    server = uvicorn.Server(uvicorn_config(settings, app))
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.02)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def port() -> Iterator[int]:
    with serving(SETTINGS) as port:
        yield port


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(SETTINGS.header_timeout + MARGIN)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """All the server sends until it closes; fails if it keeps the connection open."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open; it sent {received!r}")
    return received


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """One response's status and body (``Content-Length`` framed), the connection left open."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {received!r}"
        received += chunk
    head, body = received.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(fields["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "closed mid-body"
        body += chunk
    return int(lines[0].split()[1]), body


def get(port: int, path: str = "/healthz") -> int:
    with connect(port) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: gateway\r\n\r\n".encode())
        return read_response(sock)[0]


@pytest.mark.slow
def test_half_sent_headers_get_408_and_the_connection_closes(port):
    with connect(port) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gate")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert time.monotonic() - started < SETTINGS.header_timeout + MARGIN


@pytest.mark.slow
def test_headers_trickled_a_byte_at_a_time_do_not_restart_the_timeout(port):
    request = b"GET /healthz HTTP/1.1\r\nX-Filler: " + b"a" * 1000
    with connect(port) as sock:
        started = time.monotonic()
        try:
            for byte in request:  # 0.05 s a byte: 50 s for the whole request
                sock.send(bytes([byte]))
                time.sleep(0.05)
                if time.monotonic() - started > SETTINGS.header_timeout + MARGIN:
                    pytest.fail("still sending headers long after the header timeout")
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed by the server
        else:
            pytest.fail("the server took the whole trickled request")
        assert time.monotonic() - started < SETTINGS.header_timeout + MARGIN


@pytest.mark.slow
def test_a_connection_that_sends_nothing_is_closed_without_an_answer(port):
    with connect(port) as sock:
        assert read_until_closed(sock) == b""


@pytest.mark.slow
def test_a_stalled_body_gets_408_and_the_connection_closes(port):
    with connect(port) as sock:
        sock.sendall(
            b"POST /v1/segment HTTP/1.1\r\nHost: gateway\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 1000\r\n\r\n" + b"\xff" * 10
        )
        started = time.monotonic()
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert time.monotonic() - started < SETTINGS.body_timeout + MARGIN
    assert get(port) == 200


@pytest.mark.slow
def test_a_body_stalled_after_its_answer_is_closed_too(port):
    # uvicorn reads on to the end of a body its app refused unread, with no timeout of its own.
    with connect(port) as sock:
        sock.sendall(
            b"POST /v1/segment HTTP/1.1\r\nHost: gateway\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 20000000\r\n\r\n"
        )
        assert read_response(sock)[0] == 413  # from Content-Length, before the body
        sock.sendall(b"\xff" * 10)
        assert read_until_closed(sock) == b""  # an answer went out already: no 408


@pytest.mark.slow
def test_a_slow_body_that_keeps_arriving_is_read_whole():
    with serving(PATIENT) as port, connect(port) as sock:
        sock.sendall(
            b"POST /v1/segment HTTP/1.1\r\nHost: gateway\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        for _ in range(10):  # 5 s in all, 2.5 body timeouts; never 2 s without a byte
            time.sleep(0.5)
            sock.sendall(b"\xff" * 100)
        status, body = read_response(sock)
    # Read whole, the bytes are refused for what they are, not for how slowly they came.
    assert status in (400, 415), body


@pytest.mark.slow
def test_over_max_connections_a_new_one_is_closed_until_the_idle_ones_time_out(port):
    idle = [connect(port) for _ in range(SETTINGS.max_connections)]
    try:
        with connect(port) as extra:
            answer = read_until_closed(extra)
        assert answer.startswith(b"HTTP/1.1 503 "), answer  # at once, not by its header timeout
        for sock in idle:  # each closed by its header timeout
            assert read_until_closed(sock) == b""
    finally:
        for sock in idle:
            sock.close()
    assert get(port) == 200


@pytest.mark.slow
def test_keep_alive_serves_requests_apart_longer_than_the_header_timeout(port):
    with connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        assert read_response(sock) == (200, b'{"status":"ok"}')
        time.sleep(3 * SETTINGS.header_timeout)  # under uvicorn's 5 s keep-alive timeout
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        assert read_response(sock) == (200, b'{"status":"ok"}')
        # The third request's headers get their own header timeout, from their first byte.
        time.sleep(3 * SETTINGS.header_timeout)
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < SETTINGS.header_timeout + MARGIN


@pytest.mark.slow
def test_a_request_that_arrived_is_not_timed_out_while_the_app_works():
    app = FastAPI()

    @app.post("/slow")
    async def slow(request: Request) -> dict[str, int]:
        # Past both timeouts before reading: uvicorn stops reading the 4 MB meanwhile.
        await asyncio.sleep(1.5 * PATIENT.body_timeout)
        return {"bytes": len(await request.body())}

    size = 4 * 1024 * 1024
    with serving(PATIENT, app) as port, connect(port) as sock:
        sock.settimeout(10 * PATIENT.body_timeout + MARGIN)
        sock.sendall(
            f"POST /slow HTTP/1.1\r\nHost: gateway\r\nContent-Length: {size}\r\n\r\n".encode()
            + bytes(size)
        )
        assert read_response(sock) == (200, f'{{"bytes":{size}}}'.encode())


def test_the_flags_set_the_bounds_uvicorn_is_given():
    args = ["--max-connections", "5", "--header-timeout", "2", "--body-timeout", "7"]
    settings = settings_from(build_parser().parse_args(args))
    assert (settings.max_connections, settings.header_timeout, settings.body_timeout) == (5, 2, 7)
    config = uvicorn_config(settings, create_app(settings))
    assert issubclass(config.http, GuardedH11Protocol)
    assert config.http.limits.max_connections == 5 and config.limit_concurrency == 6
    with pytest.raises(ValueError, match="header_timeout"):
        GatewaySettings(header_timeout=0)
