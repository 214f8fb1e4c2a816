"""The images built with buildah and run with podman, as a platform runs them.

Each container runs with a read-only root file system and its port published on
loopback; the tests talk HTTP to it. The Turing fixture must answer exactly as
Turing's own server did; the others as `pyfunc-ensembler check` answers on the host.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import CLI, ROOT, fixture_cases, free_port
from tests.images import engine
from tests.images.conftest import app_build
from tests.integration.test_operations import scrape
from tests.object_stores import SECRET, StoreKind, object_store, turing_layout

EXAMPLE_REQUEST = ROOT / "examples" / "weighted" / "request.json"


def started(
    containers: list[engine.Container], image: str, *options: str, container_port: int = 8083
) -> engine.Container:
    one = engine.Container(image, *options, container_port=container_port)
    containers.append(one)
    return one.start()


def assert_answers_as_on_the_host(one: engine.Container, model: Path, request_id: str) -> None:
    """The example request: answered as our server answers it on the host, in-process."""
    checked = subprocess.run(
        [
            *CLI,
            "check",
            model,
            "--request",
            EXAMPLE_REQUEST,
            "--header",
            f"Turing-Req-Id={request_id}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    request = json.loads(EXAMPLE_REQUEST.read_text())
    answer = one.post_json(request, {"Turing-Req-Id": request_id})
    assert answer == (200, json.loads(checked.stdout))


def assert_answers_as_turings_server(one: engine.Container) -> None:
    """Every case of Turing's ``weighted_legacy`` fixture, answered as Turing's server did."""
    cases = [case for case in fixture_cases() if case["ensembler"] == "weighted_legacy"]
    assert cases
    for case in cases:
        status, answer = one.post_json(case["body"], case["headers"])
        expected = case["turing_runner_answer"]
        assert (status, answer) == (expected["status"], expected["json"]), case["case"]


def assert_runs_as_a_platform_expects(one: engine.Container) -> None:
    assert one.exec("id", "-u").stdout.strip() == "10001"
    # The HEALTHCHECK the Dockerfile declares, run by podman inside the container.
    healthcheck = engine.tool("podman", "healthcheck", "run", one.name, check=False)
    assert healthcheck.returncode == 0, healthcheck.stdout + healthcheck.stderr


def test_the_base_image_is_non_root_with_a_healthcheck_and_nothing_of_the_build(
    base_image: engine.Build, standin: str
) -> None:
    image = engine.inspect_image(base_image.tag)
    assert image["Config"]["User"] == "10001"
    assert "8083/tcp" in image["Config"]["ExposedPorts"]
    assert "/readyz" in " ".join(image["Healthcheck"]["Test"])  # kept: the Docker format
    # The host's CA bundle was mounted for pip during the build only: the image keeps
    # the stand-in's own (a host that adds a CA of its own, as this one does, would show).
    bundles = [
        engine.tool("podman", "run", "--rm", "--entrypoint", "cat", image, engine.CA_BUNDLE).stdout
        for image in (base_image.tag, standin)
    ]
    assert bundles[0] == bundles[1]


def test_the_turing_fixture_image_answers_as_turings_server(
    turing_fixture_image: engine.Build, container: list[engine.Container]
) -> None:
    one = started(container, turing_fixture_image.tag)
    assert_answers_as_turings_server(one)
    assert_runs_as_a_platform_expects(one)


def test_the_example_image_answers_as_on_the_host(
    example_image: engine.Build, example_model: Path, container: list[engine.Container]
) -> None:
    one = started(container, example_image.tag)
    assert_answers_as_on_the_host(one, example_model, "image-1")
    assert_runs_as_a_platform_expects(one)


def test_a_models_uri_is_downloaded_at_build_time_and_served_as_10001(
    base_image: engine.Build,
    registered_example: str,
    mlflow_server: str,
    example_model: Path,
    tmp_path: Path,
    container: list[engine.Container],
) -> None:
    # MLflow downloads into a 0700 scratch directory: copied as it was, /model could be
    # read by root (the build) but not by uid 10001 (the server).
    empty = tmp_path / "context"
    empty.mkdir()
    build_args = {"MODEL_URI": registered_example, "MLFLOW_TRACKING_URI": mlflow_server}
    built = app_build("registered", empty, build_args, host_network=True)
    one = started(container, built.tag)
    assert_answers_as_on_the_host(one, example_model, "image-2")
    assert_runs_as_a_platform_expects(one)


def test_a_model_the_server_cannot_read_fails_the_build(
    base_image: engine.Build, example_model: Path, tmp_path: Path
) -> None:
    # The build-time check runs as the image's user, so it meets what the server would.
    private = tmp_path / "private"
    shutil.copytree(example_model, private)
    for path in private.rglob("*"):
        if path.is_file():
            path.chmod(0o600)
    built = app_build("private", private, check=False)
    assert not built.ok
    assert "Permission denied" in built.output


def test_sigterm_during_a_slow_request_answers_it_and_exits_0(
    slow_image: engine.Build, container: list[engine.Container]
) -> None:
    # A sync ensembler sleeping holds its worker's loop: /metrics answers on a port of its
    # own (another thread), where the slow request is seen in flight.
    metrics_port = free_port()
    metrics = ("-e", "ENSEMBLER_METRICS_PORT=9100", "-p", f"127.0.0.1:{metrics_port}:9100")
    one = started(container, slow_image.tag, *metrics)
    slow = {"request": {"fault": "sleep", "seconds": 3}, "response": {"route_responses": []}}
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(one.post_json, slow)
        for _ in range(400):
            if scrape(metrics_port).get(("ensembler_requests_in_flight", ()), 0) >= 1:
                break
            assert not answer.done(), answer.result()
        else:
            raise AssertionError("the slow request never started")
        status, logs = one.stop()
        assert answer.result(timeout=60) == (200, "ok")
    assert status == 0, logs


@pytest.mark.parametrize("kind", ["gcs", "s3"])
def test_turings_image_builder_args_build_an_image_that_serves_on_knatives_port(
    base_image: engine.Build,
    fixtures_dir: Path,
    tmp_path: Path,
    container: list[engine.Container],
    kind: StoreKind,
) -> None:
    # Exactly the build args Turing's image builder passes (Kaniko's --build-arg), with
    # the repository as the build context and our base image as BaseImage.
    with object_store(kind, tmp_path) as store:
        turing = turing_layout(store, fixtures_dir / "weighted_legacy", run_id="0f1e2d")
        args = {"BASE_IMAGE": engine.BASE_IMAGE, **turing.build_args}
        tag = engine.tag(f"localhost/ensembler-test/turing-{kind}")
        engine.build(tag, engine.DOCKER / "turing.Dockerfile", ROOT, args, host_network=True)
    # Run as Knative runs it: no arguments, PORT set, no probes.
    one = started(container, tag, "-e", "PORT=8080", container_port=8080)
    assert_answers_as_turings_server(one)
    assert_runs_as_a_platform_expects(one)
    # The download stage, its client and its credentials stayed behind.
    history = engine.tool("podman", "history", "--no-trunc", tag).stdout
    environment = one.exec("env").stdout
    assert SECRET not in history + environment + json.dumps(engine.inspect_image(tag))
    clients = one.exec("python", "-c", "import boto3")
    assert clients.returncode != 0 and "No module named 'boto3'" in clients.stderr
