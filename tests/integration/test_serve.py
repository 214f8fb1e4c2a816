"""The real `pyfunc-ensembler serve` process, over loopback HTTP, with 1 and 2 workers."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Server, alive, children, fixture_cases, wait_for_children

ROUTES = [
    {"route": "b", "data": 2, "is_default": False},
    {"route": "a", "data": 1, "is_default": True},
]
VALID = {"request": {"fault": None}, "response": {"route_responses": ROUTES}}


@pytest.fixture(params=[1, 2], ids=["1worker", "2workers"])
def workers(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("case", fixture_cases(), ids=lambda c: f"{c['ensembler']}-{c['case']}")
def test_turing_fixtures(
    servers: Callable[..., Server],
    fixtures_dir: Path,
    front_end: str,
    workers: str,
    case: dict[str, Any],
) -> None:
    server = servers(
        str(fixtures_dir / case["ensembler"]), "--server", front_end, "--workers", workers
    )
    status, answer = server.post_json(case["body"], case["headers"])
    assert (status, answer) == (
        case["turing_runner_answer"]["status"],
        case["turing_runner_answer"]["json"],
    )


def test_arguments_reach_the_ensembler(
    servers: Callable[..., Server], test_models: dict[str, Path], front_end: str
) -> None:
    server = servers(str(test_models["echo"]), "--server", front_end)
    body = {
        "request": {"q": 1},
        "response": {
            "route_responses": ROUTES,
            "experiment": {"configuration": {"t": 1}},
            "enricher_response": {"e": 2},
        },
    }
    status, answer = server.post_json(body, {"turing-REQ-id": "r-9", "X-Country": "ID"})
    assert status == 200
    assert answer["input"] == {"q": 1}
    assert answer["predictions"] == {
        "a": {"data": 1, "is_default": True},
        "b": {"data": 2, "is_default": False},
    }
    assert answer["treatment_config"] == {"configuration": {"t": 1}}
    assert answer["enricher_response"] == {"e": 2}
    assert answer["request_id"] == "r-9"
    assert {"Turing-Req-Id", "X-Country", "Content-Length"} <= set(answer["header_names"])


def test_old_router_without_enricher_key(
    servers: Callable[..., Server], test_models: dict[str, Path], front_end: str
) -> None:
    server = servers(str(test_models["echo"]), "--server", front_end)
    status, answer = server.post_json(
        {"request": 1, "response": {"route_responses": [], "experiment": {}}}
    )
    assert status == 200
    assert (answer["enricher_response"], answer["treatment_config"]) == (None, {})


def test_chunked_request_body(
    servers: Callable[..., Server], test_models: dict[str, Path], front_end: str
) -> None:
    server = servers(str(test_models["echo"]), "--server", front_end)
    payload = json.dumps(VALID).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/ensemble", body=iter([payload[:10], payload[10:]]), encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["input"] == {"fault": None}
    conn.close()


def test_async_ensembler(
    servers: Callable[..., Server], test_models: dict[str, Path], front_end: str
) -> None:
    server = servers(str(test_models["async"]), "--server", front_end)
    assert server.post_json(VALID) == (200, 3)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("array", [0.0, 0.5, 1.0]),
        ("scalar", 7),
        ("series", [1, 2]),
        ("frame", [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]),
        ("nan", None),
    ],
)
def test_numpy_and_pandas_answers(
    servers: Callable[..., Server],
    test_models: dict[str, Path],
    front_end: str,
    kind: str,
    expected: Any,
) -> None:
    server = servers(str(test_models["numpy"]), "--server", front_end)
    assert server.post_json({"request": {"kind": kind}, "response": {"route_responses": []}}) == (
        200,
        expected,
    )


ERRORS = [
    ("POST", "/ensemble", b"{", 400, "invalid_json"),
    ("POST", "/ensemble", b"", 400, "invalid_json"),
    ("POST", "/ensemble", b'"\xff"', 400, "invalid_utf8"),
    ("POST", "/ensemble", b"[1]", 400, "invalid_request"),
    ("POST", "/ensemble", b'{"response": {"route_responses": []}}', 400, "invalid_request"),
    (
        "POST",
        "/ensemble",
        b'{"request": 1, "response": {"route_responses": 3}}',
        400,
        "invalid_request",
    ),
    ("GET", "/ensemble", None, 405, "method_not_allowed"),
    ("POST", "/nowhere", b"{}", 404, "not_found"),
    (
        "POST",
        "/ensemble",
        json.dumps({**VALID, "request": {"fault": "raise"}}).encode(),
        500,
        "ensemble_error",
    ),
    (
        "POST",
        "/ensemble",
        json.dumps({**VALID, "request": {"fault": "unserializable"}}).encode(),
        500,
        "serialization_error",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "kind"), ERRORS, ids=[e[4] + e[1] for e in ERRORS]
)
def test_errors_are_json_and_the_server_keeps_serving(
    servers: Callable[..., Server],
    test_models: dict[str, Path],
    front_end: str,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    kind: str,
) -> None:
    server = servers(str(test_models["faulty"]), "--server", front_end)
    got, headers, payload = server.request(method, path, body)
    assert got == status
    assert headers["content-type"] == "application/json"
    error = json.loads(payload)["error"]
    assert error["type"] == kind and error["message"]
    assert "traceback" not in error and "Traceback" not in error["message"]
    if status == 405:
        assert headers["allow"] == "POST"
    assert server.post_json(VALID) == (200, "ok")


def test_debug_puts_the_traceback_in_errors(
    servers: Callable[..., Server], test_models: dict[str, Path], front_end: str
) -> None:
    server = servers(str(test_models["faulty"]), "--server", front_end, "--debug")
    status, answer = server.post_json({**VALID, "request": {"fault": "raise"}})
    assert status == 500
    assert "ValueError: bad route data" in "".join(answer["error"]["traceback"])


def _raw_exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return received


def test_declared_body_over_the_limit_gets_413(
    servers: Callable[..., Server], test_models: dict[str, Path], front_end: str
) -> None:
    server = servers(str(test_models["faulty"]), "--server", front_end, "--max-body-size", "1000")
    reply = _raw_exchange(
        server.port,
        b"POST /ensemble HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n" + b"x" * 100,
    )
    assert reply.startswith(b"HTTP/1.1 413")
    assert b'"payload_too_large"' in reply
    assert server.post_json(VALID) == (200, "ok")


def test_chunked_body_over_the_limit_gets_413(
    servers: Callable[..., Server], test_models: dict[str, Path], front_end: str
) -> None:
    server = servers(str(test_models["faulty"]), "--server", front_end, "--max-body-size", "1000")
    chunk = b"800\r\n" + b"x" * 0x800 + b"\r\n"
    request = (
        b"POST /ensemble HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunk * 4
        + b"0\r\n\r\n"
    )
    reply = _raw_exchange(server.port, request)
    assert reply.startswith(b"HTTP/1.1 413")
    assert server.post_json(VALID) == (200, "ok")


def _wait_for_exit(pid: int, workers: set[int], timeout: float = 30) -> set[int]:
    """The workers of `workers` that have exited (and been reaped) by now."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gone = workers - set(children(pid))
        if gone:
            return gone
        time.sleep(0.02)
    raise AssertionError("no worker exited")


