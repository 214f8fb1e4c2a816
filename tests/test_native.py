"""HTTP/1.1 conformance of the native front end, over raw sockets to the real server process.

Each test writes exact bytes and reads exact bytes, so that nothing in a client library
hides what the server sent (an extra byte, a missing header, a reset instead of an
answer, a connection left open).
"""

from __future__ import annotations

import contextlib
import json
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Server

VALID = json.dumps(
    {"request": {"fault": None}, "response": {"route_responses": [{"route": "a", "data": 1}]}}
).encode()
MAX_BODY = 4096
MAX_HEAD = 4096


def post(body: bytes = VALID, headers: bytes = b"") -> bytes:
    return (
        b"POST /ensemble HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % len(body)
        + headers
        + b"\r\n"
        + body
    )


def sum_body(n: int) -> bytes:
    """A body for AsyncSum, which answers `n`."""
    return json.dumps(
        {"request": {}, "response": {"route_responses": [{"route": "a", "data": n}]}}
    ).encode()


def faulty_body(**request: Any) -> bytes:
    return json.dumps({"request": request, "response": {"route_responses": []}}).encode()


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One raw connection; reads answers exactly as they come off the wire."""

    def __init__(self, port: int, timeout: float = 10, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = b""

    def send(self, data: bytes) -> Client:
        self.sock.sendall(data)
        return self

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise EOFError(f"closed before {marker!r}; got {self.buffer!r}")
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise EOFError(f"closed after {len(self.buffer)} of {size} bytes")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def response(self, head_request: bool = False) -> Response:
        status_line, *lines = self.read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        version, status, _ = status_line.split(" ", 2)
        assert version == "HTTP/1.1"
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"{name} sent twice"
            headers[name.lower()] = value.strip()
        length = 0 if head_request else int(headers["content-length"])
        return Response(int(status), headers, self.read_exactly(length))

    def closed(self) -> bool:
        """True once the server closed the connection (anything unread is an error)."""
        try:
            more = self._fill()
        except ConnectionResetError:
            return True
        assert not more, f"unexpected bytes: {self.buffer!r}"
        return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def faulty(test_models: dict[str, Path]) -> Iterator[Server]:
    server = Server(
        [
            str(test_models["faulty"]),
            "--server",
            "native",
            "--max-body-size",
            str(MAX_BODY),
            "--max-header-size",
            str(MAX_HEAD),
            "--receive-timeout",
            "1",
            "--keepalive-timeout",
            "2",
        ]
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def echo(test_models: dict[str, Path]) -> Iterator[Server]:
    server = Server([str(test_models["echo"]), "--server", "native"]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def async_sum(test_models: dict[str, Path]) -> Iterator[Server]:
    server = Server([str(test_models["async"]), "--server", "native"]).start()
    yield server
    server.stop()


@pytest.fixture
def client(faulty: Server) -> Iterator[Client]:
    connection = Client(faulty.port)
    yield connection
    connection.close()


def assert_error(response: Response, status: int, kind: str) -> None:
    assert response.status == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["type"] == kind


# -- keep-alive and pipelining ---------------------------------------------------------


def test_keep_alive_serves_many_requests_on_one_connection(client: Client) -> None:
    for _ in range(3):
        response = client.send(post()).response()
        assert (response.status, response.json()) == (200, "ok")
        assert response.headers["connection"] == "keep-alive"
        assert response.headers["content-type"] == "application/json"
        assert response.headers["date"].endswith(" GMT")


def test_pipelined_requests_are_answered_in_order(client: Client) -> None:
    client.send(
        post()
        + b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
        + post(b"{")
        + post(faulty_body(fault="raise"))
        + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        + post()
    )
    statuses = [client.response().status for _ in range(6)]
    assert statuses == [200, 404, 400, 500, 200, 200]


def test_pipelined_requests_to_an_async_ensembler_are_answered_in_order(
    async_sum: Server,
) -> None:
    client = Client(async_sum.port)
    nowhere = b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
    client.send(b"".join(post(sum_body(n)) for n in range(50)) + nowhere)
    assert [client.response().json() for _ in range(50)] == list(range(50))
    assert client.response().status == 404
    client.close()


def test_a_refusal_waits_for_the_async_answers_before_it(async_sum: Server) -> None:
    client = Client(async_sum.port)
    client.send(post(sum_body(1)) + post(sum_body(2)) + MALFORMED["length-and-chunked"])
    assert [client.response().json() for _ in range(2)] == [1, 2]
    assert_error(client.response(), 400, "bad_request")
    assert client.closed()
    client.close()


def test_100_continue_waits_for_the_async_answers_before_it(async_sum: Server) -> None:
    client = Client(async_sum.port)
    body = sum_body(5)
    client.send(
        post(sum_body(4))
        + b"POST /ensemble HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
    )
    assert client.response().json() == 4
    assert client.read_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue"
    assert client.send(body).response().json() == 5
    client.close()


def test_a_client_that_half_closes_still_gets_its_async_answers(async_sum: Server) -> None:
    client = Client(async_sum.port)
    client.send(post(sum_body(7)) * 3)
    client.sock.shutdown(socket.SHUT_WR)
    assert [client.response().json() for _ in range(3)] == [7, 7, 7]
    assert client.closed()


# -- bodies ----------------------------------------------------------------------------


def test_chunked_body_with_extensions_and_trailers(echo: Server) -> None:
    client = Client(echo.port)
    chunks = [VALID[:7], VALID[7:30], VALID[30:]]
    body = (
        b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\nX-Trailer: t\r\n\r\n"
    )
    head = b"POST /ensemble HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    response = client.send(head + body).response()
    assert response.status == 200
    assert response.json()["input"] == {"fault": None}
    assert "X-Trailer" not in response.json()["header_names"]
    assert client.send(post()).response().status == 200
    client.close()


def test_expect_100_continue_is_answered_before_the_body(client: Client) -> None:
    head = b"POST /ensemble HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
    client.send(head + b"Content-Length: %d\r\n\r\n" % len(VALID))
    assert client.read_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue"
    response = client.send(VALID).response()
    assert (response.status, response.json()) == (200, "ok")


def test_expect_100_continue_over_the_limit_gets_413_without_continue(client: Client) -> None:
    head = b"POST /ensemble HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
    response = client.send(head + b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1)).response()
    assert_error(response, 413, "payload_too_large")
    assert client.closed()


# -- methods and versions --------------------------------------------------------------


def test_head_gets_headers_without_a_body(client: Client) -> None:
    response = client.send(b"HEAD /ensemble HTTP/1.1\r\nHost: x\r\n\r\n").response(
        head_request=True
    )
    assert response.status == 405
    assert int(response.headers["content-length"]) > 0
    assert response.body == b""
    # Had a body been sent, it would be read here as the next status line.
    assert client.send(post()).response().status == 200


def test_http10_closes_after_the_answer(client: Client) -> None:
    response = client.send(
        b"POST /ensemble HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s"
        % (
            len(VALID),
            VALID,
        )
    ).response()
    assert (response.status, response.headers["connection"]) == (200, "close")
    assert client.closed()


def test_http10_keep_alive_when_asked(client: Client) -> None:
    request = b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    for _ in range(2):
        response = client.send(request).response()
        assert (response.status, response.headers["connection"]) == (200, "keep-alive")


def test_connection_close_is_honoured(client: Client) -> None:
    response = client.send(post(headers=b"Connection: close\r\n") + post()).response()
    assert (response.status, response.headers["connection"]) == (200, "close")
    assert client.closed()


def test_upgrade_is_not_followed(client: Client) -> None:
    request = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    response = client.send(request + b"\x81\x00").response()
    assert (response.status, response.headers["connection"]) == (200, "close")
    assert client.closed()


def test_connect_is_refused(client: Client) -> None:
    response = client.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    answer = response.response()
    assert_error(answer, 405, "method_not_allowed")
    assert answer.headers["allow"] == "POST"
    assert client.closed()


# -- malformed requests ----------------------------------------------------------------

MALFORMED = {
    "duplicate-length": post(headers=b"Content-Length: %d\r\n" % len(VALID)),
    "conflicting-lengths": post(headers=b"Content-Length: 1\r\n"),
    "length-and-chunked": post(headers=b"Transfer-Encoding: chunked\r\n"),
    "negative-length": b"POST /ensemble HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "request-line": b"POST /ensemble HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    "version": b"POST /ensemble HTTP/7.3\r\nHost: x\r\n\r\n",
    "header-name": b"POST /ensemble HTTP/1.1\r\nHo st: x\r\nContent-Length: 0\r\n\r\n",
    "bare-lf-in-value": b"POST /ensemble HTTP/1.1\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n",
    "chunk-size": b"POST /ensemble HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "not-http": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
}


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_requests_get_400_and_the_connection_closes(
    faulty: Server, request_bytes: bytes
) -> None:
    client = Client(faulty.port)
    # A valid request first: its answer must come before the refusal, and stay intact.
    response = client.send(post() + request_bytes).response()
    assert (response.status, response.json()) == (200, "ok")
    assert_error(client.response(), 400, "bad_request")
    assert client.closed()
    client.close()


# -- limits ----------------------------------------------------------------------------


def test_headers_over_the_limit_get_431(client: Client) -> None:
    response = client.send(post(headers=b"X-Big: " + b"a" * MAX_HEAD + b"\r\n")).response()
    assert_error(response, 431, "headers_too_large")
    assert client.closed()


ENDLESS = {
    "header": b"POST /ensemble HTTP/1.1\r\nX-Endless: ",
    "trailer": b"POST /ensemble HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2\r\n{}\r\n0\r\nX-Endless: ",
}


@pytest.mark.parametrize("start", ENDLESS.values(), ids=ENDLESS.keys())
def test_a_header_that_never_ends_gets_431(client: Client, start: bytes) -> None:
    client.send(start)
    # In separate segments, so that the head arrives in pieces, until the server answers.
    for _ in range(MAX_HEAD):
        try:
            client.send(b"a" * 64)
        except OSError:
            break
        if select.select([client.sock], [], [], 0.001)[0]:
            break
    assert_error(client.response(), 431, "headers_too_large")


def test_declared_body_over_the_limit_gets_413_while_the_client_still_sends(
    client: Client,
) -> None:
    body = b"x" * (4 * 1024 * 1024)
    client.send(b"POST /ensemble HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    # A client that writes its whole body before reading must still read the 413.
    client.send(body)
    assert_error(client.response(), 413, "payload_too_large")
    assert client.closed()


def test_chunked_body_over_the_limit_gets_413_while_the_client_still_sends(
    client: Client,
) -> None:
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
    head = b"POST /ensemble HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    client.send(head + chunk * 64 + b"0\r\n\r\n")
    assert_error(client.response(), 413, "payload_too_large")
    assert client.closed()


def test_a_slow_request_gets_408(client: Client) -> None:
    client.send(b"POST /ensemble HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    assert_error(client.response(), 408, "request_timeout")
    assert client.closed()


def test_a_slow_head_gets_408(client: Client) -> None:
    client.send(b"POST /ensemble HTTP/1.1\r\nHost: x\r\n")
    assert_error(client.response(), 408, "request_timeout")
    assert client.closed()


def test_idle_connections_are_closed_after_the_keepalive_timeout(faulty: Server) -> None:
    used, unused = Client(faulty.port), Client(faulty.port)
    assert used.send(post()).response().status == 200
    assert used.closed() and unused.closed()
    used.close()
    unused.close()


# -- back-pressure ---------------------------------------------------------------------


def test_a_client_that_does_not_read_stops_the_server_reading(echo: Server) -> None:
    """Answers pile up only to a bound: the server pauses reading, so the client stalls."""
    payload = json.dumps({"request": "x" * 65536, "response": {"route_responses": []}}).encode()
    request = post(payload)
    total = 1000  # 64 MiB of requests, far beyond every socket buffer on the way
    client = Client(echo.port, timeout=60, rcvbuf=4096)
    sent = [0]

    def send_all() -> None:
        for _ in range(total):
            client.sock.sendall(request)
            sent[0] += 1

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    # Wait until the sender is stuck: it made no progress for a while.
    last = -1
    while sent[0] != last:
        last = sent[0]
        time.sleep(2)
    assert sent[0] < total, "the server read every request without its answers being read"
    # Reading the answers lets the server, then the sender, go on to the end.
    for _ in range(total):
        response = client.response()
        assert response.status == 200
        assert len(response.body) > 65536
    sender.join(60)
    assert sent[0] == total
    client.close()


def test_a_client_gone_mid_request_does_not_keep_its_concurrency_slot(
    test_models: dict[str, Path],
) -> None:
    args = ["--server", "native", "--sync-threads", "2", "--max-concurrency", "2"]
    server = Server([str(test_models["faulty"]), *args]).start()
    try:
        for _ in range(4):
            gone = Client(server.port)
            gone.send(post(faulty_body(fault="sleep", seconds=0.2)))
            time.sleep(0.05)  # the request is being answered
            # Reset, not FIN: the server sees the connection lost mid-request.
            gone.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            gone.close()
        # Once the abandoned calls are done, both slots are free again.
        statuses = []
        for _ in range(50):
            statuses.append(Client(server.port).send(post()).response().status)
            if statuses[-1] == 200:
                break
            time.sleep(0.1)
        assert statuses[-1] == 200, statuses
    finally:
        server.stop()


# -- shutdown --------------------------------------------------------------------------


def _started(marker: Path, timeout: float = 60) -> None:
    """Wait until the Faulty ensembler's call has begun (it creates `marker`)."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert time.monotonic() < deadline, "the request never reached the ensembler"
        time.sleep(0.01)


