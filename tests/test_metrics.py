"""Metrics that add up across workers, and the operations the core decides for every front end."""

from __future__ import annotations

import http.client
import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import prometheus_client
import pytest
from prometheus_client import values as prometheus_values
from prometheus_client.parser import text_string_to_metric_families

from pyfunc_ensembler import metrics
from pyfunc_ensembler.loader import ModelInfo
from pyfunc_ensembler.metrics import LATENCY_BUCKETS, Metrics
from tests.helpers import free_port, samples

INFO = ModelInfo("/models/m", "tests.Sum", "lean", "ensemble", "3.11.7", 0.25)


def test_slots_written_by_forked_workers_add_up() -> None:
    metrics = Metrics(workers=2)
    pids = []
    for slot, requests in ((0, 3), (1, 5)):
        pid = os.fork()
        if pid == 0:
            metrics.use_slot(slot)
            for _ in range(requests):
                metrics.observe(200, 0.0002, 0.0001, 100, 20)
            metrics.count(413)
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        assert os.waitpid(pid, 0)[1] == 0
    scraped = samples(metrics)
    assert scraped[("ensembler_requests_total", (("code", "200"),))] == 8
    assert scraped[("ensembler_requests_total", (("code", "413"),))] == 2
    assert scraped[("ensembler_request_duration_seconds_count", ())] == 8
    assert scraped[("ensembler_request_duration_seconds_bucket", (("le", "0.00025"),))] == 8
    assert scraped[("ensembler_request_duration_seconds_bucket", (("le", "0.0001"),))] == 0
    assert scraped[("ensembler_ensemble_duration_seconds_bucket", (("le", "0.0001"),))] == 8
    assert scraped[("ensembler_request_size_bytes_sum", ())] == 800
    assert scraped[("ensembler_workers", ())] == 2


def test_workers_slots_share_no_cache_line() -> None:
    # Both ends of a slot are written on every request (in-flight gauge, a histogram sum).
    assert metrics.SLOT_SIZE * 8 % 128 == 0
    assert metrics.HISTOGRAMS[-1].end <= metrics.SLOT_SIZE


def test_a_replacement_worker_keeps_its_slots_counts_but_not_its_in_flight() -> None:
    metrics = Metrics(workers=1)
    metrics.observe(200, 0.001, None, 1, 1)
    metrics.set_in_flight(4)
    metrics.use_slot(0)
    scraped = samples(metrics)
    assert scraped[("ensembler_requests_total", (("code", "200"),))] == 1
    assert scraped[("ensembler_requests_in_flight", ())] == 0


def test_a_value_on_a_bound_falls_in_that_bucket() -> None:
    metrics = Metrics()
    metrics.observe(200, LATENCY_BUCKETS[0], None, 0, 0)
    le = str(LATENCY_BUCKETS[0])
    assert samples(metrics)[("ensembler_request_duration_seconds_bucket", (("le", le),))] == 1


def test_model_info_and_load_time_are_exposed() -> None:
    scraped = samples(Metrics(info=metrics.model_info(INFO)))
    info = next(labels for name, labels in scraped if name == "ensembler_model_info")
    assert dict(info)["model_uri"] == "/models/m"
    assert dict(info)["ensembler_class"] == "tests.Sum"
    assert "pyfunc_ensembler_version" in dict(info)
    assert scraped[("ensembler_model_load_seconds", ())] == 0.25


@pytest.fixture
def multiprocess(monkeypatch: pytest.MonkeyPatch) -> Iterator[metrics.TheirMetrics]:
    """prometheus_client in multiprocess mode on a fresh directory, as `serve` sets it up
    (this process imported prometheus_client before: its value class is set anew)."""
    environ: dict[str, str] = {}
    theirs = metrics.TheirMetrics.prepare(environ)
    monkeypatch.setenv(metrics.MULTIPROCESS_DIR, environ[metrics.MULTIPROCESS_DIR])
    monkeypatch.setattr(prometheus_values, "ValueClass", prometheus_values.MultiProcessValue())
    yield theirs
    theirs.close()
    assert not os.path.exists(theirs.path)


def _in_children(*work: Callable[[], None]) -> None:
    """Run each of `work` in a forked process of its own (a worker), and reap them all."""
    pids = []
    for job in work:
        pid = os.fork()
        if pid == 0:
            try:
                job()
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        assert os.waitpid(pid, 0)[1] == 0


