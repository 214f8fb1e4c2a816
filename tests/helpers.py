"""Shared test helpers: start the real CLI as a process and talk HTTP to it over loopback."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from pyfunc_ensembler.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
# Made by tests/fixtures/make_turing_sdk.py (`make fixtures`) with Turing's own SDK and server.
FIXTURES = Path(
    os.environ.get("ENSEMBLER_FIXTURES", ROOT / "tests" / "fixtures" / "turing-sdk-0.16")
)
CLI = [sys.executable, "-m", "pyfunc_ensembler"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fixture_cases() -> list[dict[str, Any]]:
    return json.loads((FIXTURES / "expected.json").read_text())  # type: ignore[no-any-return]


class Server:
    """A `pyfunc-ensembler serve` process on a free loopback port."""

    def __init__(
        self, args: Sequence[str], env: dict[str, str] | None = None, port: int = 0
    ) -> None:
        self.port = port or free_port()
        self.args = [*CLI, "serve", *args, "--host", "127.0.0.1", "--port", str(self.port)]
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Server:
        self.process = subprocess.Popen(
            self.args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                if self.request("POST", "/ensemble", b"{}")[0] == 400:
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start in time")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            conn.close()

    def post_json(self, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        status, _, payload = self.request("POST", "/ensemble", json.dumps(body).encode(), headers)
        return status, json.loads(payload)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, str]:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            _, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return self.process.returncode, err.decode()


@contextmanager
def running(args: Sequence[str], env: dict[str, str] | None = None) -> Iterator[Server]:
    server = Server(args, env).start()
    try:
        yield server
    finally:
        server.stop()


def children(pid: int) -> list[int]:
    """The pids of `pid`'s child processes (its workers, for a supervisor)."""
    path = f"/proc/{pid}/task/{pid}/children"
    with open(path) as file:
        return [int(p) for p in file.read().split()]


def alive(pid: int) -> bool:
    """Whether process `pid` exists and has not exited (a zombie, not yet reaped, has)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def wait_for_children(pid: int, count: int, exclude: set[int], timeout: float = 30) -> list[int]:
    """Wait until `pid` has `count` children outside `exclude`; their pids."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [c for c in children(pid) if c not in exclude]
        if len(new) == count:
            return new
        time.sleep(0.05)
    raise AssertionError(f"expected {count} new workers, have {children(pid)}")


def wait_for(check: Callable[[], Any], timeout: float = 60, every: float = 0.2) -> Any:
    """`check()`'s first truthy value, polled every `every` s until `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(every)
    raise AssertionError(f"{check} stayed false for {timeout} s")


def scrape(port: int, path: str = "/metrics") -> str:
    """One real Prometheus scrape: GET /metrics, checked to be the text format."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("content-type", "").startswith("text/plain; version=0.0.4")
        return response.read().decode()
    finally:
        conn.close()


def console_spans(stderr: str) -> list[dict[str, Any]]:
    """The spans `--tracing console` wrote: one indented JSON object each."""
    return [json.loads(block) for block in re.findall(r"^\{\n.*?^\}$", stderr, re.M | re.S)]


def run_cli(*args: str, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, **kwargs)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The scrape, parsed by Prometheus' own parser: {(name, labels): value}."""
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
