"""The servers under test: how to start each one pinned to its cores, and when it is ready."""

from __future__ import annotations

import dataclasses
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench import procstats
from bench.payloads import HEADERS

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUR_PYTHON = Path(sys.executable)
REFERENCE_PYTHON = BENCH / ".venv-ref" / "bin" / "python"


@dataclasses.dataclass(frozen=True)
class Server:
    """One way of serving a saved model: Turing's runner, or one of our front ends."""

    name: str
    turing: bool = False
    front_end: str = "asgi"
    flags: tuple[str, ...] = ()
    """Extra flags: Turing's ``-l WARNING``, or ours like ``--force-mlflow``."""
    runner: tuple[str, ...] = ("-m", "pyfunc_ensembler")
    """What our Python runs: the package, or a script around its command line."""

    def argv(self, model: Path, port: int, workers: int = 1) -> list[str]:
        if self.turing:
            runner = [str(REFERENCE_PYTHON), str(BENCH / "turing_main.py")]
            return [*runner, "--mlflow_ensembler_dir", str(model), *self.flags]
        serve = [str(OUR_PYTHON), *self.runner, "serve", str(model)]
        options = ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        return [*serve, *options, "--server", self.front_end, *self.flags]


def turing(debug: bool = False) -> Server:
    # Turing's runner logs at DEBUG unless told otherwise (its image passes LOG_LEVEL).
    if debug:
        return Server("turing-debug", turing=True)
    return Server("turing", turing=True, flags=("-l", "WARNING"))


# How a flag shows in a server's name: `native-mlflow`, `native-isolate`.
SUFFIXES = {"--force-mlflow": "-mlflow", "--isolate": "-isolate", "--busy-poll": "-busypoll"}


def ours(front_end: str, *flags: str) -> Server:
    suffix = "".join(SUFFIXES.get(flag, "") for flag in flags)
    return Server(f"{front_end}{suffix}", front_end=front_end, flags=flags)


def without_their_metrics(front_end: str) -> Server:
    """Ours with the set-up for the ensembler's own metrics left out (the script's doc)."""
    script = str(BENCH / "without_their_metrics.py")
    return Server(f"{front_end}-theirs-off", front_end=front_end, runner=(script,))


def our_front_ends() -> list[str]:
    """The front ends ``pyfunc-ensembler serve --help`` offers (``--server {asgi,native}``)."""
    help_text = subprocess.run(
        [str(OUR_PYTHON), "-m", "pyfunc_ensembler", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"--server \{([^}]*)\}", help_text)
    return match.group(1).split(",") if match else ["asgi"]


class Running:
    """A started server: its process, port, and how long it took to answer its first 200."""

    def __init__(
        self,
        server: Server,
        model: Path,
        port: int,
        cpus: str | None,
        log: Path,
        workers: int = 1,
        python_flags: tuple[str, ...] = (),
    ) -> None:
        self.server = server
        self.port = port
        argv = server.argv(model, port, workers)
        argv[1:1] = python_flags
        if cpus is not None:
            argv = ["taskset", "-c", cpus, *argv]
        env = {**os.environ, "BENCH_PORT": str(port), "PYTHONUNBUFFERED": "1"}
        env.pop("LOG_LEVEL", None)
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            argv, stdout=self._log_file, stderr=subprocess.STDOUT, env=env
        )
        self.ready_seconds: float | None = None

    def wait_ready(self, body: bytes, timeout: float = 120) -> float:
        """Seconds from process start to the first 200 answer to `body`."""
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.server.name} exited while starting:\n{tail}")
            try:
                if post(self.port, body, timeout=5)[0] == 200:
                    self.ready_seconds = time.perf_counter() - self.started
                    return self.ready_seconds
            except OSError:
                pass
            time.sleep(0.002)
        raise RuntimeError(f"{self.server.name} gave no 200 within {timeout} s")

    def pids(self) -> list[int]:
        return procstats.tree(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()


def wait_listening(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    """Wait until something accepts connections on `port`, or `process` has exited."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"{name} exited while starting: {error}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"{name} did not listen on {port} within 30 s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str, timeout: float = 10) -> tuple[int, bytes]:
    return _request(port, "GET", path, None, timeout)


def post(port: int, body: bytes, timeout: float = 10) -> tuple[int, bytes]:
    return _request(port, "POST", "/ensemble", body, timeout)


def _request(
    port: int, method: str, path: str, body: bytes | None, timeout: float
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=HEADERS if body is not None else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
