"""Run N worker processes on one listening socket, and replace any that dies.

The model is loaded once in this process, then each worker is forked from it, so
workers share the model's memory pages (copy-on-write) and none takes traffic before
its model is ready. A worker that exits for any reason (an ensembler calling
``os._exit(3)``, SIGKILL, a segfault) is replaced; uvicorn's own supervisor instead
stops the whole server when a worker exits with code 3.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

from pyfunc_ensembler.lifecycle import describe_exit, die_with_parent

logger = logging.getLogger("pyfunc_ensembler.supervisor")

Serve = Callable[[socket.socket, int], None]
"""``serve(listening socket, worker index)``: the index (0..N-1) is kept by a replacement."""
Ended = Callable[[int], None]
"""``ended(pid)``: called once a worker has exited and been reaped, before any replacement."""

# A worker that dies sooner than this after its start counts as crash-looping.
_MIN_LIFETIME = 1.0
_MAX_BACKOFF = 5.0


class Supervisor:
    def __init__(
        self, sock: socket.socket, serve: Serve, workers: int, ended: Ended | None = None
    ) -> None:
        self.sock = sock
        self.serve = serve
        self.ended = ended
        self.workers = workers
        self.children: dict[int, tuple[float, int]] = {}
        """pid -> (start time, worker index)"""
        self.stopping = False
        self.forced = False
        self.backoff = 0.0

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for index in range(self.workers):
            self._spawn(index)
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            child = self.children.pop(pid, None)
            if child is not None and self.ended is not None:
                self.ended(pid)
            if child is not None and not self.stopping:
                self._replace(pid, status, *child)
        return 1 if self.forced else 0

    def _spawn(self, index: int) -> None:
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:
            self._child(index, supervisor)
        self.children[pid] = (time.monotonic(), index)

    def _child(self, index: int, supervisor: int) -> None:
        code = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            # Out of the terminal's process group: a Ctrl-C reaches the supervisor
            # alone, which passes one SIGTERM on; two signals would force an exit.
            os.setpgid(0, 0)
            die_with_parent(signal.SIGTERM, supervisor)
            self.serve(self.sock, index)
            code = 0
        except BaseException:
            logger.exception("worker %d failed", os.getpid())
        finally:
            os._exit(code)

    def _replace(self, pid: int, status: int, started: float, index: int) -> None:
        logger.warning("worker %d %s; starting a new one", pid, describe_exit(status))
        lived = time.monotonic() - started
        self.backoff = 0.0 if lived > _MIN_LIFETIME else min(_MAX_BACKOFF, self.backoff * 2 or 0.1)
        time.sleep(self.backoff)
        if not self.stopping:
            self._spawn(index)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            # A second signal: stop waiting for requests in flight. Any later one is
            # ignored: the exit is under way, and Python restores the default handlers
            # while it finalizes, so one arriving then would kill us instead of status 1.
            self.forced = True
            self._signal_children(signal.SIGKILL)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            return
        self.stopping = True
        logger.info("stopping %d workers", len(self.children))
        # The workers stop accepting; closing this copy too makes new connections be
        # refused at once instead of waiting in the backlog for no one.
        self.sock.close()
        self._signal_children(signal.SIGTERM)

    def _signal_children(self, signum: int) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
