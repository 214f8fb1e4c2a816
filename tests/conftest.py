from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests import ensemblers
from tests.helpers import FIXTURES, ROOT


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not (FIXTURES / "expected.json").is_file():
        pytest.fail(f"the Turing SDK fixtures are missing at {FIXTURES}")
    return FIXTURES


def _save_example(name: str, target: Path) -> Path:
    """Save examples/`name` with its save.py, in a subprocess, as a user would."""
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / name / "save.py"), str(target)],
        check=True,
        capture_output=True,
    )
    return target


@pytest.fixture(scope="session")
def example_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled example ensembler (examples/weighted)."""
    return _save_example("weighted", tmp_path_factory.mktemp("example") / "model")


@pytest.fixture(scope="session")
def instrumented_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example with its own metrics, logs and spans (examples/instrumented)."""
    return _save_example("instrumented", tmp_path_factory.mktemp("instrumented") / "model")


@pytest.fixture(scope="session")
def test_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One saved model per test ensembler, shared by every test that starts a server."""
    root = tmp_path_factory.mktemp("models")
    kinds = {
        "echo": ensemblers.Echo(),
        "faulty": ensemblers.Faulty(),
        "async": ensemblers.AsyncSum(),
        "numpy": ensemblers.Numpyish(),
    }
    return {name: ensemblers.save_model(model, root / name) for name, model in kinds.items()}
