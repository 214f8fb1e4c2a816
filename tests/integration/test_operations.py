"""Operations against the real server process: probes, metrics across workers, logs, shutdown."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import Server, free_port
from tests.helpers import scrape as scrape_text

VALID = {"request": {}, "response": {"route_responses": [{"route": "a", "data": 1}]}}
SLOW = {"request": {"fault": "sleep", "seconds": 2}, "response": {"route_responses": []}}


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = scrape_text(port)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def ok_count(port: int) -> float:
    return scrape(port).get(("ensembler_requests_total", (("code", "200"),)), 0.0)


def test_probes_answer(
    servers: Callable[..., Server], test_models: dict[str, Path], front_end: str
) -> None:
    server = servers(str(test_models["echo"]), "--server", front_end)
    assert server.request("GET", "/healthz")[0] == 200
    status, _, body = server.request("GET", "/readyz")
    assert (status, json.loads(body)) == (200, {"status": "ready"})
    status, _, body = server.request("GET", "/openapi.json")
    assert status == 200 and json.loads(body)["openapi"].startswith("3.")


def test_metrics_add_up_across_two_workers(test_models: dict[str, Path], front_end: str) -> None:
    server = Server([str(test_models["echo"]), "--server", front_end, "--workers", "2"]).start()
    try:
        before = ok_count(server.port)
        requests = 40
        for _ in range(requests):  # a new connection each: the kernel spreads them
            assert server.post_json(VALID)[0] == 200
        # Whichever worker a scrape reaches, it reports both workers' requests.
        for _ in range(6):
            scraped = scrape(server.port)
            assert scraped[("ensembler_requests_total", (("code", "200"),))] == before + requests
            assert scraped[("ensembler_workers", ())] == 2
            assert scraped[("ensembler_request_duration_seconds_count", ())] >= before + requests
        model = next(dict(labels) for name, labels in scraped if name == "ensembler_model_info")
        assert model["model_uri"] == str(test_models["echo"])
        assert model["ensembler_class"].endswith("Echo")
    finally:
        assert server.stop()[0] == 0


def test_json_logs_and_access_log_carry_the_request_id(
    test_models: dict[str, Path], front_end: str
) -> None:
    server = Server(
        [str(test_models["faulty"]), "--server", front_end, "--log-format", "json", "--access-log"]
    ).start()
    secret = {"request": {"fault": "raise", "card": "4111-SECRET"}, "response": VALID["response"]}
    assert server.post_json(secret, {"Turing-Req-Id": "req-42"})[0] == 500
    assert server.post_json(VALID, {"Turing-Req-Id": "req-43"})[0] == 200
    _, err = server.stop()
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    by_id = {line.get("request_id"): line for line in lines if line["logger"].endswith("access")}
    assert "POST /ensemble 500" in by_id["req-42"]["message"]
    assert "POST /ensemble 200" in by_id["req-43"]["message"]
    error = next(line for line in lines if line["level"] == "error")
    assert error["request_id"] == "req-42" and "bad route data" in error["message"]
    assert "SECRET" not in err


def test_no_access_log_by_default(
    servers: Callable[..., Server], test_models: dict[str, Path]
) -> None:
    server = Server([str(test_models["echo"])]).start()
    assert server.post_json(VALID, {"Turing-Req-Id": "quiet-1"})[0] == 200
    _, err = server.stop()
    assert "quiet-1" not in err


def _in_flight_soon(metrics_port: int) -> None:
    """Wait until the slow request is being answered (seen on the metrics port)."""
    for _ in range(400):
        if scrape(metrics_port).get(("ensembler_requests_in_flight", ()), 0) >= 1:
            return
        time.sleep(0.025)
    raise AssertionError("the slow request never started")


def _post_in_background(server: Server, body: Any) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []

    def post() -> None:
        try:
            result.append(server.post_json(body))
        except OSError as exc:
            result.append(exc)

    thread = threading.Thread(target=post)
    thread.start()
    return thread, result


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_lets_the_request_in_flight_finish(
    test_models: dict[str, Path], front_end: str, workers: str
) -> None:
    metrics_port = free_port()
    server = Server(
        [
            str(test_models["faulty"]),
            "--server",
            front_end,
            "--workers",
            workers,
            "--metrics-port",
            str(metrics_port),
        ]
    ).start()
    thread, result = _post_in_background(server, SLOW)
    _in_flight_soon(metrics_port)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    thread.join(30)
    assert result == [(200, "ok")]
    server.process.wait(30)  # exits by itself, with no second signal
    code, err = server.stop()
    assert code == 0, err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_second_signal_forces_the_exit(
    test_models: dict[str, Path], front_end: str, workers: str
) -> None:
    metrics_port = free_port()
    args = [str(test_models["faulty"]), "--server", front_end, "--workers", workers]
    server = Server([*args, "--metrics-port", str(metrics_port)]).start()
    very_slow = {"request": {"fault": "sleep", "seconds": 60}, "response": {"route_responses": []}}
    thread, result = _post_in_background(server, very_slow)
    _in_flight_soon(metrics_port)
    assert server.process is not None
    # Signals sent back to back may merge into one: repeat until the process is gone.
    for _ in range(100):
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(0.2)
            break
        except subprocess.TimeoutExpired:
            pass
    code, err = server.stop()
    thread.join(30)
    assert code == 1
    assert isinstance(result[0], OSError)  # the request was dropped, not answered
    if workers == "1":
        assert "second SIGTERM" in err