def test_an_ensemblers_metrics_add_up_over_processes_after_ours(
    multiprocess: metrics.TheirMetrics,
) -> None:
    # Made before the fork, as a model loaded once in the supervisor makes them.
    fallbacks = prometheus_client.Counter("fallbacks", "Fell back.", ["reason"], registry=None)
    score = prometheus_client.Histogram("score", "Scores.", buckets=(0.5, 1.0), registry=None)
    routes = prometheus_client.Summary("routes", "Routes.", registry=None)
    busy = prometheus_client.Gauge("busy", "Busy.", multiprocess_mode="livesum", registry=None)

    def worker(value: float) -> Callable[[], None]:
        def work() -> None:
            fallbacks.labels("missing").inc()
            score.observe(value)
            routes.observe(3)
            busy.set(1)

        return work

    _in_children(worker(0.2), worker(0.7))
    ours = Metrics(workers=2, theirs=multiprocess)
    ours.observe(200, 0.001, 0.0005, 10, 10)
    text = ours.render().decode()
    families = list(text_string_to_metric_families(text))
    names = [family.name for family in families]
    assert len(names) == len(set(names))  # one # TYPE per family
    assert text.count("# TYPE ") == len(names)
    scraped = samples(ours)
    assert scraped[("ensembler_requests_total", (("code", "200"),))] == 1
    assert scraped[("fallbacks_total", (("reason", "missing"),))] == 2
    assert scraped[("score_bucket", (("le", "0.5"),))] == 1
    assert scraped[("score_bucket", (("le", "+Inf"),))] == 2
    assert scraped[("score_sum", ())] == pytest.approx(0.9)
    assert scraped[("routes_count", ())] == 2 and scraped[("routes_sum", ())] == 6
    # Both workers have exited: a live gauge forgets them.
    assert scraped[("busy", ())] == 0


def test_a_live_gauge_forgets_an_ended_process_and_a_counter_does_not(
    multiprocess: metrics.TheirMetrics,
) -> None:
    answered = prometheus_client.Counter("answered", "Answered.", registry=None)
    busy = prometheus_client.Gauge("busy", "Busy.", multiprocess_mode="livesum", registry=None)
    answered.inc()
    busy.set(2)  # this process is alive: it stays
    ended, ready = os.pipe()
    pid = os.fork()
    if pid == 0:
        answered.inc()
        busy.set(5)
        os.close(ready)  # tell the parent the values are written, and stay alive
        os.read(ended, 1)
        os._exit(0)
    os.close(ready)
    os.read(ended, 1)  # the child's values are written
    assert samples(Metrics(theirs=multiprocess))[("busy", ())] == 7
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    multiprocess.process_ended(pid)
    assert not any(str(pid) in name and "gauge" in name for name in os.listdir(multiprocess.path))
    scraped = samples(Metrics(theirs=multiprocess))
    assert scraped[("busy", ())] == 2
    assert scraped[("answered_total", ())] == 2


def test_an_ensemblers_metric_named_like_ours_is_left_out(
    multiprocess: metrics.TheirMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    prometheus_client.Counter("ensembler_requests", "Clashes.", registry=None).inc()
    prometheus_client.Gauge(
        "ensembler_workers", "Clashes.", multiprocess_mode="max", registry=None
    ).set(3)
    prometheus_client.Counter("requests", "Does not.", registry=None).inc()
    for _ in range(2):  # the warning comes once per name, not once per scrape
        text = Metrics(theirs=multiprocess).render().decode()
    families = [family.name for family in text_string_to_metric_families(text)]
    assert families.count("ensembler_requests") == families.count("ensembler_workers") == 1
    assert "requests" in families
    assert "Clashes" not in text
    left_out = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(left_out) == 2


def test_no_ensembler_metric_no_lines(multiprocess: metrics.TheirMetrics) -> None:
    assert multiprocess.render() == b""
    assert Metrics(theirs=multiprocess).render() == Metrics().render()


def test_a_users_multiprocess_dir_is_emptied_of_old_files_and_kept(tmp_path: Path) -> None:
    (tmp_path / "counter_1.db").write_bytes(b"old run")
    (tmp_path / "notes.txt").write_text("not ours")
    for name in (metrics.MULTIPROCESS_DIR, metrics.MULTIPROCESS_DIR.lower()):
        environ = {name: str(tmp_path)}
        theirs = metrics.TheirMetrics.prepare(environ)
        assert environ[metrics.MULTIPROCESS_DIR] == str(tmp_path)
        assert sorted(os.listdir(tmp_path)) == ["notes.txt"]
        theirs.close()
        assert tmp_path.is_dir()


def test_the_metrics_port_answers_other_paths_with_the_one_error_shape() -> None:
    port = free_port()
    metrics.serve_metrics(Metrics(), "127.0.0.1", port)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/nowhere?x=1")
    response = connection.getresponse()
    assert (response.status, response.getheader("content-type")) == (404, "application/json")
    message = "no such path: /nowhere (this port serves GET /metrics)"
    assert json.loads(response.read()) == {"error": {"type": "not_found", "message": message}}
    connection.request("GET", "/metrics")
    response = connection.getresponse()
    assert (response.status, response.getheader("content-type")) == (200, metrics.CONTENT_TYPE)
    assert b"ensembler_workers 1" in response.read()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "BREW"])
