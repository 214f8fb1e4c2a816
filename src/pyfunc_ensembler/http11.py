"""One HTTP/1.1 connection of the native front end: llhttp parsing -> the core -> one write.

An asyncio protocol (no streams, no ASGI): httptools calls back as bytes are parsed,
and a complete request goes straight to the core. A synchronous ensembler is called
inside `data_received`, so pipelined requests are answered in order without a task per
request; an ``async def`` ensembler gets one worker task per connection that answers
the queued requests in order. Every response is one ``transport.write`` of bytes
joined from precomputed pieces; keep-alive answers are written together at the end of
the event loop's pass that produced them (`ServerState.send`).

Parsing is strict (llhttp's defaults, no leniencies): a malformed request, two
Content-Length headers, or Content-Length with Transfer-Encoding is answered with 400
and the connection is closed; so are the HTTP rules of `semantics` (one Host, 501 for a
transfer coding but chunked, gzip/deflate bodies decoded, 415 for other codings). A
refused request (400, 408, 413, 415, 431, 501) is closed *lingering*: our write side is
shut, and what the client still sends is read and dropped, bounded by time only (as
nginx's ``lingering_time`` and ``lingering_timeout``), so that a client that writes its
whole body before it reads, however large, reads our answer instead of a reset.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import select
import time
from collections import deque
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote

import httptools

from pyfunc_ensembler import semantics
from pyfunc_ensembler.core import Core
from pyfunc_ensembler.errors import (
    EnsemblerError,
    HeadersTooLarge,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestError,
    RequestTimeout,
)

logger = logging.getLogger("pyfunc_ensembler.native")

RawHeader = tuple[bytes, bytes]
ExtraHeaders = tuple[RawHeader, ...]

_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_JSON = b"Content-Type: application/json\r\n"
_CONTENT_LENGTH = b"Content-Length: "
# Sent on every kept-alive answer: an HTTP/1.0 client needs it to keep the connection,
# and it costs an HTTP/1.1 client nothing (nginx does the same).
_KEEP_ALIVE = b"Connection: keep-alive\r\n"
_CLOSE = b"Connection: close\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_ALLOW_POST = ((b"Allow", b"POST"),)

# What to do with the connection once an answer is written.
KEEP, CLOSE, LINGER = 0, 1, 2

# After a refusal, what the client still sends is read and dropped until it has sent
# nothing for LINGER_TIMEOUT seconds, for LINGER_TIME at most (nginx's lingering_timeout
# and lingering_time): closing with unread data would make the kernel send a reset, and
# a client still writing its body would then never read the answer. No bound on bytes:
# a client on a fast link writes gigabytes in LINGER_TIME, and Python's http.client
# reads only once it has written them all.
LINGER_TIMEOUT = 5.0
LINGER_TIME = 30.0
# Requests parsed but not yet answered (async ensemblers): above this, stop reading.
MAX_PIPELINE = 32
# The longest a finished keep-alive answer waits for the others of its pass (seconds).
FLUSH_AFTER = 0.0005


class _StopParsing(Exception):
    """Raised from a parser callback to stop parsing the rest of what was received."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one client may do."""

    max_body_size: int
    max_header_size: int  # request line + headers (+ trailers)
    receive_timeout: float  # first byte to last byte of one request; 0: no limit
    keepalive_timeout: float  # idle time between requests; 0: one request per connection

    @property
    def stall_timeout(self) -> float:
        """How long a client may leave our answers unread before it is dropped."""
        return max(self.keepalive_timeout, self.receive_timeout)


