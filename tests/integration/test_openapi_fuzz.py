"""Fuzz the running server against its own OpenAPI document with schemathesis.

Every check schemathesis has (no 5xx, answers match their documented schema, status
codes and content types documented, invalid bodies rejected, valid ones accepted),
with deterministic generation and a bounded number of cases, so it takes seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import ROOT, Server

pytest.importorskip("schemathesis")

SCHEMATHESIS = [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()"]


def test_the_server_matches_its_openapi_document(
    servers: Callable[..., Server], test_models: dict[str, Path], front_end: str, tmp_path: Path
) -> None:
    server = servers(str(test_models["echo"]), "--server", front_end)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks",
    }
    result = subprocess.run(
        [
            *SCHEMATHESIS,
            "run",
            f"http://127.0.0.1:{server.port}/openapi.json",
            "--checks=all",
            "--max-examples=25",
            "--generation-deterministic",
            "--workers=1",
            "--phases=examples,coverage,fuzzing",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,  # schemathesis may write reports next to it
        env=env,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
