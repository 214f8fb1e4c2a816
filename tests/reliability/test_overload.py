"""The short version of `make soak` (bench/soak.py): seconds, not minutes. It asserts on
statuses, counts and memory growth only, never on latency figures."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import soak
from tests.helpers import Server
from tests.reliability.net import post_bytes, read_response

CONCURRENCY = 10
WAIT = 0.05


@pytest.fixture(scope="module")
def waiter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return soak.save_waiter(tmp_path_factory.mktemp("soak") / "waiter")


@pytest.fixture
def server(waiter: Path, front_end: str) -> Iterator[Server]:
    started = Server(
        [str(waiter), "--server", front_end, "--max-concurrency", str(CONCURRENCY)]
    ).start()
    try:
        yield started
    finally:
        code, log = started.stop()
        assert code == 0, log


def test_overload_recovery_and_a_short_soak(server: Server) -> None:
    assert server.process is not None
    results = soak.run(
        server.port,
        server.process.pid,
        wait=WAIT,
        concurrency=CONCURRENCY,
        phase_seconds=2,
        soak_seconds=6,
    )
    print(json.dumps(results))
    # At 3x capacity: only 200s and 503s (with Retry-After), no timeout, no dropped
    # connection; after it, every request succeeds at once; the soak has no error and
    # its memory grows by less than 5 % after the warm-up.
    assert soak.problems(results) == []
    assert results["overload"]["counts"]["200"] > 0


def test_a_burst_is_held_to_the_concurrency_limit(server: Server) -> None:
    payload = soak.request_bytes(server.port, 0.5)
    statuses = _statuses_together(server.port, payload, 3 * CONCURRENCY)
    assert set(statuses) <= {200, 503}
    assert statuses.count(200) <= CONCURRENCY


def test_requests_piling_up_behind_an_inline_sync_ensembler_are_held_to_the_limit(
    test_models: dict[str, Path], front_end: str
) -> None:
    # A sync ensembler blocks the loop: requests arriving meanwhile on open connections
    # (a router's keep-alive pool) are delivered in one burst when it returns. Past
    # --max-concurrency they get 503 at once, so an accepted request waits for at most
    # `limit` others, whatever the load.
    limit, clients = 3, 12
    server = Server(
        [str(test_models["faulty"]), "--server", front_end, "--max-concurrency", str(limit)]
    ).start()
    slow = {"request": {"fault": "sleep", "seconds": 0.3}, "response": {"route_responses": []}}
    quick = {"request": {}, "response": {"route_responses": []}}
    try:
        statuses = _statuses_together(
            server.port,
            post_bytes(json.dumps(slow).encode()),
            clients,
            warm=post_bytes(json.dumps(quick).encode()),  # in use, as a router's pool is
        )
    finally:
        server.stop()
    assert set(statuses) <= {200, 503}
    # At most `limit` of the first burst (those that arrived with the first request),
    # then at most `limit` of the burst that piled up behind them.
    assert statuses.count(200) <= 2 * limit
    assert statuses.count(503) >= clients - 2 * limit


def _statuses_together(
    port: int, request: bytes, clients: int, warm: bytes | None = None
) -> list[int]:
    """Send `request` at once on `clients` connections (each first answering `warm`)."""
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(clients)]
    try:
        if warm is not None:
            for sock in sockets:
                sock.sendall(warm)
                assert read_response(sock)[0] == 200
        for sock in sockets:
            sock.sendall(request)
        return [read_response(sock)[0] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
