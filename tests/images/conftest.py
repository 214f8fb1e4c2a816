"""The images, built once per test session: the stand-in base, our base image, app images.

`make images` runs these tests (CI through `make test`); plain `pytest` leaves them
out (the ``images`` marker, see pyproject.toml): they need root, buildah and podman.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, free_port
from tests.images import engine

TOOLS = ("buildah", "podman", "runc", "debootstrap")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.images)
            # A test's first use of an image builds it (the base image: minutes on 2 cores).
            item.add_marker(pytest.mark.timeout(1800))


@pytest.fixture(scope="session", autouse=True)
def removed_at_the_end() -> Iterator[None]:
    """What the run built is removed when it ends, whether its tests passed or not."""
    try:
        yield
    finally:
        engine.remove_built()


@pytest.fixture(scope="session")
def standin() -> str:
    missing = [name for name in TOOLS if shutil.which(name) is None]
    if missing:
        pytest.fail(f"the image tests need {', '.join(missing)}: apt-get install {' '.join(TOOLS)}")
    engine.tool(engine.HERE / "standin.sh")
    return engine.STANDIN


@pytest.fixture(scope="session")
def base_image(standin: str) -> engine.Build:
    """docker/Dockerfile on the stand-in, as `docker build` would build it."""
    return engine.build(engine.BASE_IMAGE, engine.DOCKER / "Dockerfile", ROOT)


def app_build(
    name: str, context: Path, build_args: dict[str, str] | None = None, **options: bool
) -> engine.Build:
    """docker/app.Dockerfile on our base image, as ``localhost/ensembler-test/<name>``."""
    args = {"BASE_IMAGE": engine.BASE_IMAGE, **(build_args or {})}
    tag = engine.tag(f"localhost/ensembler-test/{name}")
    return engine.build(tag, engine.DOCKER / "app.Dockerfile", context, args, **options)


@pytest.fixture(scope="session")
def example_image(base_image: engine.Build, example_model: Path) -> engine.Build:
    return app_build("example", example_model)


@pytest.fixture(scope="session")
def turing_fixture_image(base_image: engine.Build, fixtures_dir: Path) -> engine.Build:
    return app_build("weighted-legacy", fixtures_dir / "weighted_legacy")


@pytest.fixture(scope="session")
def slow_image(base_image: engine.Build, test_models: dict[str, Path]) -> engine.Build:
    """The "faulty" test ensembler, which sleeps when asked: for the SIGTERM test."""
    return app_build("faulty", test_models["faulty"])


@pytest.fixture
def container() -> Iterator[list[engine.Container]]:
    """Containers a test starts; removed after it, whatever happened."""
    started: list[engine.Container] = []
    yield started
    for one in started:
        one.remove()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on loopback (SQLite store, artifacts served over HTTP)."""
    where = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    server = subprocess.Popen(
        [
            Path(sys.executable).parent / "mlflow", "server", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{where / 'mlflow.db'}",
            "--artifacts-destination", str(where / "artifacts"),
        ],
        cwd=where, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "mlflow server never answered /health"
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.fixture(scope="session")
def registered_example(mlflow_server: str, example_model: Path) -> str:
    """The example ensembler logged to the server and registered: its models:/ URI."""
    script = (
        "import mlflow, sys\n"
        "with mlflow.start_run() as run:\n"
        "    mlflow.log_artifacts(sys.argv[1], 'ensembler')\n"
        "mlflow.register_model(f'runs:/{run.info.run_id}/ensembler', 'ensembler')\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(example_model)],
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_server},
        check=True,
        capture_output=True,
        timeout=300,
    )
    return "models:/ensembler/1"
