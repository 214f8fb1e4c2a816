"""The scripts the Dockerfiles RUN, run here for real in a clean virtual environment.

No Docker engine runs where the tests do, so the image build is reproduced step by
step: our wheel is built with pip, ``docker/install-base.sh`` makes a fresh venv from
it, ``docker/install-model.sh`` bakes a model in, and ``docker/entrypoint.sh`` serves
it; the HEALTHCHECK command is taken from the Dockerfile and run against that server.
tests/images/ builds and runs the images themselves with buildah and podman.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyfunc_ensembler import __version__
from pyfunc_ensembler.health import READYZ
from pyfunc_ensembler.image import DEFAULT_PYTHON
from tests.helpers import ROOT, free_port
from tests.object_stores import StoreKind, object_store, turing_layout

# The venv fixture pip-installs our wheel and its dependencies: over pytest's 300 s on two
# cores saturated by other processes (a hang guard, not a speed limit).
pytestmark = pytest.mark.timeout(1200)

DOCKER = ROOT / "docker"
THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def run(*args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def venv(base_venv: Path) -> Path:
    """A fresh venv with our package, made exactly as docker/Dockerfile's build stage does."""
    return base_venv


def install_model(venv: Path, model: Path | str, target: Path) -> subprocess.CompletedProcess[str]:
    """What app.Dockerfile RUNs: install-model.sh, then `pyfunc-ensembler check`."""
    installed = run(DOCKER / "install-model.sh", venv, model, target)
    if installed.returncode != 0:
        return installed
    checked = run(venv / "bin" / "pyfunc-ensembler", "check", target)
    checked.stderr = installed.stderr + checked.stderr
    return checked


def test_the_turing_fixture_installs_without_turing_sdk_or_its_mlflow(
    venv: Path, fixtures_dir: Path, tmp_path: Path
) -> None:
    result = install_model(venv, fixtures_dir / "weighted_legacy", tmp_path / "model")
    if THIS_PYTHON != "3.11":
        # The fixture was pickled on 3.11: the build must stop and name the right image.
        assert result.returncode != 0
        assert "PYTHON_VERSION=3.11" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    assert "left out 'turing-sdk==0.16.2.post3'" in result.stderr
    packages = json.loads(run(venv / "bin" / "python", "-m", "pip", "list", "--format=json").stdout)
    versions = {p["name"].lower(): p["version"] for p in packages}
    assert "turing-sdk" not in versions
    # Turing's mlflow==1.30.1 pin is left out: we serve with our own (skinny) MLflow.
    assert versions.get("mlflow", "") != "1.30.1"
    assert "mlflow-skinny" in versions
    assert versions["pyfunc-ensembler"] == __version__
    # Turing's entry point, as Turing's image runs it.
    dry_run = run(
        venv / "bin" / "python",
        "-m",
        "pyfunc_ensembler_runner",
        "--mlflow_ensembler_dir",
        tmp_path / "model",
        "--dry_run",
    )
    assert dry_run.returncode == 0, dry_run.stderr


def test_our_model_installs_its_requirements_and_keeps_our_wheel(
    venv: Path, example_model: Path, tmp_path: Path
) -> None:
    # The example pins pyfunc-ensembler==<this version>, which need not be on any index.
    assert f"pyfunc-ensembler=={__version__}" in (example_model / "requirements.txt").read_text()
    result = install_model(venv, example_model, tmp_path / "model")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stderr.strip().splitlines()[-1])["loader"] == "lean"
    shown = run(venv / "bin" / "python", "-m", "pip", "show", "pyfunc-ensembler", "pyyaml")
    assert f"Version: {__version__}" in shown.stdout and "Name: PyYAML" in shown.stdout


