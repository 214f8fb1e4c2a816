"""A smoke run of bench/batch.py with tiny sizes: every way runs end to end (no timing asserted)."""

from __future__ import annotations

from bench.batch import main


def test_bench_smoke() -> None:
    results = main(["--rows", "300", "--turing-rows", "50", "--processes", "1", "2",
                    "--bigquery", "--bq-rows", "120"])  # fmt: skip
    assert [(r["rows"], r["processes"]) for r in results["local"]] == [(300, 1), (300, 2)]
    assert all(r["peak_rss_mb"] > 0 for r in results["local"])
    assert results["turing"]["rows"] == 50
    assert set(results["local"][0]["timings"]) == {"read", "join", "ensemble", "result", "write"}
    assert set(results["split"]) == {"build_rows", "call_ensemble"}
    for run in results["bigquery"]:
        assert run["parquet_to_bigquery"]["rows"] == run["bigquery_to_bigquery"]["rows"] == 120
