"""``--isolate``: the ensembler runs in a process of its own, so that its death is an answer.

Without it the ensembler runs in the worker, and an ensembler that ends its process
(``os._exit``, SIGSEGV, SIGKILL, the OOM killer) takes its client's connection with it.
With it each worker, before it serves, forks a *zygote*: a copy of itself holding the
loaded model, which only ever forks ensembler processes on the worker's demand::

    worker (HTTP, limits, deadline, metrics) ──socket pair── ensembler process (pipeline)
        └── control socket ── zygote ── fork ───────────────────────┘

`EnsemblerProcess` is the worker's `pipeline.Runner`: it sends each request's body and
headers to its ensembler process, which runs the pipeline, and answers from what comes
back. When that process dies, the worker answers the requests it held
500 ``ensembler_crashed`` (saying how it died) and starts the next one from the zygote:
a fork of a process that never served nor started a thread, so it starts clean, at once,
sharing the model's pages. A sync ensembler answers its requests in order, so a crash
costs the request it was working on alone (those queued behind it go to the next
process), and one still running at ``--request-timeout`` is killed instead of holding the
requests behind it. With ``--max-ensembler-rss`` a process whose peak memory
passed the limit is retired after its answer, and a new one takes the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import resource
import signal
import socket
import struct
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

from pyfunc_ensembler.contract import headers_from_raw
from pyfunc_ensembler.errors import DeadlineExceeded, EnsemblerCrashed
from pyfunc_ensembler.lifecycle import describe_exit, fork, new_event_loop
from pyfunc_ensembler.pipeline import (
    Answered,
    RawHeaders,
    Runner,
    SyncRunner,
    failure,
    runner_for,
)

if TYPE_CHECKING:
    from pyfunc_ensembler.loader import Ensembler
    from pyfunc_ensembler.settings import Settings

logger = logging.getLogger("pyfunc_ensembler.isolation")

# Worker -> ensembler process: request id, headers length, headers + body length; then
# the headers, then the body. Every frame's head ends with the length of what follows.
REQUEST = struct.Struct("<III")
# Ensembler process -> worker: request id, status, flags, seconds the ensembler's call
# took (negative: not called), answer length.
ANSWER = struct.Struct("<IHBdI")
RETIRE = 1  # flag: this process passed --max-ensembler-rss; send it nothing more

# Worker -> zygote: an operation and a pid. SOCK_SEQPACKET keeps each message whole.
COMMAND = struct.Struct("<ci")
SPAWN, REAP = b"s", b"r"
NUMBER = struct.Struct("<i")


class Zygote:
    """The worker's handle on its zygote; `start` forks it, so call it before any thread."""

    def __init__(self, control: socket.socket) -> None:
        self._control = control

    @classmethod
    def start(cls, ensembler: Ensembler, settings: Settings, listening: socket.socket) -> Zygote:
        # The listening socket is not held open in it: a draining worker's closed port
        # must refuse connections at once.
        run = functools.partial(_run_zygote, ensembler=ensembler, settings=settings)
        _, control = fork("ensembler zygote", run, listening, socket.SOCK_SEQPACKET)
        return cls(control)

    def spawn(self) -> tuple[int, socket.socket]:
        """A new ensembler process: its pid and the worker's end of its socket."""
        self._control.sendall(COMMAND.pack(SPAWN, 0))
        message, fds, _, _ = socket.recv_fds(self._control, NUMBER.size, 1)
        if not fds:
            raise ConnectionError("the zygote is gone")
        return NUMBER.unpack(message)[0], socket.socket(fileno=fds[0])

    def reap(self, pid: int) -> int:
        """Make sure ensembler process `pid` is gone; its wait status."""
        self._control.sendall(COMMAND.pack(REAP, pid))
        message = self._control.recv(NUMBER.size)
        if not message:
            raise ConnectionError("the zygote is gone")
        return int(NUMBER.unpack(message)[0])


def _run_zygote(control: socket.socket, ensembler: Ensembler, settings: Settings) -> None:
    """Fork ensembler processes, and reap them, as the worker asks, until it goes."""
    run = functools.partial(_run_ensembler, ensembler=ensembler, settings=settings)
    while command := control.recv(COMMAND.size):
        operation, pid = COMMAND.unpack(command)
        if operation == SPAWN:
            pid, sock = fork("ensembler process", run, control)
            socket.send_fds(control, [NUMBER.pack(pid)], [sock.fileno()])
            sock.close()
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            control.sendall(NUMBER.pack(os.waitpid(pid, 0)[1]))


def _run_ensembler(sock: socket.socket, ensembler: Ensembler, settings: Settings) -> None:
    runner = runner_for(ensembler, debug=settings.debug)
    loop = new_event_loop()
    loop.run_until_complete(_answer(sock, runner, settings.max_ensembler_rss << 10))


async def _answer(sock: socket.socket, runner: Runner, max_rss_kib: int) -> None:
    loop = asyncio.get_running_loop()
    closed = loop.create_future()
    await loop.create_unix_connection(lambda: _Answering(runner, max_rss_kib, closed), sock=sock)
    await closed


