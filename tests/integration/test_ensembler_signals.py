"""The ensembler's own signals through the real server: examples/instrumented's
``prometheus_client`` metrics on /metrics, its log lines, its spans."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import (
    ROOT,
    Server,
    children,
    console_spans,
    free_port,
    scrape,
    wait_for,
    wait_for_children,
)

REQUEST = json.loads((ROOT / "examples" / "instrumented" / "request.json").read_text())
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parsed(text: str) -> Samples:
    """A scrape read by Prometheus' own parser, which also refuses a family named twice."""
    families = list(text_string_to_metric_families(text))
    names = [family.name for family in families]
    assert len(names) == len(set(names)), names
    assert text.count("# TYPE ") == len(names)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families
        for s in family.samples
    }


def send(server: Server, count: int, connections: int = 8) -> None:
    """`count` requests, each on a new connection, `connections` at a time: the kernel
    hands them to whichever worker accepts first."""

    def one(_: int) -> None:
        status, answer = server.post_json(REQUEST)
        assert (status, answer) == (200, {"route": "model-a", "score": 0.87, "fallback": None})

    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(one, range(count)))


def theirs(samples: Samples) -> Samples:
    return {key: value for key, value in samples.items() if not key[0].startswith("ensembler_")}


def assert_counted(samples: Samples, answered: int) -> None:
    assert samples[("ensembler_requests_total", (("code", "200"),))] == answered
    assert samples[("routes_missing_total", (("route", "model-b"),))] == answered
    assert samples[("usable_routes_count", ())] == answered
    assert samples[("usable_routes_sum", ())] == 2 * answered
    assert samples[("answered_score_count", (("route", "model-a"),))] == answered
    assert samples[("answered_score_bucket", (("le", "0.9"), ("route", "model-a")))] == answered
    assert samples[("answered_score_bucket", (("le", "0.75"), ("route", "model-a")))] == 0
    assert samples[("ensembles_in_progress", ())] == 0


def files_by_pid(path: Path, kind: str) -> set[int]:
    return {int(f.stem.rpartition("_")[2]) for f in path.glob(f"{kind}_*.db")}


def test_their_metrics_add_up_over_two_workers_and_a_replaced_one(
    instrumented_model: Path, tmp_path: Path, front_end: str
) -> None:
    # The user's own PROMETHEUS_MULTIPROC_DIR, with a stale file of an earlier run in it.
    (tmp_path / "counter_1.db").write_bytes(b"\0" * 8)
    metrics_port = free_port()
    args = [str(instrumented_model), "--server", front_end, "--workers", "2"]
    server = Server(
        [*args, "--metrics-port", str(metrics_port)],
        env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
    ).start()
    try:
        assert server.process is not None
        workers = wait_for_children(server.process.pid, 2, set())
        answered = 0
        # Until both workers have answered some (their counter files say so).
        while not set(workers) <= files_by_pid(tmp_path, "counter") and answered < 800:
            send(server, 16)
            answered += 16
        assert set(workers) <= files_by_pid(tmp_path, "counter")
        assert 1 not in files_by_pid(tmp_path, "counter")
        # Either port, either worker or the supervisor: the same totals.
        assert_counted(parsed(scrape(server.port)), answered)
        assert_counted(parsed(scrape(metrics_port)), answered)

        os.kill(workers[0], signal.SIGKILL)
        wait_for_children(server.process.pid, 1, set(workers))
        # Its live gauge is forgotten when the supervisor reaps it; its counts stay.
        assert workers[0] not in files_by_pid(tmp_path, "gauge_livesum")
        send(server, 16)
        answered += 16
        after = parsed(scrape(server.port))
        assert_counted(after, answered)
        assert theirs(after) == theirs(parsed(scrape(metrics_port)))
    finally:
        code, log = server.stop()
    assert code == 0, log
    assert tmp_path.is_dir()  # the user's directory is kept


def test_their_metrics_with_isolate_and_a_killed_ensembler_process(
    instrumented_model: Path,
) -> None:
    server = Server([str(instrumented_model), "--isolate"]).start()
    try:
        assert server.process is not None
        send(server, 10, connections=2)
        assert_counted(parsed(scrape(server.port)), 10)
        (zygote,) = children(server.process.pid)
        (process,) = children(zygote)
        made = metrics_dir(process)
        assert made.is_dir() and files_by_pid(made, "counter") == {process}
        os.kill(process, signal.SIGKILL)
        wait_for_children(zygote, 0, set())  # the worker saw it die and had it reaped
        send(server, 10, connections=2)
        assert_counted(parsed(scrape(server.port)), 20)
        assert len(files_by_pid(made, "counter")) == 2
        # The dead process's live gauge went at the scrape (no one here reaped it).
        assert process not in files_by_pid(made, "gauge_livesum")
    finally:
        code, log = server.stop()
    assert code == 0, log
    assert not made.exists()  # the server made that directory, and removed it


def metrics_dir(pid: int) -> Path:
    """Where process `pid` writes its prometheus_client files (it maps them)."""
    with open(f"/proc/{pid}/maps") as file:
        mapped = {Path(line.split()[-1]) for line in file if line.rstrip().endswith(".db")}
    (directory,) = {path.parent for path in mapped}
    return directory


