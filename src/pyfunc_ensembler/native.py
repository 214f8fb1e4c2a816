"""The native front end (the default): HTTP/1.1 on uvloop with llhttp, straight into the core.

`serve` runs one worker's event loop: it accepts connections (each an `http11.Connection`),
ticks a clock that refreshes the Date header and enforces every connection's deadlines,
and on SIGTERM/SIGINT shuts down gracefully (`shut_down`): tell the core (readiness goes
false), stop accepting without resetting a connection (`lifecycle.stop_listening`: the
connections queued are accepted and answered), answer every request already received,
the last on each connection with ``Connection: close``, close a connection that stays
idle, let requests in flight finish within ``--graceful-timeout``, then close what is
left. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from pyfunc_ensembler.core import Core
from pyfunc_ensembler.http11 import Connection, Limits, ServerState
from pyfunc_ensembler.lifecycle import (
    BACKLOG,
    DRAIN_IDLE_SECONDS,
    new_event_loop,
    on_signals,
    stop_listening,
)
from pyfunc_ensembler.settings import Settings

logger = logging.getLogger("pyfunc_ensembler.native")


def serve(sock: socket.socket, core: Core, settings: Settings) -> None:
    """Serve on the bound `sock` until SIGTERM/SIGINT, then drain and return."""
    loop = new_event_loop()
    try:
        loop.run_until_complete(_serve(sock, core, settings))
    finally:
        loop.close()


def limits(settings: Settings) -> Limits:
    return Limits(
        max_body_size=settings.max_body_size,
        max_header_size=settings.max_header_size,
        receive_timeout=settings.receive_timeout,
        keepalive_timeout=settings.keepalive_timeout,
    )


async def _serve(sock: socket.socket, core: Core, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    state = ServerState(core, limits(settings), settings.busy_poll / 1e6, sock.fileno())
    listener = await loop.create_server(lambda: Connection(state), sock=sock, backlog=BACKLOG)
    clock = _Clock(loop, state, _tick_seconds(state.limits))
    stop = asyncio.Event()
    restore = on_signals(lambda: loop.call_soon_threadsafe(stop.set))
    try:
        await stop.wait()
        alone = settings.workers <= 1
        await shut_down(listener, sock, state, settings.graceful_timeout, alone)
    finally:
        clock.cancel()
        restore()


async def shut_down(
    listener: asyncio.AbstractServer,
    sock: socket.socket,
    state: ServerState,
    grace: float,
    alone: bool,
) -> None:
    """Stop accepting (answering what the accept queue holds), answer every request
    already sent with ``Connection: close``, and give the busy ones `grace` seconds.
    `alone`: no other process serves `sock` (see `stop_listening`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    state.core.drain()
    idle = min(grace, DRAIN_IDLE_SECONDS)
    state.drain(idle)
    loop.call_later(idle + 0.05, state.tick)  # closes idle connections then, not a tick later
    for accepted in await stop_listening(listener, sock, refuse=alone):
        await loop.connect_accepted_socket(lambda: Connection(state), sock=accepted)
    # Connections close themselves after their answer; poll rather than hook into each.
    while state.connections and loop.time() < deadline:
        await asyncio.sleep(0.05)
    if state.connections:
        logger.warning(
            "%d connections still busy after %s s: closing them", len(state.connections), grace
        )
        for connection in list(state.connections):
            if connection.transport is not None:
                connection.transport.abort()
        # Answers still being worked out have lost their clients: stop them.
        others = asyncio.all_tasks() - {asyncio.current_task()}
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


class _Clock:
    """Calls `state.tick` every `seconds` until cancelled."""

    def __init__(self, loop: asyncio.AbstractEventLoop, state: ServerState, seconds: float):
        self.loop = loop
        self.state = state
        self.seconds = seconds
        self.handle = loop.call_later(seconds, self._tick)

    def _tick(self) -> None:
        self.state.tick()
        self.handle = self.loop.call_later(self.seconds, self._tick)

    def cancel(self) -> None:
        self.handle.cancel()


def _tick_seconds(limits: Limits) -> float:
    """Once a second (the Date header's resolution), more often for short test timeouts."""
    timeouts = [t for t in (limits.receive_timeout, limits.keepalive_timeout) if t > 0]
    return max(0.05, min([1.0, *(t / 4 for t in timeouts)]))