class _Reader:
    """Splits a byte stream into frames of a fixed head and a length-given rest."""

    def __init__(self, head: struct.Struct) -> None:
        self._head = head
        self._buffer = bytearray()

    def frames(self, data: bytes) -> list[tuple[tuple[int, ...], bytes]]:
        buffer = self._buffer
        buffer += data
        frames = []
        head, offset = self._head, 0
        # A view, so that each frame's rest is copied once (a bytearray slice would copy
        # it a second time); released before the buffer drops what was read.
        with memoryview(buffer) as view:
            while len(buffer) - offset >= head.size:
                fields = head.unpack_from(buffer, offset)
                start = offset + head.size
                end = start + fields[-1]
                if len(buffer) < end:
                    break
                frames.append((fields, view[start:end].tobytes()))
                offset = end
        del buffer[:offset]
        return frames


class _Answering(asyncio.Protocol):
    """The ensembler process's side: answer each request frame with the pipeline; a sync
    ensembler's in order, at once, an async one's each in a task of its own."""

    def __init__(self, runner: Runner, max_rss_kib: int, closed: asyncio.Future[None]) -> None:
        self.answer_now = runner.answer_now if isinstance(runner, SyncRunner) else None
        self.runner = runner
        self.max_rss_kib = max_rss_kib
        self.closed = closed
        self.reader = _Reader(REQUEST)
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        for (request_id, headers_length, _), frame in self.reader.frames(data):
            body, headers = frame[headers_length:], _split_headers(frame[:headers_length])
            if self.answer_now is None:
                _keep(self.tasks, self._answer_async(request_id, body, headers))
            else:
                self._send(request_id, *self.answer_now(body, headers))

    async def _answer_async(
        self, request_id: int, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        # The worker keeps the deadline: it gives up on the answer, or kills this process.
        self._send(request_id, *await self.runner.answer(body, headers, None))

    def _send(self, request_id: int, status: int, answer: bytes, seconds: float | None) -> None:
        assert self.transport is not None
        flags = RETIRE if self.max_rss_kib and _peak_rss_kib() > self.max_rss_kib else 0
        called = -1.0 if seconds is None else seconds
        self.transport.writelines(
            (ANSWER.pack(request_id, status, flags, called, len(answer)), answer)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(None)


def _keep(tasks: set[asyncio.Task[None]], coroutine: Coroutine[Any, Any, None]) -> None:
    # The loop holds tasks weakly: keep each until it is done, or it may vanish midway.
    task = asyncio.ensure_future(coroutine)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def _peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _join_headers(raw_headers: RawHeaders) -> bytes:
    # Header names hold no ':' and values no CR/LF (both parsers refuse them).
    return b"\r\n".join(name + b":" + value for name, value in raw_headers)


def _split_headers(blob: bytes) -> list[tuple[bytes, bytes]]:
    if not blob:
        return []
    return [
        (name, value) for name, _, value in (line.partition(b":") for line in blob.split(b"\r\n"))
    ]


class _NotStarted(Exception):
    """The process died before it began this request: it may go to the next one."""


class _Link(asyncio.Protocol):
    """The worker's connection to one ensembler process.

    `pending` keeps the requests sent, oldest first, until their answers come back, even
    those given up on (their futures are done), so that a sync process, which answers in
    order, is known to be working on the oldest one and not to have begun the others.
    """

    def __init__(self, pid: int, owner: EnsemblerProcess, *, in_order: bool) -> None:
        self.pid = pid
        self.owner = owner
        self.in_order = in_order
        self.pending: dict[int, asyncio.Future[Answered]] = {}
        self.reader = _Reader(ANSWER)
        self.transport: asyncio.Transport | None = None
        self.retiring = False
        self.killed = False
        self.gone = False
        self.outgoing: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def send(
        self, request_id: int, body: bytes, raw_headers: RawHeaders
    ) -> asyncio.Future[Answered]:
        headers = _join_headers(raw_headers)
        head = REQUEST.pack(request_id, len(headers), len(headers) + len(body))
        if not self.outgoing:
            asyncio.get_running_loop().call_soon(self.flush)
        self.outgoing += (head, headers, body)
        future: asyncio.Future[Answered] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        return future

    def data_received(self, data: bytes) -> None:
        for (request_id, status, flags, seconds, _), answer in self.reader.frames(data):
            future = self.pending.pop(request_id, None)
            if future is not None and not future.done():
                future.set_result((status, answer, None if seconds < 0 else seconds))
            if flags & RETIRE and not self.retiring:
                self.retiring = True
                self.owner.replace(self)
        if self.retiring and not self.pending:
            self.close()

    def flush(self) -> None:
        # Requests go out together at the end of the event loop's pass, as answers do
        # in `http11.ServerState.send`: one wake-up of the process for all of them.
        outgoing, self.outgoing = self.outgoing, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(outgoing)

    def working_on(self, request_id: int) -> bool:
        """Whether this (sync) process is busy with `request_id` now."""
        return self.in_order and next(iter(self.pending), None) == request_id

    def kill(self) -> None:
        """Stop a process stuck past the deadline; its death then ends this link."""
        self.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self.owner.lost(self)

    def fail(self, crashed: EnsemblerCrashed) -> int:
        """The process is gone: fail what it had begun, send the rest on; how many failed."""
        pending = list(self.pending.values())
        self.pending.clear()
        begun = pending[:1] if self.in_order else pending
        for future in pending[len(begun) :]:
            if not future.done():
                future.set_exception(_NotStarted())
        failed = [future for future in begun if not future.done()]
        for future in failed:
            future.set_exception(crashed)
        return len(failed)


# Times one request may be sent on after processes died before beginning it.
_MAX_SENDS = 8


class EnsemblerProcess:
    """The worker's side, its `pipeline.Runner`: sends each request to the current
    ensembler process and replaces that process when it dies or retires.

    Requests go to the process as they come, without waiting for earlier answers; a
    sync process answers them one after another. When it dies, the request it was
    working on gets the 500 and those queued behind it go to the next process.
    """

    def __init__(self, zygote: Zygote, *, in_order: bool, debug: bool = False) -> None:
        self._zygote = zygote
        self._in_order = in_order
        self._debug = debug
        # Zygote calls block (briefly): a thread of their own keeps them off the loop,
        # and one thread keeps the control socket's questions and answers in order.
        self._calls = ThreadPoolExecutor(1, thread_name_prefix="zygote")
        self._link: _Link | None = None
        self._starting: asyncio.Future[_Link] | None = None
        self._last_id = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def start(
        cls, ensembler: Ensembler, settings: Settings, listening: socket.socket
    ) -> EnsemblerProcess:
        """Fork the zygote: in a worker, before it starts any thread."""
        zygote = Zygote.start(ensembler, settings, listening)
        return cls(zygote, in_order=not ensembler.is_async, debug=settings.debug)

    async def answer(self, body: bytes, raw_headers: RawHeaders, timeout: float | None) -> Answered:
        """The answer to one request; the 500 ``ensembler_crashed`` if its process died
        on it, the 504 past `timeout`."""
        try:
            return await self.ask(body, raw_headers, timeout)
        except Exception as exc:
            return (*failure(exc, headers_from_raw(raw_headers), debug=self._debug), None)

    async def ask(self, body: bytes, raw_headers: RawHeaders, timeout: float | None) -> Answered:
        """The process's answer; `EnsemblerCrashed` if it died on it, `DeadlineExceeded`."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        for _ in range(_MAX_SENDS):
            link = await self._current()
            if link.gone:  # it died between its start and this request's turn
                continue
            remaining = None if deadline is None else deadline - loop.time()
            try:
                return await self._send(link, body, raw_headers, remaining)
            except _NotStarted:
                continue
            except asyncio.TimeoutError:
                raise DeadlineExceeded(f"no answer within {timeout} s") from None
        raise EnsemblerCrashed("the ensembler's processes kept ending before this request began")

    async def _send(
        self, link: _Link, body: bytes, raw_headers: RawHeaders, timeout: float | None
    ) -> Answered:
        self._last_id = request_id = (self._last_id + 1) & 0xFFFFFFFF
        answer = link.send(request_id, body, raw_headers)
        try:
            return await asyncio.wait_for(answer, timeout)
        except asyncio.TimeoutError:
            if link.working_on(request_id):
                # A sync call past the deadline: stuck, and others queue behind it.
                link.kill()
                self.replace(link)
            raise

    async def _current(self) -> _Link:
        if self._link is not None:
            return self._link
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        return await asyncio.shield(self._starting)

    async def _start(self) -> _Link:
        loop = asyncio.get_running_loop()
        try:
            pid, sock = await loop.run_in_executor(self._calls, self._zygote.spawn)
            _, link = await loop.create_unix_connection(
                lambda: _Link(pid, self, in_order=self._in_order), sock=sock
            )
        except OSError as exc:
            # Without a zygote this worker cannot answer again: stop it (gracefully), so
            # that the supervisor starts a whole new one.
            logger.error("cannot start an ensembler process (%s): stopping this worker", exc)
            os.kill(os.getpid(), signal.SIGTERM)
            raise EnsemblerCrashed(f"cannot start an ensembler process: {exc}") from None
        finally:
            self._starting = None
        self._link = link
        return link

    def replace(self, link: _Link) -> None:
        """New requests go to a new process, not `link`'s (retired or being killed)."""
        if self._link is link:
            self._link = None

    def lost(self, link: _Link) -> None:
        self.replace(link)
        _keep(self._tasks, self._bury(link))

    async def _bury(self, link: _Link) -> None:
        loop = asyncio.get_running_loop()
        try:
            status = await loop.run_in_executor(self._calls, self._zygote.reap, link.pid)
            how = describe_exit(status)
        except OSError:
            how = "ended"
        failed = link.fail(EnsemblerCrashed(f"the ensembler's process {how} while answering"))
        if link.killed:
            logger.warning("ensembler process %d killed past the deadline", link.pid)
        elif link.retiring and not failed:
            logger.info("ensembler process %d retired past --max-ensembler-rss", link.pid)
        else:
            logger.error(
                "ensembler process %d %s; the next request starts a new one", link.pid, how
            )