def test_sigterm_finishes_requests_in_flight_and_closes_idle_connections(
    test_models: dict[str, Path], tmp_path: Path
) -> None:
    server = Server([str(test_models["faulty"]), "--server", "native"]).start()
    busy, idle = Client(server.port), Client(server.port)
    assert idle.send(post()).response().status == 200
    marker = tmp_path / "started"
    busy.send(post(faulty_body(fault="sleep", seconds=2, started=str(marker))))
    _started(marker)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    response = busy.response()
    assert (response.status, response.json()) == (200, "ok")
    assert busy.closed() and idle.closed()
    assert server.process.wait(timeout=30) == 0
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        Client(server.port)


def test_requests_still_busy_after_the_grace_period_are_cut_off(
    test_models: dict[str, Path], tmp_path: Path
) -> None:
    args = ["--server", "native", "--sync-threads", "1", "--graceful-timeout", "1"]
    server = Server([str(test_models["faulty"]), *args]).start()
    busy = Client(server.port)
    marker = tmp_path / "started"
    busy.send(post(faulty_body(fault="sleep", seconds=10, started=str(marker))))
    _started(marker)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    assert busy.closed()  # without an answer
    # It exits by itself (stop() would send a second SIGTERM, which forces the exit).
    code = server.process.wait(timeout=30)
    _, log = server.stop()
    assert code == 0, log
    assert "still busy" in log
    busy.close()