@pytest.mark.parametrize("how", ["sigkill", "exit3"])
def test_a_dead_worker_is_replaced(test_models: dict[str, Path], front_end: str, how: str) -> None:
    server = Server([str(test_models["faulty"]), "--server", front_end, "--workers", "2"]).start()
    try:
        assert server.process is not None
        before = wait_for_children(server.process.pid, 2, set())
        if how == "sigkill":
            os.kill(before[0], signal.SIGKILL)
            dead = {before[0]}
        else:
            # One worker takes the poisoned request and exits with code 3.
            with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
                server.post_json({**VALID, "request": {"fault": "exit"}})
            dead = _wait_for_exit(server.process.pid, set(before))
        # The other worker keeps answering meanwhile.
        assert server.post_json(VALID) == (200, "ok")
        wait_for_children(server.process.pid, 1, set(before))
        assert len(children(server.process.pid)) == 2
        assert dead and not dead & set(children(server.process.pid))
        for _ in range(10):
            assert server.post_json(VALID) == (200, "ok")
    finally:
        code, log = server.stop()
    assert code == 0
    assert "starting a new one" in log


def test_workers_die_with_a_killed_supervisor(test_models: dict[str, Path], front_end: str) -> None:
    server = Server([str(test_models["faulty"]), "--server", front_end, "--workers", "2"]).start()
    assert server.process is not None
    workers = wait_for_children(server.process.pid, 2, set())
    server.process.kill()
    server.process.wait(10)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers)
