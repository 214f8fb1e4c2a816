"""The load generator: wrk, pinned to its own cores, with a Lua script for POST bodies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

LUA = Path(__file__).resolve().parent / "wrk.lua"


def ensure_wrk() -> str:
    """The path of wrk, installed from Debian's packages when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    apt_install("wrk")
    return shutil.which("wrk") or "wrk"


def apt_install(package: str) -> None:
    """Install a tool the harness needs from Debian's packages (CI runs as root)."""
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"{package} is missing and there is no apt-get: install it yourself")
    subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
    argv = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]
    subprocess.run(argv, check=True, capture_output=True)


def run(
    port: int,
    body: bytes,
    connections: int,
    duration: float,
    cpus: str | None,
    threads: int = 1,
) -> dict[str, Any]:
    """One wrk run; its counts and latency percentiles (µs), and requests per second.

    wrk takes whole seconds: `duration` is rounded, to at least 1.
    """
    with tempfile.NamedTemporaryFile(suffix=".json") as file:
        file.write(body)
        file.flush()
        argv = [
            ensure_wrk(),
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            f"http://127.0.0.1:{port}/ensemble",
        ]
        if cpus is not None:
            argv = ["taskset", "-c", cpus, *argv]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env={**os.environ, "BENCH_BODY": file.name},
            check=True,
        )
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON "))
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result