def test_a_second_signal_exits_at_once(test_models: dict[str, Path], tmp_path: Path) -> None:
    server = Server([str(test_models["faulty"]), "--server", "native"]).start()
    busy = Client(server.port)
    marker = tmp_path / "started"
    busy.send(post(faulty_body(fault="sleep", seconds=60, started=str(marker))))
    _started(marker)
    assert server.process is not None
    # Signals sent back to back may merge into one: repeat until the process is gone.
    while server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(0.2)
    code, log = server.stop()
    assert code == 1
    assert "second SIGTERM" in log
    busy.close()


# -- --busy-poll ----------------------------------------------------------------------


@pytest.fixture(scope="module", params=["faulty", "async"])
def busy_polling(request: pytest.FixtureRequest, test_models: dict[str, Path]) -> Iterator[Server]:
    # 5 ms of polling: far longer than a request takes here, so that a poll in the wrong
    # place (before pipelined requests already received, before a new connection's
    # accept) would hold up what these tests send.
    model = str(test_models[request.param])
    server = Server([model, "--server", "native", "--busy-poll", "5000"]).start()
    yield server
    server.stop()


def test_busy_polling_answers_each_request_in_order(busy_polling: Server) -> None:
    client = Client(busy_polling.port)
    try:
        one_by_one = []
        for n in range(10):  # one at a time: each arrives while the worker polls
            client.send(post(sum_body(n)))
            one_by_one.append(client.response())
        assert [a.status for a in one_by_one] == [200] * 10
        client.send(b"".join(post(sum_body(n)) for n in range(10)))
        pipelined = [client.response() for _ in range(10)]
        assert [a.body for a in pipelined] == [a.body for a in one_by_one]
    finally:
        client.close()


def test_busy_polling_lets_a_new_connection_in(busy_polling: Server) -> None:
    first = Client(busy_polling.port)
    try:
        first.send(post(sum_body(1)))
        assert first.response().status == 200
        # The worker now polls for `first`'s next request; a newcomer is served.
        second = Client(busy_polling.port)
        second.send(post(sum_body(2)))
        assert second.response().status == 200
        second.close()
        first.send(post(sum_body(3)))
        assert first.response().status == 200
    finally:
        first.close()
