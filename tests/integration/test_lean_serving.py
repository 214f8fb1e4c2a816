"""Serving a local ensembler directory imports neither MLflow nor pandas/numpy (issue 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Server, fixture_cases

HEAVY = ("/numpy/", "/pandas/", "/pyarrow/")


def _heavy_libraries(pid: int) -> set[str]:
    # Their compiled extensions show in the memory map as soon as they are imported;
    # MLflow cannot be imported without numpy and pandas.
    with open(f"/proc/{pid}/maps") as file:
        return {lib for line in file for lib in HEAVY if lib in line}


@pytest.mark.parametrize("force_mlflow", [False, True], ids=["lean", "mlflow"])
def test_a_serving_worker_maps_no_heavy_library(
    fixtures_dir: Path, front_end: str, force_mlflow: bool
) -> None:
    case = fixture_cases()[0]
    args = [str(fixtures_dir / case["ensembler"]), "--server", front_end]
    server = Server([*args, "--force-mlflow"] if force_mlflow else args).start()
    try:
        status, answer = server.post_json(case["body"], case["headers"])
        assert (status, answer) == (200, case["turing_runner_answer"]["json"])
        assert server.process is not None
        heavy = _heavy_libraries(server.process.pid)
    finally:
        server.stop()
    if force_mlflow:
        assert {"/numpy/", "/pandas/"} <= heavy  # the check does see them when present
    else:
        assert heavy == set()