def test_a_broken_model_fails_the_build(venv: Path, example_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(example_model, broken)
    (broken / "python_model.pkl").write_bytes(b"not a pickle")
    result = install_model(venv, broken, tmp_path / "model")
    assert result.returncode == 1
    assert "cannot load the model" in result.stderr


def test_entrypoint_runs_our_commands_and_any_other(venv: Path, example_model: Path) -> None:
    path = f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
    entrypoint = DOCKER / "entrypoint.sh"
    help_text = run(entrypoint, "--help", PATH=path)
    assert help_text.returncode == 0 and "usage: pyfunc-ensembler serve" in help_text.stdout
    check = run(entrypoint, "check", example_model, PATH=path)
    assert check.returncode == 0, check.stderr
    other = run(entrypoint, "python", "-c", "import sys; print(sys.prefix)", PATH=path)
    assert other.stdout.strip() == str(venv)


# Knative (so Turing) tells the container its port in PORT; ENSEMBLER_PORT wins over it.
@pytest.mark.parametrize("port_variable", ["ENSEMBLER_PORT", "PORT"])
def test_entrypoint_serves_and_the_healthcheck_sees_it_ready(
    venv: Path, example_model: Path, port_variable: str
) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("PORT", "ENSEMBLER_PORT")},
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "ENSEMBLER_MODEL_URI": str(example_model),
        "ENSEMBLER_HOST": "127.0.0.1",
        port_variable: str(port),
    }
    healthcheck = json.loads(
        re.search(r"^\s+CMD (\[.*\])$", dockerfile(), re.MULTILINE).group(1)  # type: ignore[union-attr]
    )
    server = subprocess.Popen([DOCKER / "entrypoint.sh"], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while subprocess.run(healthcheck, env=env, capture_output=True).returncode != 0:
            assert server.poll() is None, server.stderr.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    # exec: the server itself got the SIGTERM, drained and exited cleanly.
    assert server.returncode == 0


def dockerfile(name: str = "Dockerfile") -> str:
    return (DOCKER / name).read_text()


def test_dockerfiles_run_these_scripts() -> None:
    base, app, turing = dockerfile(), dockerfile("app.Dockerfile"), dockerfile("turing.Dockerfile")
    assert "install-base.sh /opt/pyfunc-ensembler/wheels /opt/venv" in base
    assert "install-model.sh /opt/venv" in app
    assert "fetch-turing-model.sh /opt/venv /model" in turing
    assert "install-model.sh /opt/venv /model /model" in turing
    for built in (app, turing):  # the check runs as the image's user, last
        assert built.rstrip().endswith("USER 10001\nRUN pyfunc-ensembler check /model")
    assert 'ENTRYPOINT ["/opt/pyfunc-ensembler/entrypoint.sh"]' in base
    assert READYZ in base and "EXPOSE 8083" in base
    for script in re.findall(r"docker/([\w-]+\.sh)", base):
        assert os.access(DOCKER / script, os.X_OK), f"docker/{script} is not executable"


def test_dockerfiles_default_to_what_the_image_command_prints() -> None:
    # `pyfunc-ensembler image` names the same tag and Python; a version bump updates both.
    for name in ("app.Dockerfile", "turing.Dockerfile"):
        assert f"ARG BASE_IMAGE=pyfunc-ensembler:{__version__}-py" in dockerfile(name)
    for name in ("Dockerfile", "app.Dockerfile"):
        assert f"ARG PYTHON_VERSION={DEFAULT_PYTHON}\n" in dockerfile(name)


@pytest.mark.parametrize("kind", ["gcs", "s3"])
def test_turings_build_args_fetch_the_model_from_a_real_object_store(
    venv: Path, fixtures_dir: Path, tmp_path: Path, kind: StoreKind
) -> None:
    with object_store(kind, tmp_path) as store:
        turing = turing_layout(store, fixtures_dir / "weighted_legacy", run_id="0f1e2d")
        fetched = run(
            DOCKER / "fetch-turing-model.sh", venv, tmp_path / "model", **turing.build_args
        )
    assert fetched.returncode == 0, fetched.stderr
    for path in (fixtures_dir / "weighted_legacy").rglob("*"):
        if path.is_file():
            copy = tmp_path / "model" / path.relative_to(fixtures_dir / "weighted_legacy")
            assert copy.read_bytes() == path.read_bytes()
    # Then as turing.Dockerfile goes on: the model's requirements, and the check.
    assert install_model(venv, tmp_path / "model", tmp_path / "model").returncode == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"MLFLOW_ARTIFACT_STORAGE_TYPE": "azure"}, "not gcs or s3"),
        ({"MODEL_URL": "gs://elsewhere/artifacts"}, "is no s3:// URI"),
        ({"FOLDER_NAME": "other/ensembler"}, "does not start with 'artifacts/'"),
    ],
)
def test_turings_build_args_are_checked_before_anything_is_fetched(
    venv: Path, tmp_path: Path, change: dict[str, str], message: str
) -> None:
    args = {
        "MLFLOW_ARTIFACT_STORAGE_TYPE": "s3",
        "MODEL_URL": "s3://bucket/mlflow/7/0f1e2d/artifacts",
        "FOLDER_NAME": "artifacts/ensembler",
        **change,
    }
    fetched = run(DOCKER / "fetch-turing-model.sh", venv, tmp_path / "model", **args)
    assert fetched.returncode == 2
    assert message in fetched.stderr and not (tmp_path / "model").exists()


def test_a_dependencies_copy_that_is_not_the_models_conda_yaml_fails(
    venv: Path, fixtures_dir: Path, tmp_path: Path
) -> None:
    with object_store("s3", tmp_path) as store:
        turing = turing_layout(store, fixtures_dir / "weighted_legacy", run_id="0f1e2d")
        other = store.put("turing/model_dependencies/other", b"dependencies: [python=3.11]\n")
        args = {**turing.build_args, "MODEL_DEPENDENCIES_URL": other}
        fetched = run(DOCKER / "fetch-turing-model.sh", venv, tmp_path / "model", **args)
    assert fetched.returncode == 2
    assert "differs from" in fetched.stderr
