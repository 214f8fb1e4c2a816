"""``--isolate``: the ensembler in a process of its own per worker. An ensembler that kills
its process gets its request a 500 instead of a closed connection, the worker lives on,
and nothing else changes: the same answers, headers and errors as in-process."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Server, alive, fixture_cases
from tests.reliability.net import VALID, body
from tests.reliability.test_faulty_ensemblers import KILLS, children, hazard

CRASH_MESSAGES = {
    "exit-0": "exited with code 0",
    "exit-1": "exited with code 1",
    "exit-3": "exited with code 3",
    "exit-70": "exited with code 70",
    "segv": "killed by SIGSEGV",
    "sigkill": "killed by SIGKILL",
}


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (none once it has ended)."""
    try:
        below = children(pid)
    except FileNotFoundError:
        return set()
    return below.union(*(descendants(child) for child in below))


def wait_until_gone(pids: set[int]) -> set[int]:
    """`pids` still alive after waiting up to 10 s for them to end."""
    deadline = time.monotonic() + 10
    while (left := {pid for pid in pids if alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.fixture
def isolated(reliability_models: dict[str, Path]) -> Iterator[Callable[..., Server]]:
    """Start an isolated server on the hazard model (or the model given); each must end
    with status 0 and leave no process behind."""
    started: list[Server] = []

    def start(*extra: str, model: str = "hazard") -> Server:
        path = str(reliability_models.get(model, model))
        server = Server([path, "--isolate", *extra]).start()
        started.append(server)
        return server

    yield start
    for server in started:
        assert server.process is not None
        family = descendants(server.process.pid)
        code, log = server.stop()
        assert code == 0, log
        assert not wait_until_gone(family), log


def ensembler_pid(server: Server) -> int:
    status, pid = server.post_json(hazard("pid"))
    assert status == 200
    return int(pid)


@pytest.mark.parametrize("front_end", ["native", "asgi"])
def test_an_ensembler_that_kills_its_process_gets_a_500(
    isolated: Callable[..., Server], front_end: str
) -> None:
    server = isolated("--server", front_end)
    assert server.process is not None
    worker = server.process.pid
    for how, request in KILLS.items():
        before = ensembler_pid(server)
        status, answer = server.post_json(body(request))
        assert status == 500, how
        assert answer["error"]["type"] == "ensembler_crashed"
        assert CRASH_MESSAGES[how] in answer["error"]["message"]
        # The worker lives on (no supervisor here: it is the server) with a new ensembler.
        assert server.post_json(VALID) == (200, "ok")
        assert server.process.poll() is None and server.process.pid == worker
        assert ensembler_pid(server) != before
        assert server.request("GET", "/readyz")[0] == 200


def test_one_poisoned_request_in_100_with_concurrent_clients_fails_alone(
    isolated: Callable[..., Server],
) -> None:
    """Four clients at once on two workers: only the poisoned requests fail, with 500,
    where in-process ensemblers lose what else their dying worker held."""
    server = isolated("--workers", "2")
    poisoned = {25, 75}

    def one(index: int) -> Any:
        status, answer = server.post_json(hazard("exit", code=3) if index in poisoned else VALID)
        return status if status == 200 else (status, answer["error"]["type"])

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(one, range(100)))
    assert [o for i, o in enumerate(outcomes) if i not in poisoned] == [200] * 98
    assert [outcomes[i] for i in sorted(poisoned)] == [(500, "ensembler_crashed")] * 2


def test_a_sync_ensembler_past_the_deadline_is_killed(isolated: Callable[..., Server]) -> None:
    """In-process, a blocked sync call runs on after its 504 and holds what waits behind
    it; isolated, its process is killed at the deadline and a new one answers next."""
    server = isolated("--request-timeout", "1")
    before = ensembler_pid(server)
    payload = json.dumps(hazard("block", seconds=30)).encode()
    status, _, answer = server.request("POST", "/ensemble", payload, timeout=20)
    assert (status, json.loads(answer)["error"]["type"]) == (504, "deadline_exceeded")
    assert ensembler_pid(server) != before


def test_requests_queued_behind_a_crash_are_answered(isolated: Callable[..., Server]) -> None:
    """A sync ensembler takes one request at a time: those queued behind one that kills
    the process go to the next process, and succeed."""
    server = isolated()
    crash = threading.Thread(
        target=server.post_json, args=(hazard("block-then-exit", seconds=0.5),)
    )
    crash.start()
    time.sleep(0.2)  # not a threshold: lets the crashing request reach the process first
    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(lambda _: server.post_json(VALID), range(3)))
    crash.join()
    assert outcomes == [(200, "ok")] * 3


