"""The benchmark harness: its parts on fixed inputs, and one smoke run of every step.

No timing thresholds: the smoke run checks that each measurement was made and
reported, not how fast anything was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import importtime, payloads, procstats, report, run
from tests.helpers import ROOT

IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |   _io
import time:       200 |        300 | encodings
import time:        50 |         50 |     numpy.core
import time:       400 |        450 |   numpy
import time:      1050 |       1500 | pyfunc_ensembler
"""


def test_importtime_summary_counts_top_level_imports_and_heavy_packages() -> None:
    summary = importtime.summarise(IMPORTTIME)
    assert summary["modules"] == 5
    assert summary["total_ms"] == pytest.approx(1.8)
    assert summary["top"][0] == {"module": "pyfunc_ensembler", "cumulative_ms": 1.5}
    assert summary["imported"] == ["numpy"]


@pytest.mark.parametrize("size", payloads.SIZES.values())
def test_payloads_are_router_bodies_of_about_the_asked_size(size: int) -> None:
    body = payloads.body(size)
    assert size <= len(body) < size + 64
    document = json.loads(body)
    assert {r["route"] for r in document["response"]["route_responses"]} == {
        "control",
        "model-a",
        "model-b",
    }


def test_procstats_reads_a_process_tree_its_cpu_and_memory() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in procstats.tree(os.getpid())
        assert procstats.cpu_seconds([os.getpid()]) > 0
        memory = procstats.memory_kb(os.getpid())
        assert 0 < memory["pss"] <= memory["rss"]
    finally:
        child.kill()
        child.wait()


def test_their_samples_sums_the_bench_metrics_totals_and_counts_over_labels() -> None:
    scrape = b"""# TYPE ensembler_requests_total counter
ensembler_requests_total{code="200"} 7
# TYPE bench_answers counter
bench_answers_total{default_route="control"} 3.0
bench_answers_total{default_route="None"} 2.0
bench_answers_created{default_route="control"} 1.7e9
bench_score_bucket{le="0.25"} 1.0
bench_score_count 4.0
bench_score_sum 1.5
"""
    assert run.their_samples(scrape) == {"bench_answers_total": 5.0, "bench_score_count": 4.0}


