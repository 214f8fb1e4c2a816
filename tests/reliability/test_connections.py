"""Clients that hold connections: slow senders and a thousand idle keep-alive connections.
Neither may starve normal traffic. Loops are bounded in count and time, loopback only."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Server
from tests.reliability.net import VALID, post_bytes, read_response

REQUEST = post_bytes(json.dumps(VALID).encode())
IDLE_CONNECTIONS = 1000


@pytest.fixture
def server(test_models: dict[str, Path], front_end: str) -> Iterator[Server]:
    # Its own server, started after conftest raised the open-files limit it inherits.
    started = Server(
        [str(test_models["echo"]), "--server", front_end, "--receive-timeout", "2"]
    ).start()
    try:
        yield started
    finally:
        started.stop()


def _ok(server: Server) -> bool:
    return server.post_json(VALID)[0] == 200


def test_slow_clients_do_not_starve_others(server: Server, front_end: str) -> None:
    """Five clients send a request a byte a second; normal requests are answered meanwhile.

    Each slow client gets a JSON 408 once --receive-timeout (2 s here) has passed, on both
    front ends (on ASGI through our subclass of uvicorn's protocol)."""
    slow = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(5)]
    answered = 0
    try:
        for second in range(5):  # bounded: 5 bytes, about 5 s
            for sock in slow:
                # Native may already have refused it and closed.
                with contextlib.suppress(OSError):
                    sock.send(REQUEST[second : second + 1])
            answered += _ok(server)
            time.sleep(1)
        assert answered == 5
        for sock in slow:
            status, _, payload = read_response(sock)
            assert status == 408
            assert json.loads(payload)["error"]["type"] == "request_timeout"
    finally:
        for sock in slow:
            sock.close()
    assert _ok(server)


def test_a_thousand_idle_keepalive_connections_while_traffic_goes_on(server: Server) -> None:
    idle: list[socket.socket] = []
    try:
        for _ in range(IDLE_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            idle.append(sock)
            sock.sendall(REQUEST)
        # Every one answered and kept alive, then left idle.
        statuses = [read_response(sock)[0] for sock in idle]
        assert statuses == [200] * IDLE_CONNECTIONS
        # Normal traffic, on new connections, meanwhile.
        assert sum(_ok(server) for _ in range(50)) == 50
        # The idle connections were kept, not dropped: each still takes a request.
        for sock in idle[::100]:
            sock.sendall(REQUEST)
            assert read_response(sock)[0] == 200
    finally:
        for sock in idle:
            sock.close()
    assert _ok(server)


@pytest.mark.parametrize(
    "request_bytes",
    [b"GARBAGE\r\n\r\n", b"POST /ensemble HTTP/1.1\r\nContent-Length: x\r\n\r\n"],
    ids=["request-line", "content-length"],
)
def test_malformed_http_gets_a_json_400_and_a_close(server: Server, request_bytes: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_bytes)
        status, _, payload = read_response(sock)
        assert status == 400
        assert json.loads(payload)["error"]["type"] == "bad_request"
        assert sock.recv(1) == b""  # closed
    assert _ok(server)
