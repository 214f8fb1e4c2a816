"""A smoke run of bench/batch.py with tiny sizes: it runs end to end (no timing asserted)."""

from __future__ import annotations

from bench.batch import main


def test_bench_smoke() -> None:
    results = main(["--rows", "300", "--turing-rows", "50", "--no-spark"])
    assert results["local"]["rows"] == 300
    assert results["turing"]["rows"] == 50
    assert set(results["local"]["timings"]) == {"read", "join", "ensemble", "result", "write"}
    assert set(results["local"]["split"]) == {"build_rows", "call_ensemble"}