def test_an_ensembler_without_prometheus_client_adds_nothing(example_model: Path) -> None:
    server = Server([str(example_model), "--workers", "2"]).start()
    try:
        assert server.post_json({"request": {}, "response": {"route_responses": []}})[0] == 200
        text = scrape(server.port)
    finally:
        server.stop()
    assert [name for name, _ in parsed(text) if not name.startswith("ensembler_")] == []


@pytest.mark.parametrize(
    "args",
    [
        ["--log-format", "text"],
        ["--log-format", "json"],
        ["--log-format", "json", "--sync-threads", "2"],
        ["--log-format", "text", "--isolate"],
        ["--log-format", "json", "--isolate", "--workers", "2"],
    ],
    ids=["text", "json", "thread-pool", "isolate", "isolate-2-workers"],
)
def test_their_log_lines_carry_the_request_id(instrumented_model: Path, args: list[str]) -> None:
    server = Server([str(instrumented_model), "--log-level", "info", *args]).start()
    try:
        for n in range(3):
            headers = {"Turing-Req-Id": f"req-{n}"}
            assert server.post_json(REQUEST, headers)[0] == 200
        no_route = {"request": {}, "response": {"route_responses": []}}
        assert server.post_json(no_route, {"Turing-Req-Id": "req-fallback"})[0] == 200
        assert server.post_json(REQUEST)[0] == 200  # no id sent
    finally:
        code, log = server.stop()
    assert code == 0, log
    lines = [line for line in log.splitlines() if "answered with" in line or "fell back" in line]
    if "json" in args:
        entries = [json.loads(line) for line in lines]
        assert {e["logger"] for e in entries} == {"instrumented"}
        said = [(e["message"], e.get("request_id")) for e in entries]
    else:
        # "<time> INFO instrumented [pid] answered with model-a, score 0.87 request_id=req-0"
        parts = [line.split("] ", 1)[1].partition(" request_id=") for line in lines]
        said = [(message, request_id or None) for message, _, request_id in parts]
    ids = [(re.split("[,:]", message)[0], request_id) for message, request_id in said]
    assert ids == [
        *(("answered with model-a", f"req-{n}") for n in range(3)),
        ("fell back to control", "req-fallback"),
        ("answered with control", "req-fallback"),
        ("answered with model-a", None),
    ]


def test_their_span_nests_in_the_request_trace(instrumented_model: Path) -> None:
    trace_id, span_id = "80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1"
    server = Server([str(instrumented_model), "--tracing", "console"]).start()
    try:
        b3 = {"X-B3-TraceId": trace_id, "X-B3-SpanId": span_id, "X-B3-Sampled": "1"}
        assert server.post_json(REQUEST, b3)[0] == 200
    finally:
        code, log = server.stop()
    assert code == 0, log
    spans = {
        span["name"]: span
        for span in console_spans(log)
        if span["context"]["trace_id"] == f"0x{trace_id}"
    }
    assert set(spans) == {"POST /ensemble", "ensemble", "choose-route"}
    assert spans["POST /ensemble"]["parent_id"] == f"0x{span_id}"
    ensemble, choose = spans["ensemble"], spans["choose-route"]
    assert ensemble["parent_id"] == spans["POST /ensemble"]["context"]["span_id"]
    assert choose["parent_id"] == ensemble["context"]["span_id"]
    assert choose["attributes"] == {"ensembler.route": "model-a"}


def test_a_real_prometheus_scrapes_two_workers(instrumented_model: Path, tmp_path: Path) -> None:
    """Prometheus itself (Debian's package; .ci/run installs it) scrapes a 2-worker server."""
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed (.ci/run installs it)")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    server = Server([str(instrumented_model), "--workers", "2"]).start()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: ensembler\n    static_configs: [{{targets: ['127.0.0.1:{server.port}']}}]\n"
    )
    prometheus = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        send(server, 24)
        # Prometheus' own parser took the whole page: the target is up, with no error.
        target = wait_for(lambda: _healthy_target(port))
        assert target["lastError"] == ""
        queries = {
            'sum(routes_missing_total{route="model-b"})': 24,
            'sum(answered_score_bucket{le="0.9"})': 24,
            "sum(usable_routes_count)": 24,
            'sum(ensembler_requests_total{code="200"})': 24,
            "ensembles_in_progress": 0,
        }
        for query, expected in queries.items():
            wait_for(lambda q=query, e=expected: _query(port, q) == e)
    finally:
        prometheus.terminate()
        _, err = prometheus.communicate(timeout=30)
        server.stop()
    assert prometheus.returncode == 0, err.decode()[-2000:]


def _prometheus_api(port: int, path: str) -> Any:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return json.load(response)["data"]
    except OSError:
        return None  # not up yet


def _healthy_target(port: int) -> dict[str, Any] | None:
    data = _prometheus_api(port, "/api/v1/targets")
    targets = data["activeTargets"] if data else []
    return next((t for t in targets if t["health"] == "up"), None)


def _query(port: int, query: str) -> float | None:
    data = _prometheus_api(port, "/api/v1/query?" + urllib.parse.urlencode({"query": query}))
    if not data or not data["result"]:
        return None
    (result,) = data["result"]
    return float(result["value"][1])
