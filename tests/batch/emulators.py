"""Real servers on loopback for the batch tests: GCS (gcp-storage-emulator), S3 (moto), BigQuery.

Each is started as a process on free ports and is ready once its port answers; the
tests then talk to it with the same clients the engine uses in production. What the
object stores were asked can be read back (`Emulator.requests`): GCS's from its
request log, S3's from moto's own recorder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

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
        requests: Callable[[], list[Request]] | None = None,
    ) -> None:
        self.args, self.ports, self.log = list(args), list(ports), log
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self._requests = requests

    def requests(self) -> list[Request]:
        """What the server was asked so far, oldest first (for the object stores)."""
        assert self._requests is not None, f"{self.args[0]} keeps no request log"
        return self._requests()

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


@dataclasses.dataclass(frozen=True)
class Request:
    """One request to an object store, as what it does to which object."""

    action: str
    """``upload`` (data sent), ``copy`` (inside the store), ``read`` (data fetched),
    ``delete``, or ``other`` (metadata, listings, buckets)."""
    key: str
    """``bucket/object``."""
    source: str | None = None
    """A copy's source, ``bucket/object``."""


def gcs(port: int, work: Path) -> Emulator:
    log = work / "gcs.log"
    return Emulator(
        [
            str(BIN / "gcp-storage-emulator"),
            "start",
            "--host=127.0.0.1",
            f"--port={port}",
            "--in-memory",
        ],
        [port],
        log,
        env={"PYTHONUNBUFFERED": "1"},  # each request's log line as it is answered
        requests=lambda: [_gcs_request(m[1], m[2]) for m in _GCS_LINE.finditer(log.read_text())],
    )


_GCS_LINE = re.compile(r'"(\w+) (\S+) HTTP/1\.1" \d+')
_GCS_OBJECT = re.compile(r"/b/([^/]+)/o/(.+)")


def _gcs_request(method: str, url: str) -> Request:
    parts = urlsplit(url)
    path, query = parts.path, parse_qs(parts.query)
    if path.startswith("/upload/"):  # JSON API uploads name the object in the query
        bucket = path.split("/b/")[1].split("/")[0]
        return Request("upload", f"{bucket}/{query['name'][0]}")
    found = _GCS_OBJECT.search(path)
    if found is None:
        return Request("other", unquote(path))
    bucket, name = found[1], found[2]
    for verb in ("/rewriteTo/b/", "/copyTo/b/"):
        if verb in name and method == "POST":
            source, _, target = name.partition(verb)
            target_bucket, _, target_name = target.partition("/o/")
            return Request(
                "copy", f"{target_bucket}/{unquote(target_name)}", f"{bucket}/{unquote(source)}"
            )
    key = f"{bucket}/{unquote(name)}"
    if method == "GET" and (query.get("alt") == ["media"] or path.startswith("/download/")):
        return Request("read", key)
    return Request("delete" if method == "DELETE" else "other", key)


def s3(port: int, work: Path, *, record: bool = False) -> Emulator:
    """moto's server; with `record`, its recorder keeps every request (`requests`)."""
    recording = work / "s3-requests.jsonl"
    env = {"MOTO_ENABLE_RECORDING": "True", "MOTO_RECORDER_FILEPATH": str(recording)}
    return Emulator(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        [port],
        work / "s3.log",
        env=env if record else None,
        requests=lambda: [_s3_request(json.loads(line)) for line in recording.open()],
    )


def _s3_request(entry: dict[str, object]) -> Request:
    method = str(entry["method"])
    parts = urlsplit(str(entry["url"]))
    key = unquote(parts.path.lstrip("/"))
    headers = {k.lower(): str(v) for k, v in dict(entry["headers"]).items()}  # type: ignore[call-overload]
    if "/" not in key.rstrip("/"):  # the bucket itself: listings, creation
        return Request("other", key)
    if method == "PUT" and "x-amz-copy-source" in headers:
        return Request("copy", key, unquote(headers["x-amz-copy-source"]).lstrip("/"))
    actions = {"PUT": "upload", "POST": "upload", "GET": "read", "DELETE": "delete"}
    return Request(actions.get(method, "other"), key)


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
