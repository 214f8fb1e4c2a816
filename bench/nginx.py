"""nginx (Debian's ``nginx-light``) as a reverse proxy in front of a server under test.

Configured as an ingress would be: HTTP/1.1 to the upstream over a pool of kept-alive
connections (``keepalive``, ``proxy_set_header Connection ""``), access log off, one
worker process pinned beside the load generator. Everything it writes (pid, logs,
temporary bodies) stays in its own directory.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

from bench import load, procstats, servers

CONFIG = """\
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    upstream ensembler {{
        server 127.0.0.1:{upstream};
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://ensembler;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def ensure() -> str:
    """The path of nginx, installed from Debian's packages when it is missing."""
    found = shutil.which("nginx") or (Path("/usr/sbin/nginx").is_file() and "/usr/sbin/nginx")
    if found:
        return found
    load.apt_install("nginx-light")
    return shutil.which("nginx") or "/usr/sbin/nginx"


class Proxy:
    """One nginx in front of `upstream`, listening on a free port of its own."""

    def __init__(self, upstream: int, root: Path, cpus: str | None) -> None:
        self.port = servers.free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        config = root / "nginx.conf"
        config.write_text(CONFIG.format(root=root, upstream=upstream, port=self.port))
        argv = [ensure(), "-p", str(root), "-c", str(config), "-e", str(root / "error.log")]
        if cpus is not None:
            argv = ["taskset", "-c", cpus, *argv]
        self.process = subprocess.Popen(argv, stderr=subprocess.PIPE)
        servers.wait_listening(self.port, self.process, "nginx")

    def pids(self) -> list[int]:
        return procstats.tree(self.process.pid)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGQUIT)  # nginx's graceful stop
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
