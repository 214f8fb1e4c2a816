"""A client that calls the server as Turing's router does (main.go: Go's net/http).

`build` compiles it with the Go toolchain found on PATH (Debian's ``golang-go``): the
standard library only, offline (``GOPROXY=off``), so a build never fetches a module.
The tests (graceful restarts under load) and the benchmark both run the binary; its
flags are in main.go, and it prints one JSON summary when it stops.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).resolve().parent


def build(target: Path) -> Path:
    """Compile the client to `target` (a file path) and return it."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("go is missing: apt-get install golang-go (Debian's Go toolchain)")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOTOOLCHAIN": "local"}
    if "HOME" not in env and "GOCACHE" not in env:  # go needs somewhere to cache builds
        env["GOCACHE"] = str(target.parent / "go-cache")
    result = subprocess.run(
        [go, "build", "-o", str(target), "."],
        cwd=SOURCE,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"go build failed:\n{result.stderr}")
    return target