def test_the_metrics_port_refuses_other_methods_with_405_in_the_one_error_shape(
    method: str,
) -> None:
    port = free_port()
    metrics.serve_metrics(Metrics(), "127.0.0.1", port)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, "/metrics", body=b'{"a": 1}')
    response = connection.getresponse()
    assert response.status == 405
    assert response.getheader("content-type") == "application/json"
    assert response.getheader("allow") == "GET, HEAD"
    message = f"/metrics takes GET, not {method}"
    assert json.loads(response.read()) == {
        "error": {"type": "method_not_allowed", "message": message}
    }
    # The body was not read: the connection is closed rather than parsed further.
    assert response.getheader("connection") == "close"
    connection.request(method, "/nowhere")
    response = connection.getresponse()
    assert response.status == 404
    assert json.loads(response.read())["error"]["type"] == "not_found"


def test_the_metrics_port_answers_head_as_get_without_the_body() -> None:
    port = free_port()
    metrics.serve_metrics(Metrics(), "127.0.0.1", port)
    answers = {}
    for method in ("HEAD", "GET"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"{method} /metrics HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            received = b""
            while chunk := sock.recv(65536):  # the server closes after one answer
                received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        answers[method] = head.split(b"\r\n"), body
    (head_lines, head_body), (get_lines, get_body) = answers["HEAD"], answers["GET"]
    assert head_lines[0] == get_lines[0] == b"HTTP/1.0 200 OK"
    assert head_body == b"" and b"ensembler_workers 1" in get_body
    length = f"Content-Length: {len(get_body)}".encode()
    assert length in head_lines and length in get_lines


@pytest.mark.parametrize(
    ("request_head", "status", "error_type"),
    [
        (b"GET /metrics HTTP/x.y\r\n\r\n", 400, "bad_request"),
        # One byte past http.server's longest line, and nothing after it: a byte left
        # unread when the server closes would reset the connection, answer and all.
        (b"GET /metrics HTTP/1.1\r\nX: " + b"y" * 65534, 431, "headers_too_large"),
    ],
)
def test_the_metrics_port_answers_a_request_it_cannot_parse_with_the_one_error_shape(
    request_head: bytes, status: int, error_type: str
) -> None:
    port = free_port()
    metrics.serve_metrics(Metrics(), "127.0.0.1", port)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_head)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.0 {status} ".encode())
    assert b"Content-Type: application/json" in head.split(b"\r\n")
    assert json.loads(body)["error"]["type"] == error_type


def test_a_killed_servers_directory_is_removed_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    alive = os.getppid()  # pytest's parent: a server still running
    for pid in (dead, alive):
        (tmp_path / f"pyfunc-ensembler-metrics-{pid}-x").mkdir()
    (tmp_path / "someone-elses").mkdir()
    theirs = metrics.TheirMetrics.prepare({})
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(
        [f"pyfunc-ensembler-metrics-{alive}-x", "someone-elses", os.path.basename(theirs.path)]
    )
    theirs.close()


def test_without_a_writable_temporary_directory_the_server_starts_without_their_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # As under `docker run --read-only` with no tmpfs: no temporary directory is usable.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "absent"))
    environ: dict[str, str] = {}
    with caplog.at_level("WARNING", logger="pyfunc_ensembler.metrics"):
        theirs = metrics.TheirMetrics.prepare(environ)
    assert metrics.MULTIPROCESS_DIR not in environ
    assert theirs.render() == b""
    assert "left out of /metrics" in caplog.text
    theirs.close()