def test_a_leaking_ensembler_is_replaced_past_its_memory_limit(
    isolated: Callable[..., Server],
) -> None:
    server = isolated("--max-ensembler-rss", "200")
    pids = set()
    for _ in range(15):
        status, _ = server.post_json(hazard("leak", bytes=32 << 20))
        assert status == 200
        pids.add(ensembler_pid(server))
    # 15 x 32 MiB leaked in all: no process may have held more than 200 MiB of it.
    assert len(pids) >= 3


def test_an_async_ensembler_answers_concurrent_requests(isolated: Callable[..., Server]) -> None:
    server = isolated(model="async_wait")
    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(lambda _: server.post_json(body({"seconds": 0.2})), range(40)))
    assert outcomes == [(200, "ok")] * 40


def test_an_async_ensembler_that_crashes_fails_what_it_had_in_flight(
    isolated: Callable[..., Server],
) -> None:
    """An async process works on its requests at once, so its crash answers all of them
    500; the next request goes to a new process."""
    server = isolated(model="async_wait")
    with ThreadPoolExecutor(4) as pool:
        waiting = [pool.submit(server.post_json, body({"seconds": 2})) for _ in range(3)]
        time.sleep(0.5)  # not a threshold: lets the three reach the ensembler process
        crash = pool.submit(server.post_json, body({"seconds": 0, "exit": True}))
        outcomes = [f.result() for f in [*waiting, crash]]
    assert [(s, a["error"]["type"]) for s, a in outcomes] == [(500, "ensembler_crashed")] * 4
    assert server.post_json(body({"seconds": 0})) == (200, "ok")


def test_answers_match_in_process_ones(
    isolated: Callable[..., Server], fixtures_dir: Path, test_models: dict[str, Path]
) -> None:
    """Turing's expected answers and the arguments an ensembler receives, headers and
    request id included, cross the process boundary unchanged."""
    for case in fixture_cases():
        server = isolated(model=str(fixtures_dir / case["ensembler"]))
        expected = case["turing_runner_answer"]
        assert server.post_json(case["body"], case["headers"]) == (
            expected["status"],
            expected["json"],
        )
    echo = isolated(model=str(test_models["echo"]))
    status, answer = echo.post_json(VALID, {"turing-REQ-id": "r-9", "X-Country": "ID"})
    assert (status, answer["request_id"]) == (200, "r-9")
    assert {"Turing-Req-Id", "X-Country", "Content-Length"} <= set(answer["header_names"])


def test_errors_and_tracebacks_cross_unchanged(
    isolated: Callable[..., Server], test_models: dict[str, Path]
) -> None:
    server = isolated("--debug", model=str(test_models["faulty"]))
    status, answer = server.post_json({**VALID, "request": {"fault": "raise"}})
    assert (status, answer["error"]["type"]) == (500, "ensemble_error")
    assert "ValueError: bad route data" in "".join(answer["error"]["traceback"])
    status, answer = server.post_json({"response": {"route_responses": "x"}})
    assert (status, answer["error"]["type"]) == (400, "invalid_request")


def test_the_ensemble_time_metric_counts_the_call_in_the_other_process(
    isolated: Callable[..., Server],
) -> None:
    server = isolated()
    assert server.post_json(hazard("block", seconds=0.05)) == (200, "ok")
    _, _, text = server.request("GET", "/metrics")
    lines = text.decode().splitlines()
    total = next(
        line for line in lines if line.startswith("ensembler_ensemble_duration_seconds_sum")
    )
    assert float(total.split()[-1]) >= 0.05


def test_a_killed_worker_takes_its_ensembler_processes_with_it(
    isolated: Callable[..., Server],
) -> None:
    server = isolated("--workers", "2")
    assert server.process is not None
    ensembler_pid(server)
    workers = children(server.process.pid)
    victim = next(iter(workers))
    family = descendants(victim)
    os.kill(victim, signal.SIGKILL)
    assert family and not wait_until_gone(family)
    assert server.post_json(VALID) == (200, "ok")


def test_a_request_in_flight_finishes_on_sigterm(isolated: Callable[..., Server]) -> None:
    server = isolated()
    assert server.process is not None
    answers: list[Any] = []
    payload = json.dumps(hazard("block", seconds=1)).encode()
    thread = threading.Thread(
        target=lambda: answers.append(server.request("POST", "/ensemble", payload)[0])
    )
    thread.start()
    time.sleep(0.3)  # not a threshold: lets the request reach the ensembler process
    family = descendants(server.process.pid)
    server.process.send_signal(signal.SIGTERM)
    thread.join(20)
    assert answers == [200]
    assert server.process.wait(20) == 0
    assert family and not wait_until_gone(family)
