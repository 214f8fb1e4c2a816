from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyfunc_ensembler import __version__
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


@pytest.fixture(scope="session")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with our wheel and no extras, made as docker/Dockerfile's build stage does."""
    where = tmp_path_factory.mktemp("image")
    wheels = where / "wheels"

    def run(*args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
        command = [str(a) for a in args]
        return subprocess.run(
            command, env={**os.environ, **env}, capture_output=True, text=True, timeout=600
        )

    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", wheels, ROOT)
    assert built.returncode == 0, built.stderr
    script = ROOT / "docker" / "install-base.sh"
    installed = run(script, wheels, where / "venv", PYTHON=sys.executable)
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.strip().endswith(f"pyfunc-ensembler {__version__}")
    return where / "venv"
