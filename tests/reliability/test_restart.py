"""Restarts under load lose nothing that reached the server.

A router-like Go client (bench/router: net/http, kept-alive connections, chunked bodies)
sends from 16 goroutines, straight to the server or through nginx or HAProxy. Mid-load
the server gets SIGTERM and, once it has exited, the same command starts it again.
Connections refused while nothing listens are expected (the client never had one, or
the proxy logged a refused connect); a request that reached the server's socket must
be answered: on a kept-alive connection, from the accept queue, or in flight.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.router import build
from tests.helpers import Server
from tests.reliability.proxies import PROXIES, Proxy

# Answers to wait for before the signal, and after the restart, before stopping.
ANSWERS = 300


@pytest.fixture(scope="session")
def router(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("router") / "router")


class Load:
    """The Go client, sending until `finish`; `answered` follows its progress lines."""

    def __init__(self, router: Path, url: str) -> None:
        command = [str(router), "-url", url, "-concurrency", "16", "-progress", "10"]
        self.process = subprocess.Popen(
            [*command, "-timeout", "120s"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.answered = 0
        self.other: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._follow, daemon=True)
        self._reader.start()

    def _follow(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                if line.startswith("answered "):
                    self.answered = int(line.split()[1])
                else:
                    self.other.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_answered(self, count: int, timeout: float = 240) -> None:
        """Until `count` requests have been answered (by anyone, with any status)."""
        with self._changed:
            self._changed.wait_for(
                lambda: self.answered >= count or self.process.poll() is not None, timeout
            )
            if self.answered < count:
                raise AssertionError(f"{self.answered} answers, not {count}: {self.other}")

    def finish(self) -> dict[str, Any]:
        """Stop sending (stdin closes), wait for what is in flight, and return the summary."""
        out, _ = self.process.communicate(timeout=240)
        self._reader.join(30)
        return json.loads(out)  # type: ignore[no-any-return]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def proxy_factory(tmp_path: Path) -> Iterator[list[Proxy]]:
    started: list[Proxy] = []
    yield started
    for proxy in started:
        proxy.stop()


@pytest.mark.parametrize("via", ["direct", *PROXIES])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_graceful_restart_under_load_loses_no_request(
    router: Path,
    test_models: dict[str, Path],
    front_end: str,
    workers: str,
    via: str,
    tmp_path: Path,
    proxy_factory: list[Proxy],
) -> None:
    args = [str(test_models["faulty"]), "--server", front_end, "--workers", workers]
    server = Server(args).start()
    port = server.port
    if via != "direct":
        proxy_factory.append(Proxy(via, server.port, tmp_path))
        port = proxy_factory[0].port
    load = Load(router, f"http://127.0.0.1:{port}/ensemble")
    restarted = None
    try:
        load.wait_answered(ANSWERS)
        code, log = server.stop()  # SIGTERM, then wait for the exit
        assert code == 0, log
        restarted = Server(args, port=server.port).start()
        load.wait_answered(load.answered + ANSWERS)
        summary = load.finish()
    finally:
        load.kill()
        if restarted is not None:
            restarted.stop()
    assert summary["lost"] == 0 and summary["timeouts"] == 0, summary
    # What a proxy answers for a refused connection: nginx 502, HAProxy 503.
    refused = {"direct": set(), "nginx": {"502"}, "haproxy": {"503"}}[via]
    assert set(summary["statuses"]) <= {"200", *refused}, summary
    if proxy_factory:
        assert proxy_factory[0].lost() == [], summary