def poll_readable(poller: select.poll, seconds: float) -> bool:
    """Poll without sleeping for up to `seconds`: whether something became readable."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        if poller.poll(0):
            return True
    return False


def date_header(now: float | None = None) -> bytes:
    return b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"


class ServerState:
    """What the connections of one worker share: the core, the limits, the Date line.

    `tick` runs about once a second (from `native`): it refreshes the Date header and
    enforces every connection's deadline, so a request costs no timer of its own.
    """

    def __init__(
        self, core: Core, limits: Limits, busy_poll: float = 0.0, listening: int = -1
    ) -> None:
        self.core = core
        self.limits = limits
        self.connections: set[Connection] = set()
        self.draining = False
        self.drain_deadline = 0.0
        self.date = date_header()
        self._second = int(time.time())
        self._unsent: list[tuple[asyncio.Transport, bytes]] = []
        self._unsent_since = 0.0
        # The loop, once known: asyncio.get_running_loop() costs a getpid() system
        # call each time (it checks for a fork), and `send` needs it per answer.
        self._loop: asyncio.AbstractEventLoop | None = None
        self.busy_poll = busy_poll
        """Seconds to poll for the next request after an answer (``--busy-poll``)."""
        self._poller = select.poll()
        if listening >= 0:  # a new connection ends the polling too
            self._poller.register(listening, select.POLLIN)
        self._poll_due = False

    def send(self, transport: asyncio.Transport, answer: bytes) -> None:
        """Write a keep-alive `answer`, held to the end of this pass of the event loop
        when other connections' answers may join it there.

        Over loopback (a sidecar proxy in the pod, a benchmark) each write wakes the
        reading process, and waking one asleep costs the writer several µs in the
        kernel; writes in a row find it awake. Answers of fast requests are therefore
        written together: at 32 connections this saves ~8 µs of CPU per answer
        (docs/benchmarks.md). None waits longer than about `FLUSH_AFTER`, and none
        waits at all with one connection open or after a slow request.
        """
        unsent = self._unsent
        now = time.perf_counter()
        if unsent and now - self._unsent_since > FLUSH_AFTER:
            self.flush()
            unsent = self._unsent
        if len(self.connections) < 2 or self.core.last_seconds > FLUSH_AFTER:
            self.flush()
            transport.write(answer)
            if self.busy_poll and not self._poll_due:
                # Once the loop has done what this pass gave it (pipelined requests
                # already received included), just before it would go to sleep.
                self._poll_due = True
                self._call_soon(self._poll_for_next, transport)
            return
        if not unsent:
            self._unsent_since = now
            self._call_soon(self.flush)
        unsent.append((transport, answer))

    def _call_soon(self, callback: Callable[..., object], *args: object) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        loop.call_soon(callback, *args)

    def _poll_for_next(self, transport: asyncio.Transport) -> None:
        """Wait for the next request by polling, not sleeping (``--busy-poll``).

        Between a client's requests the worker sleeps in the kernel; being woken again
        cost the next request ~40 µs in the virtual machines we measured on. Polling
        keeps the worker awake for a little while instead, and the loop then finds the
        request without sleeping. Only while no other work can be ready: one connection
        open, nothing in flight or held, not shutting down; a new connection ends it.
        """
        self._poll_due = False
        if len(self.connections) != 1 or self.core.in_flight or self._unsent or self.draining:
            return
        sock = transport.get_extra_info("socket")
        if sock is None or transport.is_closing():
            return
        fd = sock.fileno()
        self._poller.register(fd, select.POLLIN)
        try:
            poll_readable(self._poller, self.busy_poll)
        finally:
            self._poller.unregister(fd)

    def flush(self) -> None:
        """Write the answers `send` holds, in order; before anything else is written or
        a connection closed, so that nothing overtakes them."""
        unsent, self._unsent = self._unsent, []
        for transport, answer in unsent:
            if not transport.is_closing():
                transport.write(answer)

    def tick(self) -> None:
        wall = time.time()
        if int(wall) != self._second:
            self._second = int(wall)
            self.date = date_header(wall)
        now = time.monotonic()
        for connection in list(self.connections):
            connection.check_deadline(now)

    def drain(self, idle_seconds: float) -> None:
        """Stop keeping connections alive, without closing one a request may be on its way on.

        Every answer from now on says ``Connection: close`` and closes its connection. A
        connection idle now (or accepted from now on) is closed once it has stayed idle
        `idle_seconds` since: closing it at once would reset a request the client wrote
        to it meanwhile, and a client cannot safely retry a POST.
        """
        self.draining = True
        self.drain_deadline = time.monotonic() + idle_seconds
        for connection in list(self.connections):
            connection.drain()


class Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order, enforces limits."""

    # Slots, not an instance dict: CPython shares one dict layout among instances for
    # up to 30 attributes only; past that, each connection built a dict of its own,
    # costing every new connection and every attribute read on a kept-alive one.
    __slots__ = (
        "_body",
        "_body_size",
        "_codings",
        "_content_coding",
        "_continue_owed",
        "_deadline",
        "_decided",
        "_declared",
        "_drained",
        "_eof",
        "_expect_continue",
        "_head",
        "_head_size",
        "_headers",
        "_hosts",
        "_in_head",
        "_inline",
        "_keep_alive",
        "_linger_until",
        "_lingering",
        "_max_body",
        "_max_head",
        "_mode",
        "_queue",
        "_reading_paused",
        "_receiving",
        "_stalled_until",
        "_stopped",
        "_transfer_coding",
        "_unseen",
        "_url",
        "_worker",
        "_writing_paused",
        "core",
        "limits",
        "parser",
        "state",
        "transport",
    )

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.core = state.core
        self.limits = state.limits
        self._max_head = state.limits.max_header_size
        self._max_body = state.limits.max_body_size
        self._keep_alive = state.limits.keepalive_timeout > 0
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        # The request being received.
        self._url = b""
        self._headers: list[RawHeader] = []
        self._body: list[bytes] = []
        self._body_size = 0
        self._head_size = 0
        self._unseen = 0  # bytes of a header httptools holds until it is complete
        self._declared = -1
        self._expect_continue = False
        self._hosts = 0
        self._transfer_coding = b""  # a Transfer-Encoding other than plain chunked
        self._content_coding = b""
        self._codings: semantics.Codings = ()
        self._decided: tuple[tuple[int, bytes], ExtraHeaders] | None = None
        self._mode = KEEP
        self._head = False
        self._receiving = False
        self._in_head = False
        # The connection.
        self._deadline = 0.0  # when the current wait (idle, receive, linger) runs out
        self._stalled_until = 0.0  # when a client that does not read its answers is dropped
        self._stopped = False  # no more requests are parsed from this connection
        self._lingering = False
        self._linger_until = 0.0
        self._reading_paused = False
        self._writing_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._continue_owed = False
        self._eof = False
        # Whether a complete request is answered at once, inside `data_received` (a
        # synchronous ensembler, until a drain begins), or queued for `_work`.
        self._inline = not state.core.is_async
        # Requests waiting for an async ensembler, answered in order by `_work`:
        # (ready answer or None, body, headers, mode, head).
        self._queue: deque[tuple[Any, ...]] = deque()
        self._worker: asyncio.Task[None] | None = None

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.state.connections.add(self)
        self._wait_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self._stopped = True
        # The parser holds this connection's callbacks: without it the connection is
        # freed now, by its reference count, not later by the cyclic garbage collector
        # (whose passes a client opening a connection per request would keep busy).
        del self.parser
        # A worker still answering is left to finish (its answer is dropped): cancelling
        # it would cut the ensembler off mid-call and skip the core's accounting.
        self._wake_drained()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._deadline = min(time.monotonic() + LINGER_TIMEOUT, self._linger_until)
            return
        if self._stopped:
            return
        receiving = self._receiving
        seen = self._head_size + self._body_size
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _StopParsing):
                logger.error("native front end failed on a request", exc_info=exc.__context__)
                self._refuse(EnsemblerError("the server failed to read the request"))
        except httptools.HttpParserUpgrade:
            # The upgrade request itself has been answered (and closes the connection);
            # the bytes after it belong to a protocol we do not speak.
            self._stop_parsing()
        except httptools.HttpParserError as exc:
            self._refuse(RequestError.malformed(str(exc) or type(exc).__name__))
        else:
            if not (receiving and self._receiving):
                return
            if self._head_size + self._body_size == seen:
                # No progress we could see: httptools is holding a header (or a trailer)
                # that is still arriving. Count it, so that it cannot grow unseen.
                self._unseen += len(data)
                if self._head_size + self._unseen > self._max_head:
                    self._refuse(HeadersTooLarge.over(self._max_head))
            else:
                self._unseen = 0

    def eof_received(self) -> bool | None:
        self.state.flush()  # a held answer goes out before the transport may close
        if self._worker is not None and not self._lingering:
            # A client may half-close after its last request: answer it, then close.
            self._eof = True
            return True
        return None

    def pause_writing(self) -> None:
        # The client does not read its answers: stop reading its requests until it does,
        # and give up on it if it stays stuck as long as an idle connection may.
        self._writing_paused = True
        self._pause_reading()
        if self.limits.stall_timeout > 0:
            self._stalled_until = time.monotonic() + self.limits.stall_timeout

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._stalled_until = 0.0
        self._wake_drained()
        self._maybe_resume_reading()

    # -- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        self._receiving = True
        self._in_head = True
        self._url = b""
        self._headers = []
        self._body = []
        self._body_size = 0
        self._head_size = 0
        self._unseen = 0
        self._declared = -1
        self._expect_continue = False
        self._hosts = 0
        self._transfer_coding = b""
        self._content_coding = b""
        self._codings = ()
        timeout = self.limits.receive_timeout
        self._deadline = time.monotonic() + timeout if timeout > 0 else 0.0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > self._max_head:
            self._stop(HeadersTooLarge.over(self._max_head))

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name)
        self._head_size += size + len(value) + 4
        self._unseen = 0
        if self._head_size > self._max_head:
            self._stop(HeadersTooLarge.over(self._max_head))
        if not self._in_head:
            return  # a trailer after a chunked body: counted, not passed on
        self._headers.append((name, value))
        # Compared by length first: most headers are none of these, and cost no lower().
        if size == 14 and name.lower() == b"content-length":
            self._declared = int(value)  # llhttp has checked it is one plain number
        elif size == 4 and name.lower() == b"host":
            self._hosts += 1
        elif size == 6 and name.lower() == b"expect":
            self._expect_continue = value.lower() == b"100-continue"
        elif size == 17 and name.lower() == b"transfer-encoding":
            if value.lower() != b"chunked":
                self._transfer_coding += b"," + value if self._transfer_coding else value
        elif size == 16 and name.lower() == b"content-encoding":
            self._content_coding += b"," + value if self._content_coding else value

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self.parser
        method = parser.get_method()
        self._head = method == b"HEAD"
        self._mode = KEEP if parser.should_keep_alive() else CLOSE
        if parser.should_upgrade():
            # We never switch protocols: the request is answered over HTTP/1.1 (RFC 9110
            # lets a server ignore Upgrade), then the connection is closed, since what the
            # client sends next may not be HTTP/1.1.
            self._mode = CLOSE
            if method == b"CONNECT":
                self._stop(MethodNotAllowed("this server is not a proxy"), _ALLOW_POST)
        if self._declared > self._max_body:
            self._stop(PayloadTooLarge.over(self._max_body, self._declared))
        if self._hosts != 1:
            error = semantics.host_error(self._hosts, parser.get_http_version())
            if error is not None:
                self._stop(error)
        if self._transfer_coding:
            unsupported = semantics.transfer_coding_error(self._transfer_coding)
            if unsupported is not None:
                self._stop(unsupported)
        if self._content_coding:
            try:
                self._codings = semantics.content_codings(self._content_coding)
            except EnsemblerError as error:
                self._stop(error, semantics.ACCEPT_ENCODING)
        self._decided = self.core.route(method.decode(), self._path(), self)
        if self._expect_continue and parser.get_http_version() == "1.1":
            self._send_continue()

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._max_body:
            self._stop(PayloadTooLarge.over(self._max_body))
        if self._decided is None:
            self._body.append(body)

    def on_message_complete(self) -> None:
        decided = self._decided
        body = b""
        if decided is None:
            body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
            if self._codings:
                try:
                    body = semantics.decode(body, self._codings, self._max_body)
                except EnsemblerError as error:
                    self._stop(error)
        self._receiving = False
        self._deadline = 0.0
        mode = self._mode
        if mode != KEEP:
            self._stopped = True  # llhttp refuses anything after a closing request anyway
        if decided is not None:
            (status, answer), extra = decided
            self._respond(status, answer, extra, mode)
            return
        if not self._inline:
            self._queue.append((None, body, self._headers, mode, self._head))
            self._start_worker()
        else:
            status, answer = self.core.handle(body, self._headers)
            self._write(status, answer, (), mode, self._head)

    # -- answering ---------------------------------------------------------------------

    def _respond(self, status: int, body: bytes, extra: ExtraHeaders, mode: int) -> None:
        """Write an answer now, or after the answers still being worked out (while
        draining, all go through `_work`: see `_write`)."""
        if self._worker is None and not self.state.draining:
            self._write(status, body, extra, mode, self._head)
        else:
            self._queue.append(((status, body, extra), b"", None, mode, self._head))
            self._start_worker()

    def _write(self, status: int, body: bytes, extra: ExtraHeaders, mode: int, head: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        # While draining, the last request already received (queued, or arriving) says
        # close; those before it are answered as usual, not dropped.
        if (
            mode == KEEP
            and (self.state.draining or not self._keep_alive)
            and not (self._keep_alive and (self._queue or self._receiving))
        ):
            mode = CLOSE
        content_type = _JSON
        headers = b""
        if extra:
            headers = b"".join(name + b": " + value + b"\r\n" for name, value in extra)
            if any(name.lower() == b"content-type" for name, _ in extra):
                content_type = b""
        answer = b"".join(
            (
                _STATUS_LINES[status],
                content_type,
                _CONTENT_LENGTH,
                str(len(body)).encode(),
                b"\r\n",
                self.state.date,
                _KEEP_ALIVE if mode == KEEP else _CLOSE,
                headers,
                b"\r\n",
                b"" if head else body,
            )
        )
        if mode == KEEP:
            self.state.send(transport, answer)
            if not self._receiving and not self._queue:
                self._wait_idle()
            return
        self.state.flush()
        transport.write(answer)
        if mode == LINGER:
            self._linger()
        else:
            self._stopped = True
            transport.close()
            if self.limits.stall_timeout > 0:  # a client that never reads it is dropped then
                self._deadline = time.monotonic() + self.limits.stall_timeout

    def _send_continue(self) -> None:
        if self._worker is None:
            assert self.transport is not None
            self.state.flush()
            self.transport.write(_CONTINUE)
        else:  # the interim answer must follow the answers to earlier requests
            self._continue_owed = True

    def _start_worker(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())
        if len(self._queue) > MAX_PIPELINE:
            self._pause_reading()

    async def _work(self) -> None:
        """Answer queued requests one by one, in the order they came."""
        queue = self._queue
        transport = self.transport
        assert transport is not None
        try:
            while queue and not transport.is_closing():
                ready, body, headers, mode, head = queue.popleft()
                if ready is None:
                    ready = await self._ensemble(body, headers)
                status, answer, extra = ready
                self._write(status, answer, extra, mode, head)
                if self._writing_paused:
                    await self._wait_drained()
                self._maybe_resume_reading()
        finally:
            self._worker = None
        if transport.is_closing():
            return
        if self._continue_owed:
            self._continue_owed = False
            self._send_continue()
        if self._eof:
            self._close()
        elif not self._receiving:
            self._wait_idle()

    async def _ensemble(self, body: bytes, headers: list[RawHeader]) -> tuple[Any, ...]:
        # Admission again, now that this request's turn has come: requests queued in the
        # same loop turn all passed it when their heads arrived, before any was counted
        # in flight. The core counts a request in flight before its first await, so
        # this check and that count cannot interleave with another connection's.
        decided = self.core.admit(arriving=False)
        if decided is not None:
            (status, answer), extra = decided
            return status, answer, extra
        return (*await self.core.handle_async(body, headers), ())

    def _wait_drained(self) -> asyncio.Future[None]:
        self._drained = asyncio.get_running_loop().create_future()
        return self._drained

    def _wake_drained(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    # -- refusing and closing ----------------------------------------------------------

    def _stop(self, error: EnsemblerError, extra: ExtraHeaders = ()) -> None:
        """`_refuse` from inside a parser callback: also stop the parser there."""
        self._refuse(error, extra)
        raise _StopParsing

    def _refuse(self, error: EnsemblerError, extra: ExtraHeaders = ()) -> None:
        """Answer `error` after any earlier answers, parse nothing more, close lingering."""
        if self._stopped:
            return
        self._stop_parsing()
        self._receiving = False
        self._deadline = 0.0
        status, body = self.core.refuse(error)
        self._respond(status, body, extra, LINGER)

    def _stop_parsing(self) -> None:
        self._stopped = True
        self._pause_reading()

    def _linger(self) -> None:
        transport = self.transport
        assert transport is not None
        self._stopped = True
        self._lingering = True
        now = time.monotonic()
        self._linger_until = now + LINGER_TIME
        self._deadline = now + LINGER_TIMEOUT
        if transport.can_write_eof():
            transport.write_eof()
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    def _close(self) -> None:
        self._stopped = True
        if self.transport is not None:
            self.state.flush()
            self.transport.close()

    def drain(self) -> None:
        """A graceful shutdown began: an idle connection gets the drain's idle deadline,
        and requests are queued for `_work` from now on, so that an answer is written
        only once the requests pipelined after it have been parsed (see `_write`)."""
        self._inline = False
        if not (self._stopped or self._receiving or self._worker is not None):
            self._wait_idle()

    def check_deadline(self, now: float) -> None:
        """Enforce the idle, receive, linger and stall limits; called by `ServerState.tick`."""
        if self._stalled_until and now > self._stalled_until:
            assert self.transport is not None
            self._stopped = True
            self.transport.abort()
        elif self._deadline and now > self._deadline:
            if self._receiving:
                self._refuse(RequestTimeout.after(self.limits.receive_timeout))
            elif self.transport is not None and self.transport.is_closing():
                # Closed before, but the client has not read what we still had to send.
                self.transport.abort()
            else:
                self._close()

    def _wait_idle(self) -> None:
        timeout = self.limits.keepalive_timeout
        deadline = time.monotonic() + timeout if timeout > 0 else 0.0
        if self.state.draining:  # a connection accepted while draining, or now idle
            self._inline = False
            deadline = min(deadline, self.state.drain_deadline) or self.state.drain_deadline
        self._deadline = deadline

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        if (
            self._reading_paused
            and not self._writing_paused
            and not self._stopped
            and len(self._queue) <= MAX_PIPELINE
            and self.transport is not None
        ):
            self._reading_paused = False
            self.transport.resume_reading()

    # -- helpers -----------------------------------------------------------------------

    def _path(self) -> str:
        url = self._url
        if url[:1] != b"/":  # absolute-form ("http://host/ensemble"), "*", authority-form
            try:
                url = httptools.parse_url(url).path or b""
            except httptools.HttpParserInvalidURLError:
                return url.decode("latin-1")
        path = url.partition(b"?")[0].decode("latin-1")
        return unquote(path) if "%" in path else path
