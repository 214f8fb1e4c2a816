"""Real servers on loopback for the batch tests: GCS (gcp-storage-emulator), S3 (moto), BigQuery.

Each is started as a process on free ports and is ready once its port answers; the
tests then talk to it with the same clients the engine uses in production.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.helpers import ROOT

BIN = Path(sys.executable).parent
BQEMULATOR_VENV = Path(os.environ.get("BQEMULATOR_VENV", ROOT / ".venv-bqemulator"))
DUCKDB_VERSION = "v1.5.5"


class Emulator:
    """A server process; `start` returns once every port in `ports` accepts connections."""

    def __init__(
        self,
        args: Sequence[str],
        ports: Sequence[int],
        log: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.args, self.ports, self.log = list(args), list(ports), log
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120) -> Emulator:
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        waiting = list(self.ports)
        while waiting:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.args[0]} exited:\n{self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.args[0]} did not listen in time:\n{self.log.read_text()}"
                )
            try:
                socket.create_connection(("127.0.0.1", waiting[0]), timeout=1).close()
                waiting.pop(0)
            except OSError:
                time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def gcs(port: int, work: Path) -> Emulator:
    return Emulator(
        [
            str(BIN / "gcp-storage-emulator"),
            "start",
            "--host=127.0.0.1",
            f"--port={port}",
            "--in-memory",
        ],
        [port],
        work / "gcs.log",
    )


def s3(port: int, work: Path) -> Emulator:
    return Emulator(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], [port], work / "s3.log"
    )


def bigquery(rest_port: int, grpc_port: int, project: str, work: Path) -> Emulator:
    """bqemulator from its own venv (its pins differ from ours: `make install` makes it).

    It loads DuckDB's spatial extension at start and would download it: the copy that
    the PyPI package duckdb-extension-spatial ships is put where DuckDB looks first,
    under a private HOME, so it starts offline.
    """
    program = BQEMULATOR_VENV / "bin" / "bqemulator"
    if not program.exists():
        raise RuntimeError(f"{program} is missing: run `make install` (it makes that venv)")
    shipped = next(BQEMULATOR_VENV.glob("lib/python*/site-packages/duckdb_extension_spatial"))
    home = work / "home"
    extensions = home / ".duckdb" / "extensions" / DUCKDB_VERSION / "linux_amd64"
    extensions.mkdir(parents=True, exist_ok=True)
    shutil.copy(shipped / "extensions" / DUCKDB_VERSION / "spatial.duckdb_extension", extensions)
    return Emulator(
        [
            str(program),
            "start",
            "--rest-port",
            str(rest_port),
            "--grpc-port",
            str(grpc_port),
            "--project",
            project,
            "--log-level",
            "warning",
        ],
        [rest_port, grpc_port],
        work / "bigquery.log",
        env={"HOME": str(home)},
    )
