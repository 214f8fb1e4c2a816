"""What starts and ends a process: event loop, signals, forced exit, binding, forking.

The lowest module of the serving side: it imports nothing of this package, so that the
ensembler process of ``--isolate`` and the supervisor get what they need from it without
loading a front end.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:  # asyncio itself only where a loop runs: a batch job has none (18 ms)
    import asyncio

logger = logging.getLogger("pyfunc_ensembler.lifecycle")

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Connections the kernel queues before a worker accepts them; front ends that listen
# again on the inherited socket (uvloop does) pass the same number.
BACKLOG = 2048

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # no uvloop on Windows: asyncio's own loop works, slower
        import asyncio

        return asyncio.new_event_loop()
    return uvloop.new_event_loop()  # type: ignore[no-any-return]


def bind(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """Bind the listening socket in the supervisor, so workers inherit it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


# How long a graceful shutdown keeps an idle keep-alive connection open for a request
# the client may be sending on it; at most the graceful timeout.
DRAIN_IDLE_SECONDS = 1.0
# How long a stopping server keeps accepting once new handshakes are refused, so that
# those already under way (a round trip: microseconds on loopback, milliseconds within a
# cluster) complete and are accepted instead of being reset when the socket closes.
SETTLE_SECONDS = 0.1

_SO_ATTACH_FILTER = 26  # from <asm-generic/socket.h>


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


# A classic BPF socket filter that drops a TCP segment with SYN set and ACK not (a new
# handshake) and keeps every other. On a listening socket the kernel runs it with the
# packet starting at the TCP header, whose byte 13 holds the flags (RFC 9293 §3.1).
_DROP_SYN = (
    (0x30, 0, 0, 13),  # ldb [13]: the TCP flags
    (0x54, 0, 0, 0x12),  # and #SYN|ACK
    (0x15, 0, 1, 0x02),  # jeq #SYN: the next (drop), else the one after (keep)
    (0x06, 0, 0, 0),  # ret #0: drop
    (0x06, 0, 0, 0xFFFFFFFF),  # ret #-1: keep it all
)


def refuse_handshakes(sock: socket.socket) -> bool:
    """Make the kernel drop new connection attempts on the listening `sock` (Linux only),
    while handshakes already under way complete and queue as before.

    For a server that stops for good: closing a listening socket resets every connection
    that completed its handshake since the last accept, and a client may have written its
    request to one already. A dropped SYN never reached us: the client sends it again a
    second later, and then finds the restarted server or a refusal. The filter is on the
    socket, not on this copy of it: every process sharing the socket is affected.

    Whether the filter is on. Some kernels let only CAP_NET_ADMIN attach one (EPERM for
    the image's uid 10001 on such a host); the shutdown then goes on without it, and a
    connection completed in the microseconds before the close may be reset, as before.
    """
    if not sys.platform.startswith("linux"):
        return False
    instructions = (_SockFilter * len(_DROP_SYN))(*(_SockFilter(*i) for i in _DROP_SYN))
    program = _SockFprog(len(_DROP_SYN), instructions)
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, bytes(program))
    except OSError as error:
        logger.info("new connections are not refused before the close: %s", error)
        return False
    return True


async def stop_listening(
    server: asyncio.AbstractServer, sock: socket.socket, refuse: bool
) -> list[socket.socket]:
    """Stop accepting on `sock` (which `server` listens on) without resetting a
    connection a client has made: those the kernel has queued are returned, to be answered.

    `refuse`: this process stops the server for good (it is the only one on `sock`),
    so new handshakes are refused first (`refuse_handshakes`; a supervisor does it
    before it stops its workers). Then `server` keeps accepting for `SETTLE_SECONDS`,
    so that the handshakes under way complete, and what is queued after is accepted
    here. A worker replaced on SIGHUP does not refuse: the others keep accepting.
    """
    import asyncio

    if refuse:
        refuse_handshakes(sock)
    await asyncio.sleep(SETTLE_SECONDS)
    return _close_listening(server, sock)


def _close_listening(server: asyncio.AbstractServer, sock: socket.socket) -> list[socket.socket]:
    """Close `server`, which listens on `sock`, and accept what the kernel has queued.

    The queue is emptied from a copy of the socket, between `server` closing its own and
    the copy's close, with nothing in between that could let the event loop run.
    """
    held = sock.dup()
    server.close()
    held.setblocking(False)
    queued: list[socket.socket] = []
    try:
        while len(queued) < BACKLOG:
            connection, _ = held.accept()
            queued.append(connection)
    except OSError:  # BlockingIOError: the queue is empty
        pass
    finally:
        held.close()
    return queued


