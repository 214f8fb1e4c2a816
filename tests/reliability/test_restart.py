"""Restarts under load lose nothing that reached the server; SIGHUP fails nothing.

A router-like Go client (bench/router: net/http, kept-alive connections, chunked bodies)
sends from 16 goroutines, straight to the server or through nginx or HAProxy. Mid-load
the server gets SIGTERM and, once it has exited, the same command starts it again.
Connections refused while nothing listens are expected (the client never had one, or
the proxy logged a refused connect); a request that reached the server's socket must
be answered: on a kept-alive connection, from the accept queue, or in flight. SIGHUP with
``--workers N`` replaces the workers one by one with the model loaded anew: no request
fails at all, none is even refused.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.router import build
from tests import ensemblers
from tests.helpers import Server, alive, children
from tests.reliability.net import VALID, post_bytes, read_response, read_responses
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


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


@pytest.mark.parametrize("when", ["behind-an-answer", "on-an-idle-connection"])
def test_requests_pipelined_in_a_drain_are_all_answered_the_last_saying_close(
    test_models: dict[str, Path], front_end: str, tmp_path: Path, when: str
) -> None:
    args = [str(test_models["faulty"]), "--server", front_end, "--sync-threads", "1"]
    server = Server(args).start()
    assert server.process is not None
    started, release = tmp_path / "started", tmp_path / "release"
    slow = {**VALID, "request": {"fault": "sleep", "started": str(started), "until": str(release)}}
    three = b"".join(post_bytes(json.dumps(body).encode()) for body in (slow, VALID, VALID))
    address = ("127.0.0.1", server.port)
    sock, probe = (socket.create_connection(address, 30) for _ in range(2))
    with sock, probe:
        if when == "behind-an-answer":
            sock.sendall(three)
            _wait_for(started)  # the first is being answered, the two others wait behind it
        server.process.send_signal(signal.SIGTERM)
        ready = b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n"
        while probe.sendall(ready) or read_response(probe)[0] == 200:
            pass  # until readiness goes false: the drain began
        if when == "on-an-idle-connection":  # within the drain's idle time
            sock.sendall(three)
            _wait_for(started)  # all three have been read
        release.touch()
        answers = read_responses(sock, 3)
        assert sock.recv(1) == b""  # then it closes
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert [headers.get("connection") for _, headers, _ in answers][-1] == "close"
    assert "close" not in [headers.get("connection") for _, headers, _ in answers[:-1]]
    code = server.process.wait(timeout=60)
    _, log = server.stop()
    assert code == 0, log


@pytest.mark.parametrize("via", ["direct", "nginx"])
def test_sighup_replaces_the_workers_one_by_one_without_a_failed_request(
    router: Path, front_end: str, via: str, tmp_path: Path, proxy_factory: list[Proxy]
) -> None:
    model = ensemblers.save_model(ensemblers.Versioned("v1"), tmp_path / "model")
    server = Server([str(model), "--server", front_end, "--workers", "2"]).start()
    assert server.process is not None
    port = server.port
    if via != "direct":
        proxy_factory.append(Proxy(via, server.port, tmp_path))
        port = proxy_factory[0].port
    load = Load(router, f"http://127.0.0.1:{port}/ensemble")
    try:
        load.wait_answered(ANSWERS)
        old = set(children(server.process.pid))
        assert len(old) == 2 and server.post_json(VALID) == (200, "v1")
        # A new version where the model was: the new workers must load it.
        shutil.rmtree(model)
        ensemblers.save_model(ensemblers.Versioned("v2"), model)
        server.process.send_signal(signal.SIGHUP)
        while any(alive(pid) for pid in old):  # every old worker has drained and exited
            assert server.process.poll() is None
            time.sleep(0.05)
        load.wait_answered(load.answered + ANSWERS)
        summary = load.finish()
        workers = set(children(server.process.pid))
        answers = {server.post_json(VALID)[1] for _ in range(10)}
    finally:
        load.kill()
        code, log = server.stop()
    assert code == 0, log
    assert summary["statuses"].keys() == {"200"} and summary["errors"] == {}, summary
    assert len(workers) == 2 and not workers & old, log
    assert answers == {"v2"}  # the model loaded anew
    if proxy_factory:
        assert proxy_factory[0].lost() == [], summary
