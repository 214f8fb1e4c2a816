"""What starts and ends a process: signals that arrive while a one-process server starts.

Between `return_after_shutdown` (just after the port is bound) and the front end's own
handlers, a server still forks the ensembler's process and sets up tracing; a SIGTERM
sent then must stop it as one sent later does, not be swallowed.
"""

from __future__ import annotations

import importlib
import signal
from collections.abc import Iterator

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
