"""`http11.Connection` in-process, fed exact segments, for what TCP timing cannot pin down."""

from __future__ import annotations

import asyncio
import json
import select
import socket
from pathlib import Path

import pytest

from pyfunc_ensembler import http11
from pyfunc_ensembler.core import Core
from pyfunc_ensembler.http11 import Connection, Limits, ServerState
from pyfunc_ensembler.loader import load

VALID = json.dumps(
    {"request": {"fault": None}, "response": {"route_responses": [{"route": "a", "data": 1}]}}
).encode()
REQUEST = b"POST /ensemble HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (
    len(VALID),
    VALID,
)
CHUNKED_HEAD = b"POST /ensemble HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
LIMITS = Limits(
    max_body_size=64 * 1024, max_header_size=1024, receive_timeout=0, keepalive_timeout=0
)


class Transport:
    """What a connection writes, and whether it closed; enough of asyncio.Transport."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.written = b""
        self.closing = False
        self.eof = False
        self.sock = sock

    def get_extra_info(self, name: str) -> socket.socket | None:
        return self.sock if name == "socket" else None

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@pytest.fixture(scope="module")
def core(test_models: dict[str, Path]) -> Core:
    return Core(load(str(test_models["faulty"])))


@pytest.fixture
def connection(core: Core) -> tuple[Connection, Transport]:
    connection = Connection(ServerState(core, LIMITS))
    transport = Transport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport


def statuses(written: bytes) -> list[int]:
    return [int(line.split(b" ")[1]) for line in written.split(b"\r\n") if line[:5] == b"HTTP/"]


def test_a_request_fed_byte_by_byte(connection: tuple[Connection, Transport]) -> None:
    protocol, transport = connection
    request = REQUEST
    for i in range(len(request)):
        protocol.data_received(request[i : i + 1])
    assert statuses(transport.written) == [200]
    assert transport.written.endswith(b'"ok"')


def test_a_header_arriving_in_pieces_is_counted_before_it_ends(
    connection: tuple[Connection, Transport],
) -> None:
    protocol, transport = connection
    protocol.data_received(b"POST /ensemble HTTP/1.1\r\nX-Long: ")
    for _ in range(LIMITS.max_header_size):
        protocol.data_received(b"a")
        if transport.written:
            break
    assert statuses(transport.written) == [431]
    assert transport.eof  # closing lingering: our side shut, theirs still read


def test_chunk_framing_in_its_own_segments_is_not_counted_as_head(
    connection: tuple[Connection, Transport],
) -> None:
    protocol, transport = connection
    protocol.data_received(CHUNKED_HEAD)
    # Each chunk's size line, data and end in separate segments: far more framing bytes
    # than the head limit, none of them a header.
    body = VALID + b" " * LIMITS.max_header_size
    for byte in body:
        protocol.data_received(b"1\r\n")
        protocol.data_received(bytes([byte]))
        protocol.data_received(b"\r\n")
    protocol.data_received(b"0\r\n\r\n")
    assert statuses(transport.written) == [200]


def test_a_keepalive_timeout_of_zero_closes_after_each_answer(
    connection: tuple[Connection, Transport],
) -> None:
    protocol, transport = connection
    protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
    assert statuses(transport.written) == [200]
    assert b"\r\nConnection: close\r\n" in transport.written
    assert transport.closing


KEEP_ALIVE = Limits(
    max_body_size=64 * 1024, max_header_size=1024, receive_timeout=0, keepalive_timeout=75
)


def open_connections(core: Core, count: int) -> list[tuple[Connection, Transport]]:
    state = ServerState(core, KEEP_ALIVE)
    opened = []
    for _ in range(count):
        connection, transport = Connection(state), Transport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        opened.append((connection, transport))
    return opened


def test_answers_of_one_loop_pass_are_written_together_at_its_end(core: Core) -> None:
    """With other connections open, a fast request's keep-alive answer is held until the
    event loop's pass ends, so that the answers of the pass are written in a row; each is
    still one write, and pipelined answers keep their order."""

    async def scenario() -> None:
        (a, written_a), (b, written_b) = open_connections(core, 2)
        a.data_received(REQUEST + REQUEST)
        b.data_received(REQUEST)
        assert written_a.written == written_b.written == b""
        await asyncio.sleep(0)  # the pass ends
        # Two answers back to back (`statuses` reads one status line per line).
        assert written_a.written.count(b"HTTP/1.1 200 OK\r\n") == 2
        assert statuses(written_b.written) == [200]

    asyncio.run(scenario())


def test_a_held_answer_goes_out_before_its_connection_half_closes(core: Core) -> None:
    async def scenario() -> None:
        (a, written), _ = open_connections(core, 2)
        a.data_received(REQUEST)
        a.eof_received()
        assert statuses(written.written) == [200]

    asyncio.run(scenario())


def test_answers_are_not_held_with_one_connection_or_after_a_slow_request(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        [(alone, written)] = open_connections(core, 1)
        alone.data_received(REQUEST)
        assert statuses(written.written) == [200]
        monkeypatch.setattr(http11, "FLUSH_AFTER", 0.0)  # every request counts as slow
        (a, written_a), _ = open_connections(core, 2)
        a.data_received(REQUEST)
        assert statuses(written_a.written) == [200]

    asyncio.run(scenario())


def test_poll_readable_says_whether_something_arrived() -> None:
    poller = select.poll()
    ours, theirs = socket.socketpair()
    with ours, theirs:
        poller.register(ours, select.POLLIN)
        assert not http11.poll_readable(poller, 0.001)
        theirs.send(b"next request")
        assert http11.poll_readable(poller, 10.0)  # returns as soon as it is there


def test_busy_polling_starts_once_all_received_requests_are_answered(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--busy-poll: with one connection, the poll comes after the pass's answers (two
    pipelined here), never between them; with two connections open there is none, even
    for an answer written at once (after a slow request)."""
    polls: list[bytes] = []
    monkeypatch.setattr(http11, "poll_readable", lambda *_: polls.append(written.written))
    ours, theirs = socket.socketpair()

    async def scenario() -> None:
        state = ServerState(core, KEEP_ALIVE, busy_poll=0.001)
        connection = Connection(state)
        connection.connection_made(transport)  # type: ignore[arg-type]
        connection.data_received(REQUEST + REQUEST)
        await asyncio.sleep(0)
        assert len(polls) == 1 and polls[0].count(b"HTTP/1.1 200 OK\r\n") == 2
        other = Connection(state)
        other.connection_made(Transport())  # type: ignore[arg-type]
        monkeypatch.setattr(http11, "FLUSH_AFTER", 0.0)  # every request counts as slow
        connection.data_received(REQUEST)
        assert statuses(written.written[len(polls[0]) :]) == [200]  # written at once
        await asyncio.sleep(0)
        assert len(polls) == 1

    with ours, theirs:
        transport = written = Transport(ours)
        asyncio.run(scenario())
