from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, ROOT


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not (FIXTURES / "expected.json").is_file():
        pytest.fail(f"the Turing SDK fixtures are missing at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def example_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled example ensembler, saved with MLflow in a subprocess, as a user would."""
    target = tmp_path_factory.mktemp("example") / "model"
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "weighted" / "save.py"), str(target)],
        check=True,
        capture_output=True,
    )
    return target
