"""Ensemblers that misbehave: answer NaN, block, leak, kill their own process (those that
raise or answer what JSON cannot hold: tests/integration/test_serve.py's error cases).
The affected request gets a clear answer (a 5xx) or, when the worker itself dies, a
closed connection; other workers keep serving; a dead worker is replaced; readiness
tells the truth."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Server
from tests.reliability.net import VALID, body

DIED = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def hazard(kind: str, **fields: Any) -> dict[str, Any]:
    return body({"hazard": kind, **fields})


def children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as file:
        return {int(p) for p in file.read().split()}


def wait_for_workers(server: Server, count: int, other_than: set[int] | None = None) -> set[int]:
    """The supervisor's workers once there are `count` of them (and not `other_than`)."""
    assert server.process is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = children(server.process.pid)
        if len(workers) == count and workers != other_than:
            return workers
        time.sleep(0.05)
    raise AssertionError(f"wanted {count} workers other than {other_than}, have {workers}")


@pytest.fixture
def two_workers(
    reliability_models: dict[str, Path], front_end: str
) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(*extra: str) -> Server:
        model = str(reliability_models["hazard"])
        server = Server([model, "--server", front_end, "--workers", "2", *extra]).start()
        started.append(server)
        return server

    yield start
    for server in started:
        code, log = server.stop()
        assert code == 0, log


def test_nan_and_infinity_become_null(
    servers: Callable[..., Server], reliability_models: dict[str, Path], front_end: str
) -> None:
    server = servers(str(reliability_models["hazard"]), "--server", front_end)
    status, headers, payload = server.request(
        "POST", "/ensemble", json.dumps(hazard("nan")).encode()
    )
    assert (status, headers["content-type"]) == (200, "application/json")
    # Strict JSON (no NaN/Infinity tokens), as Turing's orjson writes it.
    assert json.loads(payload, parse_constant=lambda c: pytest.fail(f"non-JSON {c}")) == {
        "nan": None,
        "inf": None,
        "-inf": None,
        "x": 1.5,
    }


KILLS = {
    "exit-0": {"hazard": "exit", "code": 0},
    "exit-1": {"hazard": "exit", "code": 1},
    "exit-3": {"hazard": "exit", "code": 3},
    "exit-70": {"hazard": "exit", "code": 70},
    "segv": {"hazard": "segv"},
    "sigkill": {"hazard": "sigkill"},
}


@pytest.mark.parametrize("how", list(KILLS))
def test_a_worker_that_kills_itself_is_replaced(
    two_workers: Callable[..., Server], how: str
) -> None:
    server = two_workers()
    before = wait_for_workers(server, 2)
    # The affected request: its worker is gone, so the connection closes unanswered.
    with pytest.raises(DIED):
        server.post_json(body(KILLS[how]))
    # The other worker keeps serving meanwhile, and readiness stays true: every worker
    # that can answer has its model loaded.
    assert server.post_json(VALID) == (200, "ok")
    assert server.request("GET", "/readyz")[0] == 200
    # The dead one is replaced by a new process.
    after = wait_for_workers(server, 2, other_than=before)
    assert len(after - before) == 1
    for _ in range(10):
        assert server.post_json(VALID) == (200, "ok")
        assert server.request("GET", "/readyz")[0] == 200


def test_one_poisoned_request_in_100_fails_alone(two_workers: Callable[..., Server]) -> None:
    """One client, a new connection per request (as a router's would be after an error):
    every request but the poisoned one gets 200, with no retry."""
    server = two_workers()
    outcomes: list[Any] = []
    for index in range(100):
        request = hazard("exit", code=3) if index == 50 else VALID
        try:
            outcomes.append(server.post_json(request)[0])
        except DIED as exc:
            outcomes.append(type(exc).__name__)
    assert outcomes[:50] + outcomes[51:] == [200] * 99
    assert outcomes[50] != 200


CLIENTS = 4