def test_report_rewrites_only_its_own_block(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\n{report.BEGIN}\nold\n{report.END}\n\n## Batch\n\nkept\n")
    report.write(_results(), doc, tmp_path / "plot.png")
    text = doc.read_text()
    assert "old" not in text
    assert text.endswith("## Batch\n\nkept\n")
    assert "| 5KB | 32 | native | 20,000 | 10.00× | 2.50× |" in text  # noqa: RUF001
    assert "| native req/s at 32 connections ≥ 10× Turing's (5 KB) | 10× | yes |" in text  # noqa: RUF001
    assert "| 32 | native-theirs-off | 10,000 | 1.00× | 40.0 | 1.00× | none | 0 |" in text  # noqa: RUF001
    assert "| 32 | native | 9,000 | 0.90× | 50.0 | 1.25× | bench_score_count 0 | 0 |" in text  # noqa: RUF001
    assert (tmp_path / "plot.png").stat().st_size > 0
    report.write(_results(), doc, tmp_path / "plot.png")
    assert doc.read_text() == text  # a rewrite changes nothing (no blank lines pile up)


def test_report_shows_the_router_client_runs_by_their_longest_timeout(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    report.write(_results(), doc, tmp_path / "plot.png")
    text = doc.read_text()
    # req/s, latencies and CPU from the 100 ms run; the timeouts of each run's own deadline.
    rest = "1.00 | 3.00 | 25.0 % | 0.0 % | 40 | 1 |"
    assert f"| direct | 2 | 32 | native | 12,000 | 12.00× | {rest}" in text  # noqa: RUF001
    assert f"| direct | 2 | 32 | turing | 1,000 | 1.00× | {rest}" in text  # noqa: RUF001
    target = (
        "| native req/s at 32 in flight ≥ 10× Turing's, router's client "  # noqa: RUF001
        "(Go net/http, default transport, 5 KB) | 12× | yes |"  # noqa: RUF001
    )
    assert target in text


def test_report_takes_router_medians_over_rounds_and_shows_the_clients_ceiling(
    tmp_path: Path,
) -> None:
    results = _results()
    runs = [("turing", 1000, 0), ("native", 9000, 0), ("nginx-constant", 9500, 0)]
    runs += [("turing", 1200, 1), ("native", 11000, 1), ("nginx-constant", 12500, 1)]
    runs += [("turing", 800, 2), ("native", 10000, 2), ("nginx-constant", 11000, 2)]
    results["router"] = [
        {**row, "server": server, "per_second": rps, "round": round_index, "lost": 0}
        for server, rps, round_index in runs
        for row in results["router"]  # type: ignore[attr-defined]
        if row["server"] == "native" and row["timeout_ms"] == 100
    ]
    doc = tmp_path / "benchmarks.md"
    report.write(results, doc, tmp_path / "plot.png")
    text = doc.read_text()
    assert "3 run(s) per case and server" in text
    assert "| direct | 2 | 32 | native | 10,000 (9,000–11,000) | 10.00× |" in text  # noqa: RUF001
    assert "| direct | 2 | 32 | nginx-constant | 11,000 (9,500–12,500) | 11.00× |" in text  # noqa: RUF001
    target = (
        "(Go net/http, default transport, 5 KB) | 10× (the client's ceiling, "  # noqa: RUF001
        "`nginx-constant`: 11×) | yes |"  # noqa: RUF001
    )
    assert target in text


def test_report_goes_after_the_title_of_a_file_without_markers(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Batch\n\nkept\n")
    report.write(_results(), doc, tmp_path / "plot.png")
    text = doc.read_text()
    assert text.index(report.BEGIN) < text.index("## Batch")
    assert text.endswith("kept\n")


def test_report_shows_a_scaling_sweep_from_another_machine(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    results = _results()
    machine = {"cpu": "big cpu", "cores": 16, "kernel": "6"}
    runs = {("native", 1): 100, ("native", 2): 190, ("native", 4): 360, ("asgi", 1): 50}
    rows = [
        {"server": s, "workers": n, "rps_runs": [rps], "busy_runs": [[0.97, 1.0], [0.99, 1.01]]}
        for (s, n), rps in runs.items()
    ]
    results["scaling"] = {
        "cores": 16, "rows": rows, "date": "then", "command": "python -m bench.run --only scaling",
        "machine": machine, "versions": {"python": "3.12"},
    }  # fmt: skip
    report.write(results, doc, tmp_path / "plot.png")
    text = doc.read_text()
    assert "Measured on big cpu (16 cores, kernel 6), Python 3.12, then" in text
    assert "| native | 4 | 360 | 3.60× | 0.90 | 0.97–1.01 |" in text  # noqa: RUF001
    assert "| asgi | 1 | 50 | 1.00× | 1.00 | 0.97–1.01 |" in text  # noqa: RUF001
    # The target is judged on the native front end, by its worst N: 360 / (4 * 100).
    assert "| native: N workers on N cores ≥ 0.85·N × one worker | 0.9 | yes |" in text  # noqa: RUF001


def _results() -> dict[str, object]:
    def row(server: str, rps: float) -> dict[str, object]:
        return {
            "server": server, "payload": "5KB", "connections": 32, "run": 0, "rps": rps,
            "p50_us": 1000, "p90_us": 2000, "p99_us": 3000, "errors": 0, "non_2xx": 0,
            "cpu_us_per_request": 50.0,
        }  # fmt: skip

    meta = {
        "date": "today", "command": "python -m bench.run", "seconds": 1,
        "machine": {"cpu": "cpu", "cores": 2, "memory_gb": 1, "kernel": "6",
                    "load_average": [0, 0, 0]},
        "versions": {"python": "3"}, "server_cpus": "0", "load_cpus": "1",
        "front_ends": ["asgi", "native"],
        "config": {"runs": "1", "duration": "1", "warmup": "0", "note": "preliminary"},
    }  # fmt: skip
    rows = [row("turing", 2000), row("native", 20000), row("asgi", 8000)]
    curve = [{**r, "connections": c} for r in rows for c in (1, 32)]

    def routed(server: str, rps: float, timeout_ms: int, timeouts: int) -> dict[str, object]:
        return {
            "server": server, "path": "direct", "idle_per_host": 2, "in_flight": 32,
            "timeout_ms": timeout_ms, "per_second": rps, "p50_us": 1000, "p99_us": 3000,
            "sent": 100, "answered": 100 - timeouts, "timeouts": timeouts, "lost": 1,
            "refused": 0, "non_2xx": 0, "cpu_us_per_request": 40.0,
        }  # fmt: skip

    router = [
        routed(server, rps, timeout, 25 if timeout == 10 else 0)
        for server, rps in (("turing", 1000), ("native", 12000))
        for timeout in (10, 100)
    ]
    router[0]["per_second"] = 1  # the 10 ms run's req/s is not the one reported
    metered = {
        "baseline": "native-theirs-off",
        "rows": [
            {**row(server, rps), "payload": "0.5KB", "cpu_us_per_request": cpu}
            for server, rps, cpu in (("native-theirs-off", 10000, 40.0), ("native", 9000, 50.0))
        ],
        "scraped": {"native-theirs-off": {}, "native": {"bench_score_count": 0.0}},
    }
    return {
        "meta": meta, "load": rows, "curve": curve, "router": router, "ensembler_metrics": metered
    }  # fmt: skip


@pytest.mark.timeout(900)
def test_smoke_run_measures_and_reports_every_step(tmp_path: Path) -> None:
    """The whole harness, Turing's server included, with one-second runs."""
    doc, plot = tmp_path / "benchmarks.md", tmp_path / "latency.png"
    argv = ["-m", "bench.run", "--smoke", "--scaling", "--out", str(tmp_path), "--doc", str(doc)]
    done = subprocess.run(
        [sys.executable, *argv, "--plot", str(plot)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=850,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    servers = {"turing", "native-busypoll", *results["meta"]["front_ends"]}
    assert {r["server"] for r in results["load"]} == servers
    assert all(r["requests"] > 0 and r["errors"] == r["non_2xx"] == 0 for r in results["load"])
    router = results["router"]
    assert {r["server"] for r in router} == {"turing", "native", "nginx-constant"}
    assert {(r["path"], r["idle_per_host"]) for r in router} == {
        (path, idle) for path in ("direct", "nginx") for idle in (2, 100)
    }
    assert {r["path"] for r in router if r["server"] == "nginx-constant"} == {"direct"}
    assert all(r["answered"] > 0 and r["lost"] == r["refused"] == 0 for r in router)
    assert all(r["non_2xx"] == 0 for r in router)
    variants = results["variants"]
    assert {r["server"] for r in variants} == {"turing-debug", "native-isolate"}
    assert all(r["requests"] > 0 and r["errors"] == r["non_2xx"] == 0 for r in variants)
    metered = results["ensembler_metrics"]
    names = ("native-theirs-off", "native", "native-theirs-idle", "native-theirs-updating")
    assert {r["server"] for r in metered["rows"]} == set(names)
    assert metered["baseline"] == "native-theirs-off"
    assert all(r["requests"] > 0 and r["errors"] == r["non_2xx"] == 0 for r in metered["rows"])
    # Each server served what its row says: no ensembler metrics, made and left alone,
    # or updated on every request (warm-up and readiness probes counted too).
    scraped = metered["scraped"]
    assert scraped["native-theirs-off"] == scraped["native"] == {}
    assert scraped["native-theirs-idle"] == {"bench_score_count": 0}
    updating = scraped["native-theirs-updating"]
    measured = sum(r["requests"] for r in metered["rows"] if r["server"] == names[-1])
    assert updating["bench_answers_total"] == updating["bench_score_count"] >= measured
    assert {r["workers"] for r in results["memory"] if r["server"] != "turing"} == {1, 2}
    assert all(r["seconds"] > 0 and r["pss"] > 0 for r in results["startup"])
    assert set(results["inprocess"]) == set(payloads.SIZES)
    lean, mlflow = results["importtime"].values()
    assert "mlflow" not in lean["imported"] and "mlflow" in mlflow["imported"]
    assert results["scaling"]["rows"][0]["workers"] == 1  # more only where cores allow
    text = doc.read_text()
    headings = ("Targets", "Throughput", "router's own client", "own metrics", "Start-up", "Memory")
    headings += ("imports",)
    for heading in (*headings, "In-process"):
        assert heading in text
    assert plot.stat().st_size > 0
