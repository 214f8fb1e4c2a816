"""nginx (Debian's ``nginx-light``) as a reverse proxy in front of a server under test,
or as a server answering a constant: the fastest server a load generator can meet, which
shows how many requests the load generator itself can send (`Constant`).

As a proxy it is configured as an ingress would be: HTTP/1.1 to the upstream over a pool
of kept-alive connections (``keepalive``, ``proxy_set_header Connection ""``), access log
off, one worker process pinned beside the load generator. Everything it writes (pid,
logs, temporary bodies) stays in its own directory. The reliability tests' nginx
(tests/reliability/proxies.py) is written by the same `command`.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

from bench import load, procstats, servers

CONFIG = """\
daemon off;
master_process {master_process};
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
{upstream}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
{location}
        }}
    }}
}}
"""
UPSTREAM = """\
    upstream ensembler {{
        server 127.0.0.1:{upstream}{max_fails};
        keepalive {keepalive};
    }}"""
PROXY = """\
            proxy_pass http://ensembler;
            proxy_http_version 1.1;
            proxy_set_header Connection "";"""
CONSTANT = """\
            keepalive_requests 1000000;  # as our servers: no limit on a kept connection
            default_type application/json;
            return 200 '{answer}';"""


def ensure() -> str:
    """The path of nginx, installed from Debian's packages when it is missing."""
    found = shutil.which("nginx") or (Path("/usr/sbin/nginx").is_file() and "/usr/sbin/nginx")
    if found:
        return found
    load.apt_install("nginx-light")
    return shutil.which("nginx") or "/usr/sbin/nginx"


def command(
    binary: str,
    root: Path,
    upstream: int | None,
    port: int,
    *,
    keepalive: int = 256,
    master_process: bool = True,
    max_fails: int | None = None,
    answer: bytes = b"",
) -> list[str]:
    """Write ``root/nginx.conf`` for one nginx on `port` in front of `upstream`; the
    command that runs it in the foreground, logging to ``root/error.log``.

    Every path nginx writes to is under `root`, temporary files of modules the proxy
    never uses included: nginx checks them all at start, and their compiled-in place
    (/var/lib/nginx) need not exist. `master_process` off leaves one process, the one
    started, so that a test that kills it leaves no orphaned worker; ``max_fails=0``
    never marks the upstream down, so that a refused connection (a restart) stays a
    refusal and does not turn into "no live upstreams". Without an `upstream`, nginx
    answers every request with `answer` itself.
    """
    root.mkdir(parents=True, exist_ok=True)
    config = root / "nginx.conf"
    if upstream is None:
        upstream_block, location = "", CONSTANT.format(answer=answer.decode())
    else:
        fails = "" if max_fails is None else f" max_fails={max_fails}"
        upstream_block = UPSTREAM.format(upstream=upstream, max_fails=fails, keepalive=keepalive)
        location = PROXY
    master = "on" if master_process else "off"
    config.write_text(
        CONFIG.format(
            root=root, port=port, master_process=master, upstream=upstream_block, location=location
        )
    )
    return [binary, "-p", str(root), "-c", str(config), "-e", str(root / "error.log")]


class Proxy:
    """One nginx in front of `upstream` (or answering `answer` itself, without one),
    listening on a free port of its own."""

    def __init__(
        self, upstream: int | None, root: Path, cpus: str | None, answer: bytes = b""
    ) -> None:
        self.port = servers.free_port()
        self.root = root
        argv = command(ensure(), root, upstream, self.port, answer=answer)
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
