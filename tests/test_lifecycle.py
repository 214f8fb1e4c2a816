"""What starts and ends a process: signals that arrive while a one-process server
starts, and a listening socket that closes without resetting a connection.

Between `return_after_shutdown` (just after the port is bound) and the front end's own
handlers, a server still forks the ensembler's process and sets up tracing; a SIGTERM
sent then must stop it as one sent later does, not be swallowed.

Closing a listening socket resets the connections whose handshake completed since the
last accept; a client that wrote its request to one has lost it. A server that stops
for good refuses new handshakes first (`refuse_handshakes`), so that none completes
between its last accept and the close.
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import logging
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, cast

import pytest

from pyfunc_ensembler import lifecycle
from pyfunc_ensembler.core import Core
from pyfunc_ensembler.loader import Ensembler, ModelInfo
from pyfunc_ensembler.settings import Settings

INFO = ModelInfo("/models/m", "tests.Route", "lean", "ensemble", "3.11.7", 0.1)


@pytest.fixture
def handlers() -> Iterator[None]:
    """Put this process's SIGTERM/SIGINT handlers back after the test."""
    previous = {signum: signal.getsignal(signum) for signum in lifecycle.SIGNALS}
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)
    lifecycle.take_held()


def test_a_signal_before_the_front_end_handles_signals_is_handed_to_it(handlers: None) -> None:
    lifecycle.return_after_shutdown()
    signal.raise_signal(signal.SIGTERM)
    begun: list[str] = []
    restore = lifecycle.on_signals(lambda: begun.append("shutdown"))
    restore()
    assert begun == ["shutdown"]
    assert lifecycle.take_held() is None  # handed over once


def test_without_a_held_signal_nothing_begins(handlers: None) -> None:
    lifecycle.return_after_shutdown()
    begun: list[str] = []
    lifecycle.on_signals(lambda: begun.append("shutdown"))()
    assert begun == []


@pytest.mark.parametrize("server", ["native", "asgi"])
def test_a_server_signalled_while_it_starts_shuts_down_and_returns(
    server: str, handlers: None
) -> None:
    settings = Settings(host="127.0.0.1", port=0, server=server, graceful_timeout=5)
    sock = lifecycle.bind(settings.host, settings.port)
    core = Core(Ensembler(lambda body, headers: body, False, INFO, None, None))
    lifecycle.return_after_shutdown()
    signal.raise_signal(signal.SIGTERM)
    try:
        # Returns only because the held signal began the shutdown.
        importlib.import_module(f"pyfunc_ensembler.{server}").serve(sock, core, settings)
    finally:
        sock.close()
    assert core.readiness.draining


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux socket filter")
def test_a_connection_attempted_once_handshakes_are_refused_is_refused_not_reset() -> None:
    listening = lifecycle.bind("127.0.0.1", 0)
    address = listening.getsockname()
    made = socket.create_connection(address, timeout=30)  # its handshake completed: queued
    assert lifecycle.refuse_handshakes(listening)
    late = socket.socket()
    late.setblocking(False)
    assert late.connect_ex(address) == errno.EINPROGRESS
    try:
        accepted, _ = listening.accept()  # the one made before is still there to answer
        with accepted:
            accepted.sendall(b"answered")
        listening.close()
        assert made.recv(64) == b"answered"
        # The late SYN was dropped: sent again a second later, it finds nothing
        # listening. Had its handshake completed, the close would have reset it.
        select.select([], [late], [], 30)
        assert late.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED
    finally:
        made.close()
        late.close()


class _FilterRefused(socket.socket):
    """A socket on a kernel that lets only CAP_NET_ADMIN attach a filter."""

    def setsockopt(self, *args: Any) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux socket filter")
def test_a_server_not_allowed_the_filter_stops_without_it(caplog: pytest.LogCaptureFixture) -> None:
    with _FilterRefused() as listening, caplog.at_level(logging.INFO):
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        assert not lifecycle.refuse_handshakes(listening)
    assert "new connections are not refused before the close" in caplog.text


class _Answer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.WriteTransport, transport).write(b"answered")
        transport.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux socket filter")
def test_a_server_stopping_for_good_answers_every_connection_made_and_refuses_the_rest() -> None:
    async def stop() -> tuple[socket.socket, socket.socket]:
        loop = asyncio.get_running_loop()
        listening = lifecycle.bind("127.0.0.1", 0)
        address = listening.getsockname()
        server = await loop.create_server(_Answer, sock=listening)
        made = socket.create_connection(address, timeout=30)  # not accepted yet
        stopping = loop.create_task(lifecycle.stop_listening(server, listening, refuse=True))
        await asyncio.sleep(0)  # it has refused handshakes, and settles
        late = socket.socket()
        late.setblocking(False)
        assert late.connect_ex(address) == errno.EINPROGRESS
        for accepted in await stopping:
            await loop.connect_accepted_socket(_Answer, sock=accepted)
        return made, late

    loop = lifecycle.new_event_loop()
    try:
        made, late = loop.run_until_complete(stop())
    finally:
        loop.close()
    with made, late:
        assert made.recv(64) == b"answered"
        select.select([], [late], [], 30)
        assert late.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED


def test_exit_now_runs_the_atexit_handlers_flushes_and_exits_with_the_status() -> None:
    script = (
        "import atexit, sys; from pyfunc_ensembler import lifecycle; "
        "atexit.register(print, 'atexit ran'); sys.stdout.write('buffered '); "
        "lifecycle.exit_now(3)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (3, "buffered atexit ran\n", "")


def test_exit_now_waits_as_python_does_for_a_thread_that_is_no_daemon() -> None:
    """The thread ends only once the main thread is done, as Python's exit marks it."""
    script = (
        "import threading, time; from pyfunc_ensembler import lifecycle\n"
        "def last():\n"
        "    while threading.main_thread().is_alive(): time.sleep(0.01)\n"
        "    print('the thread finished')\n"
        "threading.Thread(target=last).start(); lifecycle.exit_now(4)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (4, "the thread finished\n"), done.stderr
