"""The router's own way of connecting, as load: bench/router's Go client, pinned.

Turing's router calls the ensembler with Go's ``http.DefaultClient``: its transport keeps
2 idle connections per host (``MaxIdleConnsPerHost``) and closes any more, so with more
requests in flight some open a connection and close it after the answer, and each request
has a deadline (10 ms by default in the router), past which Go closes its connection too.
wrk's kept-alive connections never measure that; this does, with the default transport
and with a pool of 100 idle connections.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from bench import load
from bench import router as client

DEFAULT_TRANSPORT = 0
"""`idle_per_host` for ``http.DefaultTransport`` as it is (2 idle connections per host)."""


def build(out: Path) -> Path:
    """The Go client, compiled into `out` (Debian's golang-go installed if missing)."""
    try:
        return client.build(out / "router")
    except RuntimeError as missing:
        if "go is missing" not in str(missing):
            raise
    load.apt_install("golang-go")
    return client.build(out / "router")


def run(
    binary: Path,
    port: int,
    body_file: Path,
    in_flight: int,
    idle_per_host: int,
    timeout_ms: float,
    duration: float,
    cpus: str | None,
) -> dict[str, Any]:
    """One run; the client's summary, plus ``sent`` and ``non_2xx``."""
    argv = [
        str(binary),
        f"-url=http://127.0.0.1:{port}/ensemble",
        f"-body-file={body_file}",
        f"-concurrency={in_flight}",
        f"-duration={duration}s",
        f"-timeout={timeout_ms}ms",
        f"-idle-per-host={idle_per_host}",
    ]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=duration + 60)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["sent"] = result["answered"] + result["timeouts"] + result["lost"] + result["refused"]
    result["non_2xx"] = sum(n for code, n in result["statuses"].items() if code != "200")
    return result
