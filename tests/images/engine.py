"""buildah and podman as the image tests drive them, on a machine with no Docker engine.

Every command gets ``CONTAINERS_CONF`` pointing at this directory's containers.conf
(runc, and resource limits the CI VM can grant). Builds use the Docker image format
(OCI drops ``HEALTHCHECK``) and see the host's CA bundle, read-only and only while a
``RUN`` runs, so that pip reaches PyPI through the host's TLS-inspecting egress;
nothing of it stays in the image (test_images.py checks).

Every tag a run builds ends in a suffix of its own (`RUN`), so that two runs on one
machine never build over each other's images, and `remove_built` removes them when the
run ends; only the stand-in base (`STANDIN`) is shared, and kept.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pyfunc_ensembler import __version__
from tests.helpers import ROOT, Server, free_port

HERE = Path(__file__).resolve().parent
CONTAINERS_CONF = HERE / "containers.conf"
STANDIN = "localhost/python:3.11-slim"
RUN = uuid.uuid4().hex[:8]
BASE_IMAGE = f"localhost/pyfunc-ensembler:{__version__}-py3.11-{RUN}"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
DOCKER = ROOT / "docker"


def environ() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def tool(
    *args: str | Path, check: bool = True, timeout: float = 1200
) -> subprocess.CompletedProcess[str]:
    """Run buildah or podman; on failure (if `check`) show the end of what it said."""
    command = [str(a) for a in args]
    result = subprocess.run(command, env=environ(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def tag(repository: str) -> str:
    """`repository` (``localhost/x/y``) tagged for this run alone."""
    return f"{repository}:{RUN}"


# What this process has built (or tried to), for `remove_built`.
_built: set[str] = set()


def remove_built() -> None:
    """Remove the images this run built (with any container left on them), then the
    dangling images (``podman image prune``): those of older runs, which reused one tag
    and left each previous image untagged. A build in progress elsewhere keeps what it
    uses (prune skips images that containers, a build's included, stand on)."""
    if _built:
        tool("podman", "rmi", "--force", "--ignore", *sorted(_built))
        _built.clear()
    tool("podman", "image", "prune", "--force")


@dataclasses.dataclass(frozen=True)
class Build:
    tag: str
    seconds: float
    result: subprocess.CompletedProcess[str]

    @property
    def ok(self) -> bool:
        return self.result.returncode == 0

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr


def build(
    tag: str,
    dockerfile: Path,
    context: Path,
    build_args: Mapping[str, str] | None = None,
    *,
    host_network: bool = False,
    check: bool = True,
) -> Build:
    """``buildah bud`` one image; `host_network` lets RUN reach servers on the host's loopback."""
    args: list[str | Path] = ["buildah", "bud", "--format", "docker", "-f", dockerfile, "-t", tag]
    args += ["--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    for name, value in (build_args or {}).items():
        args += ["--build-arg", f"{name}={value}"]
    if host_network:
        args += ["--network", "host"]
    _built.add(tag)
    started = time.monotonic()
    result = tool(*args, context, check=check)
    return Build(tag, time.monotonic() - started, result)


def inspect_image(tag: str) -> dict[str, Any]:
    """`podman image inspect`: Config (User, ExposedPorts, ...), Healthcheck, Size, ..."""
    return json.loads(tool("podman", "image", "inspect", tag).stdout)[0]  # type: ignore[no-any-return]


class Container(Server):
    """One container of `image`, its port 8083 published on a free loopback port.

    It runs with a read-only root file system and a tmpfs on /tmp, as deploy/kubernetes
    runs it (readOnlyRootFilesystem, an emptyDir on /tmp).
    """

    def __init__(
        self,
        image: str,
        *options: str,
        container_port: int = 8083,
        probe: Callable[[Container], bool] | None = None,
    ) -> None:
        self.port = free_port()
        self.name = f"ensembler-test-{uuid.uuid4().hex[:12]}"
        self.image = image
        self.options = options
        self.container_port = container_port
        self.probe = probe or (lambda one: one.request("GET", "/readyz", timeout=2)[0] == 200)
        self.ready_after = 0.0
        """Seconds from `podman run` to the first success of `probe` (/readyz 200)."""

    def start(self, timeout: float = 180) -> Container:
        started = time.monotonic()
        tool(
            "podman", "run", "-d", "--name", self.name, "--read-only", "--read-only-tmpfs=false",
            "--tmpfs", "/tmp", "-p", f"127.0.0.1:{self.port}:{self.container_port}",
            *self.options, self.image,
        )  # fmt: skip
        deadline = started + timeout
        while time.monotonic() < deadline:
            try:
                if self.probe(self):
                    self.ready_after = time.monotonic() - started
                    return self
            except OSError:
                if not self.running():
                    raise AssertionError(f"{self.image} exited:\n{self.logs()}") from None
            time.sleep(0.02)
        raise AssertionError(f"{self.image} never became ready:\n{self.logs()}")

    def running(self) -> bool:
        state = tool("podman", "inspect", "--format", "{{.State.Running}}", self.name)
        return state.stdout.strip() == "true"

    def logs(self) -> str:
        result = tool("podman", "logs", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return tool("podman", "exec", self.name, *command, check=False)

    def wait(self, timeout: float = 60) -> int:
        """Wait for the container to exit; its exit status."""
        return int(tool("podman", "wait", self.name, timeout=timeout).stdout.strip())

    def stop(self, sig: int = 15, timeout: float = 30) -> tuple[int, str]:
        if self.running():
            tool("podman", "kill", "--signal", str(sig), self.name)
        status = self.wait(timeout)
        return status, self.logs()

    def remove(self) -> None:
        tool("podman", "rm", "-f", "-t", "0", self.name, check=False)
