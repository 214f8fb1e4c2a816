"""Real proxies in front of a test server: nginx and HAProxy from Debian's packages.

Each runs in the foreground from a configuration written to a temporary directory, on
a free loopback port, keeping connections to the server alive (nginx's ``keepalive``,
HAProxy's default), as a sidecar or an ingress does. Each one's log says why a request
failed, so a test can tell a connection refused while nothing listened from a request
the server lost after taking it (`Proxy.lost`).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from bench import nginx
from tests.helpers import free_port

PROXIES = ["nginx", "haproxy"]

_HAPROXY = """\
global
    maxconn 4096
    log stdout format raw local0
defaults
    mode http
    log global
    option dontlognull
    # The status and the termination state: "SC" is a refused connection, "--" normal.
    log-format "%ST %ts"
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend in
    bind 127.0.0.1:{port}
    default_backend ensembler
backend ensembler
    server ensembler 127.0.0.1:{upstream}
"""

# nginx's reason for a 502 that no server answered: nothing listened.
_NGINX_REFUSED = "connect() failed (111: Connection refused)"


class Proxy:
    """`kind` ("nginx" or "haproxy") on a free port, forwarding to `upstream`."""

    def __init__(self, kind: str, upstream: int, directory: Path) -> None:
        self.kind = kind
        self.port = free_port()
        self.dir = directory
        self.log = directory / ("error.log" if kind == "nginx" else "haproxy.log")
        binary = shutil.which(kind) or shutil.which(kind, path="/usr/sbin:/sbin")
        if binary is None:
            raise RuntimeError(f"{kind} is missing: apt-get install {kind}")
        if kind == "nginx":
            # One process, and a server never marked down (bench/nginx.py says why).
            command = nginx.command(
                binary,
                directory,
                upstream,
                self.port,
                keepalive=32,
                master_process=False,
                max_fails=0,
            )
        else:
            config = directory / "haproxy.conf"
            config.write_text(_HAPROXY.format(port=self.port, upstream=upstream))
            command = [binary, "-f", str(config), "-db"]
        self._output = self.log.open("ab") if kind == "haproxy" else subprocess.DEVNULL
        self.process = subprocess.Popen(command, stdout=self._output, stderr=subprocess.STDOUT)
        self._wait_listening()

    def _wait_listening(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log.read_text(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.kind} did not listen in time")

    def lost(self) -> list[str]:
        """Log lines of requests that failed for another reason than a refused connection."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        if self.kind == "nginx":
            errors = [line for line in text.splitlines() if "[error]" in line or "[crit]" in line]
            return [line for line in errors if _NGINX_REFUSED not in line]
        failed = []
        for line in text.splitlines():
            match = re.fullmatch(r"(\d{3}) (\S\S)", line.strip())
            if match is None:
                continue  # HAProxy's own notices
            status, state = match.groups()
            # "C?": the client (ours, which counts its own failures) closed first.
            if state[0] != "C" and (status, state) not in (("200", "--"), ("503", "SC")):
                failed.append(line)
        return failed

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self._output is not subprocess.DEVNULL:
            self._output.close()
