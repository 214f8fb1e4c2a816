"""Turing's entry point, ``python -m pyfunc_ensembler_runner``, served by us."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import Server, fixture_cases

RUNNER = [sys.executable, "-m", "pyfunc_ensembler_runner"]


def test_dry_run_loads_and_exits(fixtures_dir: Path) -> None:
    result = subprocess.run(
        [*RUNNER, "--mlflow_ensembler_dir", str(fixtures_dir / "weighted_legacy"), "--dry_run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_dry_run_of_a_broken_model_exits_1(tmp_path: Path) -> None:
    result = subprocess.run(
        [*RUNNER, "--mlflow_ensembler_dir", str(tmp_path), "--dry_run"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "no MLmodel file" in result.stderr


def _port_8083_free() -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", 8083)) != 0


@pytest.mark.skipif(not _port_8083_free(), reason="port 8083 is taken on this machine")
def test_serves_on_8083_like_turing(fixtures_dir: Path) -> None:
    case = fixture_cases()[0]
    process = subprocess.Popen(
        [
            *RUNNER,
            "--mlflow_ensembler_dir",
            str(fixtures_dir / case["ensembler"]),
            "-l",
            "INFO",
            "--unknown-flag",
        ],
        env={**os.environ, "ENSEMBLER_HOST": "127.0.0.1"},
        stderr=subprocess.PIPE,
    )
    server = Server([])
    server.port = 8083
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, answer = server.post_json(case["body"], case["headers"])
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
        assert (status, answer) == (200, case["turing_runner_answer"]["json"])
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert process.returncode == 0