def test_concurrent_requests_lost_with_a_poisoned_worker_are_bounded(
    two_workers: Callable[..., Server],
) -> None:
    """Four clients at once. A worker that dies takes with it the requests it had already
    accepted and not answered: at most one per other client here (each has one in flight).
    This is the documented limit of in-process ensemblers (docs/reliability.md)."""
    server = two_workers()
    poisoned = {25, 75}

    def one(index: int) -> Any:
        try:
            return server.post_json(hazard("exit", code=3) if index in poisoned else VALID)[0]
        except DIED as exc:
            return type(exc).__name__

    with ThreadPoolExecutor(CLIENTS) as pool:
        outcomes = list(pool.map(one, range(100)))
    lost = [i for i, o in enumerate(outcomes) if o != 200 and i not in poisoned]
    assert all(outcomes[i] != 200 for i in poisoned)
    assert len(lost) <= len(poisoned) * (CLIENTS - 1), outcomes
    print(f"lost besides the poisoned: {len(lost)} of 98")


def test_blocking_without_a_deadline_leaves_the_other_worker_serving(
    two_workers: Callable[..., Server],
) -> None:
    server = two_workers()
    blocked: list[Any] = []
    payload = json.dumps(hazard("block", seconds=10)).encode()

    def block() -> None:  # a client timeout well beyond the 10 s it blocks
        status, _, answer = server.request("POST", "/ensemble", payload, timeout=60)
        blocked.append((status, json.loads(answer)))

    thread = threading.Thread(target=block)
    thread.start()
    try:
        time.sleep(0.5)  # not a threshold: only lets the blocking request reach its worker
        # A new connection each: the blocked worker accepts none while it blocks.
        assert [server.post_json(VALID)[0] for _ in range(20)] == [200] * 20
        assert server.request("GET", "/readyz")[0] == 200
    finally:
        thread.join(30)
    assert blocked == [(200, "ok")]


@pytest.mark.parametrize("threads", ["0", "2"], ids=["inline", "thread-pool"])
def test_blocking_with_a_deadline_gets_504(
    servers: Callable[..., Server],
    reliability_models: dict[str, Path],
    front_end: str,
    threads: str,
) -> None:
    """--request-timeout 1: a thread-pool call is given up at the deadline; an inline sync
    call cannot be interrupted, so its late answer becomes the 504 when it returns."""
    server = servers(
        str(reliability_models["hazard"]),
        "--server",
        front_end,
        "--request-timeout",
        "1",
        "--sync-threads",
        threads,
    )
    payload = json.dumps(hazard("block", seconds=10)).encode()
    status, _, answer = server.request("POST", "/ensemble", payload, timeout=30)
    assert (status, json.loads(answer)["error"]["type"]) == (504, "deadline_exceeded")
    assert server.post_json(VALID) == (200, "ok")


LIMITED = (
    "import resource, runpy, sys; "
    "limit = int(sys.argv.pop(1)); "
    "resource.setrlimit(resource.RLIMIT_AS, (limit, limit)); "
    "sys.argv[0] = 'pyfunc_ensembler'; "
    "runpy.run_module('pyfunc_ensembler', run_name='__main__', alter_sys=True)"
)


def test_a_leaking_ensembler_gets_500s_and_the_server_stays_up(
    reliability_models: dict[str, Path], front_end: str
) -> None:
    """Under an address-space limit (as a container's memory limit would be, but without
    the OOM killer), leaking requests get 500 MemoryError; the process stays alive.

    Without a limit the kernel's OOM killer ends the worker with SIGKILL, which
    `test_a_worker_that_kills_itself_is_replaced[sigkill]` covers."""
    server = Server([str(reliability_models["hazard"]), "--server", front_end])
    assert server.args[1:3] == ["-m", "pyfunc_ensembler"]
    server.args[1:3] = ["-c", LIMITED, str(768 << 20)]
    server.start()
    try:
        statuses: list[int] = []
        for _ in range(40):  # 40 x 32 MiB would be 1.25 GiB: over the limit
            status, answer = server.post_json(hazard("leak", bytes=32 << 20))
            statuses.append(status)
            if status != 200:
                assert answer["error"]["type"] == "ensemble_error"
                assert answer["error"]["message"].startswith("MemoryError")
                break
        assert statuses[-1] == 500
        assert server.request("GET", "/healthz")[0] == 200
        assert server.post_json(VALID) == (200, "ok")
    finally:
        code, log = server.stop()
    assert code == 0, log
