"""Run N worker processes on one listening socket, and replace any that dies.

The model is loaded once in this process, then each worker is forked from it, so
workers share the model's memory pages (copy-on-write) and none takes traffic before
its model is ready. A worker that exits for any reason (an ensembler calling
``os._exit(3)``, SIGKILL, a segfault) is replaced; uvicorn's own supervisor instead
stops the whole server when a worker exits with code 3.

SIGHUP replaces the workers without refusing a connection (as gunicorn's and uvicorn's
supervisors do): the model is loaded anew here, then worker by worker a new one is
forked from it and, once it is ready, the old one gets SIGTERM and drains. All of them
share the one listening socket, so connections queue in the kernel, never refused, while
a new worker starts. If the model does not load, the workers keep serving the old one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

from pyfunc_ensembler.lifecycle import describe_exit, die_with_parent, refuse_handshakes

logger = logging.getLogger("pyfunc_ensembler.supervisor")

Ready = Callable[[], None]
"""Called by a worker once it is about to accept (its model loaded, its helpers started)."""
Serve = Callable[[socket.socket, int, Ready], None]
"""``serve(listening socket, slot, ready)``: the slot (0..2N-1, a replacement keeps its
predecessor's) is where the worker writes its metrics."""
Ended = Callable[[int], None]
"""``ended(pid)``: called once a worker has exited and been reaped, before any replacement."""
Reload = Callable[[], Serve]
"""Loads the model anew (SIGHUP) and returns what the next workers serve."""

# A worker that dies sooner than this after its start counts as crash-looping.
_MIN_LIFETIME = 1.0
_MAX_BACKOFF = 5.0


class Supervisor:
    def __init__(
        self,
        sock: socket.socket,
        serve: Serve,
        workers: int,
        ended: Ended | None = None,
        reload: Reload | None = None,
    ) -> None:
        self.sock = sock
        self.serve = serve
        self.ended = ended
        self.reload = reload
        self.workers = workers
        self.children: dict[int, tuple[float, int]] = {}
        """pid -> (start time, slot)"""
        self.retired: set[int] = set()  # replaced on SIGHUP: draining, not to be replaced
        self.stopping = False
        self.forced = False
        self.reload_wanted = False
        self.backoff = 0.0
        self._wake = (-1, -1)

    def run(self) -> int:
        # Every signal handled here wakes `_sleep` through this pipe, also one that
        # arrives between a check and the sleep.
        self._wake = os.pipe()
        for fd in self._wake:
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wake[1])
        signal.signal(signal.SIGCHLD, _ignore)  # a handler, so that an exit wakes us
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_hangup)
        for index in range(self.workers):
            os.close(self._spawn(index)[1])
        while self.children:
            self._reap()
            if self.reload_wanted and not self.stopping:
                self.reload_wanted = False
                self._replace_all()
            if self.children:
                self._sleep()
        return 1 if self.forced else 0

    def _sleep(self) -> None:
        select.select([self._wake[0]], [], [])
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake[0], 512):
                pass

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            if self.ended is not None:
                self.ended(pid)
            if pid in self.retired:
                self.retired.discard(pid)
            elif not self.stopping:
                self._replace(pid, status, *child)

    def _spawn(self, slot: int) -> tuple[int, int]:
        """Fork a worker on `slot`: its pid, and a pipe `_wait_ready` reads (or to close)."""
        supervisor = os.getpid()
        ready_read, ready_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ready_read)
            self._child(slot, supervisor, ready_write)
        os.close(ready_write)
        self.children[pid] = (time.monotonic(), slot)
        return pid, ready_read

    def _child(self, slot: int, supervisor: int, ready: int) -> None:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for fd in self._wake:
                os.close(fd)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the supervisor's business
            # Out of the terminal's process group: a Ctrl-C reaches the supervisor
            # alone, which passes one SIGTERM on; two signals would force an exit.
            os.setpgid(0, 0)
            die_with_parent(signal.SIGTERM, supervisor)

            def announce() -> None:
                with contextlib.suppress(BrokenPipeError):  # no one waits for this one
                    os.write(ready, b"r")
                os.close(ready)

            self.serve(self.sock, slot, announce)
            code = 0
        except BaseException:
            logger.exception("worker %d failed", os.getpid())
        finally:
            os._exit(code)

    @staticmethod
    def _wait_ready(ready: int) -> bool:
        """Whether a worker `_spawn` started got ready (not: it died first)."""
        try:
            return os.read(ready, 1) == b"r"  # b"": it exited without
        finally:
            os.close(ready)

    def _replace(self, pid: int, status: int, started: float, slot: int) -> None:
        logger.warning("worker %d %s; starting a new one", pid, describe_exit(status))
        lived = time.monotonic() - started
        self.backoff = 0.0 if lived > _MIN_LIFETIME else min(_MAX_BACKOFF, self.backoff * 2 or 0.1)
        time.sleep(self.backoff)
        if not self.stopping:
            os.close(self._spawn(slot)[1])

    def _replace_all(self) -> None:
        """SIGHUP: the model loaded anew, each worker replaced by one serving it, the old
        one drained only once the new one is ready. New workers write to the other half
        of the metrics slots, so old and new never share one."""
        if self.reload is None:
            return
        try:
            self.serve = self.reload()
        except Exception:
            logger.exception("SIGHUP: the model did not load; the workers keep serving")
            return
        logger.info("SIGHUP: replacing %d workers one by one", self.workers)
        for pid, (_, slot) in list(self.children.items()):
            if self.stopping:
                return
            if pid in self.retired:  # replaced by an earlier SIGHUP, still draining
                continue
            new, ready = self._spawn((slot + self.workers) % (2 * self.workers))
            if not self._wait_ready(ready):
                logger.error("SIGHUP: new worker %d did not start; keeping worker %d", new, pid)
                self.retired.add(new)
                continue
            self.retired.add(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _on_hangup(self, signum: int, frame: FrameType | None) -> None:
        self.reload_wanted = True

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
        # No new connection for workers about to stop (the kernel drops its SYN: the
        # client tries again, and finds the restarted server or a refusal), so that none
        # is reset when the last of them closes the socket. Not on SIGHUP: new workers
        # keep accepting on this socket then. This copy is not needed any more.
        refuse_handshakes(self.sock)
        self.sock.close()
        self._signal_children(signal.SIGTERM)

    def _signal_children(self, signum: int) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


def _ignore(signum: int, frame: FrameType | None) -> None:
    pass