def on_signals(begin_shutdown: Callable[[], Any]) -> Callable[[], None]:
    """SIGTERM/SIGINT: the first begins the graceful shutdown, a second exits at once.

    Plain `signal.signal` handlers rather than the loop's: they run even while a
    synchronous ensembler blocks the loop, so a second signal always gets out. Returns
    what puts the previous handlers back.
    """
    received: list[int] = []

    def handle(signum: int, frame: FrameType | None) -> None:
        if received:
            force_exit(signum)
        received.append(signum)
        logger.info("%s: shutting down gracefully", signal_name(signum))
        begin_shutdown()

    previous = {signum: signal.signal(signum, handle) for signum in SIGNALS}
    held = take_held()
    if held is not None:
        handle(held, None)

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore


# Signals that arrived before a front end handled them itself (`return_after_shutdown`).
_held: list[int] = []


def return_after_shutdown() -> None:
    """Make SIGTERM/SIGINT end a one-process server with status 0 once it has drained.

    uvicorn shuts down gracefully on these signals, then re-raises the signal with the
    handlers it found at start; with these handlers the re-raise is harmless and the
    server returns normally instead of dying by the signal. Until the front end installs
    its own, a signal is held for it (`take_held`): one sent while the server is still
    starting (forking the ensembler's process, setting up tracing) must still stop it.
    """
    for signum in SIGNALS:
        signal.signal(signum, _hold)


def _hold(signum: int, frame: FrameType | None) -> None:
    _held.append(signum)


def take_held() -> int | None:
    """The first signal held since `return_after_shutdown`, once; None if there was none."""
    signum = _held[0] if _held else None
    _held.clear()
    return signum


def force_exit(signum: int) -> None:
    """A second SIGTERM/SIGINT during a graceful shutdown: leave now, in-flight or not."""
    logger.warning("second %s: exiting without waiting for requests in flight", signal_name(signum))
    logging.shutdown()
    os._exit(1)


def exit_now(status: int) -> NoReturn:
    """End this process with `status` as Python would, less the interpreter's teardown.

    The atexit handlers run (logging's flush among them) and stdout and stderr are
    flushed; what is skipped is freeing every module and object one by one, which with
    pyarrow and numpy loaded takes 60-90 ms: a tenth of a million-row batch job. (The
    job's forked workers end so already: multiprocessing ends a forked child with
    `os._exit`.) While a thread that is not a daemon runs, Python would wait for it:
    then this exits as usual.
    """
    others = (t for t in threading.enumerate() if t is not threading.current_thread())
    if any(not t.daemon for t in others):
        sys.exit(status)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream
            stream.flush()
    os._exit(status)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped a command that has no graceful shutdown (`raise_on_signals`)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


def raise_on_signals() -> None:
    """Make SIGTERM as well as SIGINT raise (`Interrupted`) in this process.

    For a batch job: it then stops as a job that failed does, which leaves its sink as
    it was, where SIGTERM (a deleted pod) would kill it with its staged output left
    behind. Processes forked from this one (the engine's workers) inherit the handler:
    they are their parent's to stop, so there SIGINT does nothing (a Ctrl-C reaches the
    whole process group) and SIGTERM kills as it does by default, without a traceback.
    """
    parent = os.getpid()

    def stop(signum: int, frame: FrameType | None) -> None:
        if os.getpid() == parent:
            raise Interrupted(signum)
        if signum != signal.SIGINT:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for signum in SIGNALS:
        signal.signal(signum, stop)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def fork(
    what: str,
    run: Callable[[socket.socket], None],
    inherited: socket.socket,
    kind: int = socket.SOCK_STREAM,
) -> tuple[int, socket.socket]:
    """Fork a process that runs `run` on its end of a new socket pair, then exits (status
    0 once `run` returns); it is `detach`ed, and `inherited` is closed there. Its pid,
    and our end."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, kind)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            inherited.close()
            ours.close()
            detach(parent)
            run(theirs)
            code = 0
        except BaseException:
            logger.exception("%s %d failed", what, os.getpid())
        finally:
            os._exit(code)
    theirs.close()
    return pid, ours


def detach(parent: int) -> None:
    """A helper process leaves signals to `parent` and ends with it: the parent drains on
    SIGTERM while its helpers answer what it still waits for, then closes their sockets,
    which ends them; the kernel kills them if the parent dies first."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(signal.SIGKILL, parent)


def die_with_parent(signum: int, parent: int) -> None:
    """Have the kernel send `signum` to this forked process if `parent` (the pid that
    forked it) dies (Linux only).

    Without it a SIGKILLed supervisor leaves its workers serving, orphaned, on the port.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signum)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signum)


def describe_exit(status: int) -> str:
    """A wait status in words: ``exited with code 3``, ``was killed by SIGKILL``."""
    if os.WIFSIGNALED(status):
        return f"was killed by {signal_name(os.WTERMSIG(status))}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"
