"""The ASGI front end: a framework-free ASGI 3 application over the core.

The compatibility path: any ASGI server can host it (``uvicorn
'pyfunc_ensembler.asgi:from_environ' --factory``), and ``serve --server asgi`` runs it
on uvicorn with uvloop and httptools, through a subclass of uvicorn's protocol that
keeps the native front end's HTTP promises where uvicorn's own does not (`_protocol`).
The application decodes gzip/deflate bodies (`semantics`), whichever server hosts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from http import HTTPStatus
from types import FrameType
from typing import Any

from pyfunc_ensembler import semantics
from pyfunc_ensembler.core import Core
from pyfunc_ensembler.errors import (
    EnsemblerError,
    HeadersTooLarge,
    PayloadTooLarge,
    RequestError,
    RequestTimeout,
    UnsupportedEncoding,
)
from pyfunc_ensembler.http11 import LINGER_TIME, LINGER_TIMEOUT
from pyfunc_ensembler.lifecycle import DRAIN_IDLE_SECONDS, force_exit, stop_listening, take_held
from pyfunc_ensembler.settings import Settings

logger = logging.getLogger("pyfunc_ensembler.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
_CLOSE = (b"connection", b"close")
# Unread bytes still arriving after a 413 are read and dropped up to this much, so
# that closing the socket does not reset it under a client still sending (the client
# would then lose the 413); anything larger is answered at once and closed.
DRAIN_LIMIT = 1024 * 1024


class App:
    """``POST /ensemble`` -> the core; other paths and methods -> JSON 404/405."""

    def __init__(self, core: Core, *, max_body_size: int, max_header_size: int = 0) -> None:
        self.core = core
        self.max_body_size = max_body_size
        self.max_header_size = max_header_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if self.max_header_size and _head_size(scope) > self.max_header_size:
            # uvicorn's httptools path has no limit of its own: the head is already in
            # memory here, but the answer is the native front end's 431, not a 200.
            error = HeadersTooLarge.over(self.max_header_size)
            await _send(send, *self.core.refuse(error), (_CLOSE,))
            return
        decided = self.core.route(scope["method"], scope["path"])
        if decided is None:
            await self._ensemble(scope, receive, send)
        else:
            (status, answer), extra = decided
            await _send(send, status, answer, extra)

    async def _ensemble(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await self._read_body(scope["headers"], receive)
        except UnsupportedEncoding as error:
            await _send(send, *self.core.refuse(error), (*semantics.ACCEPT_ENCODING, _CLOSE))
            return
        except EnsemblerError as error:
            await _send(send, *self.core.refuse(error), (_CLOSE,))
            return
        # Whatever runs the ensembler (a sync one inline): uvicorn costs far more than
        # the one coroutine this adds, and the app needs no branch.
        status, answer = await self.core.handle_async(body, scope["headers"])
        await _send(send, status, answer)

    async def _read_body(self, headers: list[tuple[bytes, bytes]], receive: Receive) -> bytes:
        limit = self.max_body_size
        declared, coding = _length_and_coding(headers)
        codings = semantics.content_codings(coding) if coding else ()
        if declared is not None and declared > limit:
            if declared - limit <= DRAIN_LIMIT:
                await _drain(receive)
            raise PayloadTooLarge.over(limit, declared)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise EnsemblerError("the client went away")
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            size += len(chunk)
            if size > limit:
                if more:
                    await _drain(receive)
                raise PayloadTooLarge.over(limit)
            chunks.append(chunk)
            if not more:
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                return semantics.decode(body, codings, limit) if codings else body


def _head_size(scope: Scope) -> int:
    """About the size of the request line and headers, counted as the native front end does."""
    size = len(scope["raw_path"] or b"") + len(scope.get("query_string", b""))
    return size + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


def _length_and_coding(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, bytes]:
    """The declared Content-Length (if any) and the Content-Encoding fields, joined."""
    declared, coding = None, b""
    for name, value in headers:
        if name == b"content-length":
            declared = int(value)
        elif name == b"content-encoding":
            coding += b"," + value if coding else value
    return declared, coding


async def _drain(receive: Receive, limit: int = DRAIN_LIMIT) -> None:
    """Read and drop the rest of a body, up to `limit` bytes."""
    seen = 0
    while seen <= limit:
        message = await receive()
        seen += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _send(
    send: Send, status: int, body: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    # An extra content-type (``/metrics`` is text) replaces the JSON one.
    content_type = () if any(name == b"content-type" for name, _ in extra) else (_JSON,)
    headers = [*content_type, (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    # The model is loaded before the server starts, so there is nothing to do here.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def from_environ() -> App:
    """An app for any ASGI server, configured by ``ENSEMBLER_*`` variables (a factory)."""
    from pyfunc_ensembler.loader import load

    settings = Settings.from_environ()
    core = Core.from_settings(
        load(settings.model_uri, force_mlflow=settings.force_mlflow), settings
    )
    return App(core, max_body_size=settings.max_body_size, max_header_size=settings.max_header_size)


def serve(sock: socket.socket, core: Core, settings: Settings) -> None:
    """Serve on the bound `sock` with uvicorn (uvloop, httptools) until a signal stops it."""
    import uvicorn

    drain = _Drain()
    config = uvicorn.Config(
        App(core, max_body_size=settings.max_body_size, max_header_size=settings.max_header_size),
        loop="uvloop",
        http=_protocol(core, settings.receive_timeout, drain),
        lifespan="off",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        log_config=None,
        log_level=settings.log_level,
        timeout_keep_alive=settings.keepalive_timeout,
        timeout_graceful_shutdown=settings.graceful_timeout,
    )
    alone = settings.workers <= 1
    _graceful_server(config, core, sock, drain, settings.graceful_timeout, alone).run(
        sockets=[sock]
    )


class _Drain:
    """Where the graceful shutdown is, shared by the server and its connections."""

    def __init__(self) -> None:
        self.began = False  # on the signal, with readiness: answers close from then on
        self.idle_until = 0.0  # loop time: once the server stops accepting, a
        # connection idle until then is closed


def _protocol(core: Core, receive_timeout: float, drain: _Drain) -> Any:
    """uvicorn's httptools protocol, made to keep the native front end's promises.

    Where uvicorn's own differs (each case tested on both front ends):
    - a malformed request gets a JSON 400, and a client that sends its request slowly a
      JSON 408 after `receive_timeout` (uvicorn: text/plain 400, no time limit);
    - `semantics`' rules: one Host, 501 for a transfer coding but chunked (uvicorn
      answers both 200);
    - requests pipelined before a half-close (``shutdown(SHUT_WR)``) are all answered,
      then the connection closes (uvicorn closes at the end of input, dropping them);
    - HTTP/1.0 with ``Connection: keep-alive`` is kept alive (uvicorn closes it);
    - a connection closed while its request's body is still arriving (a 413, a
      refusal) closes lingering, as `http11` does, so the client reads the answer;
    - a refusal (a later pipelined request malformed, say) is written after the answers
      to the requests before it, not ahead of them;
    - once the graceful shutdown began (`drain`), the answer to the last request received
      closes its connection (``Connection: close``), those pipelined before it are
      answered first, and an idle one is closed only if it stays idle until
      ``drain.idle_until``; uvicorn closes idle connections at once, resetting a request
      a client wrote to one meanwhile, and drops the requests pipelined behind the
      first answer that closes (`http11.ServerState.drain`).
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class Protocol(HttpToolsProtocol):  # type: ignore[misc]
        _receive_timer: asyncio.TimerHandle | None = None
        _refusal: EnsemblerError | None = None
        _eof = False  # the client half-closed with requests still to answer
        _lingering = False
        _linger_timer: asyncio.TimerHandle | None = None
        _linger_until = 0.0
        _last_read = 0.0
        # While draining: the latest request's cycle, whose answer closes the connection,
        # and whether it was to keep it alive.
        _closing: tuple[Any, bool] | None = None
        _owed = b""  # a refusal, written once the requests before it are answered

        def data_received(self, data: bytes) -> None:
            if self._lingering:
                self._last_read = self.loop.time()
                return
            if self._owed:
                return  # after a refused request: dropped, as when lingering
            super().data_received(data)

        def eof_received(self) -> bool | None:  # type: ignore[override]
            cycle = self.cycle
            if self._lingering or cycle is None:
                return None
            if self.pipeline or not (cycle.response_complete or cycle.more_body):
                self._eof = True  # keep our side open until the last answer is written
                return True
            return None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if drain.idle_until:  # accepted once the server stopped listening
                self._close_if_idle_until(drain.idle_until)

        def shutdown(self) -> None:
            if self.cycle is None or self.cycle.response_complete:
                self._close_if_idle_until(drain.idle_until)
            else:
                self.close_after_answers()

        def close_after_answers(self) -> None:
            """Draining: the answer to the latest request received closes the connection."""
            if self.cycle is not None and not self.cycle.response_complete:
                self._close_after(self.cycle)

        def _close_after(self, cycle: Any) -> None:
            """Draining: `cycle`, the latest request received, is the last answered; the
            one before, if its answer has not begun, keeps the connection alive again."""
            if self._closing is not None:
                previous, keep_alive = self._closing
                if not previous.response_started:
                    previous.keep_alive = keep_alive
            self._closing = (cycle, cycle.keep_alive)
            cycle.keep_alive = False

        def _close_if_idle_until(self, when: float) -> None:
            # uvicorn's keep-alive timer, cancelled as it is when a request arrives.
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_at(when, self.timeout_keep_alive_handler)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._stop_receive_timer()
            if receive_timeout > 0:
                self._receive_timer = self.loop.call_later(receive_timeout, self._timed_out)

        def on_headers_complete(self) -> None:
            self._refusal = _refusal(self.headers, self.parser.get_http_version())
            if self._refusal is not None:
                # Stops the parser; uvicorn then answers through send_400_response.
                raise self._refusal
            previous = self.cycle
            super().on_headers_complete()
            cycle: Any = self.cycle
            if cycle is previous:
                return  # an upgrade: no cycle of ours
            cycle.transport = _CycleTransport(self, cycle)
            if self.parser.get_http_version() == "1.0" and self.parser.should_keep_alive():
                _keep_http10_alive(cycle)
            if drain.began:
                self._close_after(cycle)

        def on_message_complete(self) -> None:
            self._stop_receive_timer()
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.cycle.response_complete or self.transport.is_closing():
                return  # a pipelined request is being answered now
            if self._owed:
                self.transport.write(self._owed)
                self._owed = b""
                self.close_lingering()
            if self._eof and not self.pipeline:
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_receive_timer()
            if self._linger_timer is not None:
                self._linger_timer.cancel()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            self._refuse(self._refusal or RequestError.malformed(msg))

        def _timed_out(self) -> None:
            self._receive_timer = None
            if self.cycle is not None and self.cycle.response_started:
                self.transport.close()  # answered already (say a 404): just stop waiting
            else:
                self._refuse(RequestTimeout.after(receive_timeout))

        def _stop_receive_timer(self) -> None:
            if self._receive_timer is not None:
                self._receive_timer.cancel()
                self._receive_timer = None

        def _refuse(self, error: EnsemblerError) -> None:
            status, body = core.refuse(error)
            head = (
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
                "connection: close\r\n\r\n"
            )
            answer = head.encode("latin-1") + body
            self._stop_receive_timer()
            if self.cycle is not None and not self.cycle.response_complete:
                # After the answers to the requests before it: `on_response_complete`.
                self._owed = answer
                return
            self.transport.write(answer)
            self.close_lingering()

        def close_lingering(self) -> None:
            """Shut our side, then read and drop what the client still sends until it
            stops for LINGER_TIMEOUT (LINGER_TIME at most), as `http11` does."""
            transport = self.transport
            if self._lingering or transport.is_closing():
                return
            self._lingering = True
            self._stop_receive_timer()
            now = self.loop.time()
            self._last_read, self._linger_until = now, now + LINGER_TIME
            if transport.can_write_eof():
                transport.write_eof()
            self.flow.resume_reading()
            self._linger_timer = self.loop.call_later(LINGER_TIMEOUT, self._linger_check)

        def _linger_check(self) -> None:
            now = self.loop.time()
            end = min(self._last_read + LINGER_TIMEOUT, self._linger_until)
            if now < end:
                self._linger_timer = self.loop.call_later(end - now, self._linger_check)
            else:
                self._linger_timer = None
                self.transport.close()

    return Protocol


class _CycleTransport:
    """The transport one uvicorn request cycle writes to: closing it while that request's
    body is still arriving (the 413 of a body over the limit) closes lingering."""

    def __init__(self, protocol: Any, cycle: Any) -> None:
        self._protocol = protocol
        self._cycle = cycle
        self._transport = protocol.transport
        self.write = self._transport.write
        self.is_closing = self._transport.is_closing

    def close(self) -> None:
        if self._cycle.more_body:
            self._protocol.close_lingering()
        else:
            self._transport.close()


def _refusal(headers: list[tuple[bytes, bytes]], http_version: str) -> EnsemblerError | None:
    """What `semantics` refuses in a request head (names are lower case, as uvicorn's)."""
    hosts = 0
    for name, value in headers:
        if name == b"host":
            hosts += 1
        elif name == b"transfer-encoding":
            unsupported = semantics.transfer_coding_error(value)
            if unsupported is not None:
                return unsupported
    return semantics.host_error(hosts, http_version)


def _keep_http10_alive(cycle: Any) -> None:
    """Keep an HTTP/1.0 ``Connection: keep-alive`` request's connection open after the
    answer, and say so in the answer (an HTTP/1.0 client closes without the header)."""
    cycle.keep_alive = True
    send = cycle.send

    async def send_keeping_alive(message: Message) -> None:
        if message["type"] == "http.response.start" and cycle.keep_alive:
            headers = list(message.get("headers", ()))
            if not any(name.lower() == b"connection" for name, _ in headers):
                headers.append((b"connection", b"keep-alive"))
                message = {**message, "headers": headers}
        await send(message)

    cycle.send = send_keeping_alive


def _graceful_server(
    config: Any, core: Core, sock: socket.socket, drain: _Drain, grace: float, alone: bool
) -> Any:
    """uvicorn's server, telling the core when a shutdown begins and draining as the
    native front end does (`native.shut_down`); a second signal forces the exit.
    `alone`: no other process serves `sock` (see `stop_listening`)."""
    import uvicorn

    class Server(uvicorn.Server):  # type: ignore[misc]
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.should_exit:
                force_exit(sig)
            core.drain()
            # Answers close from now on, not from uvicorn's next check of should_exit;
            # those being worked out are marked from the loop, not from this handler.
            drain.began = True
            with contextlib.suppress(RuntimeError):  # no loop yet: nothing to mark
                asyncio.get_running_loop().call_soon_threadsafe(self._close_after_answers)
            super().handle_exit(sig, frame)

        def _close_after_answers(self) -> None:
            connections: list[Any] = list(self.server_state.connections)  # `_protocol`'s
            for connection in connections:
                connection.close_after_answers()

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            """uvicorn's, but a signal held while the server started is handled now: it
            then starts, skips serving and shuts down gracefully."""
            with super().capture_signals():
                held = take_held()
                if held is not None:
                    self.handle_exit(held, None)
                yield

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            """uvicorn's shutdown, but what the accept queue holds is answered, and idle
            connections are closed only once they have stayed idle (`_protocol`)."""
            loop = asyncio.get_running_loop()
            (listener,) = self.servers
            drain.idle_until = loop.time() + min(grace, DRAIN_IDLE_SECONDS)
            for connection in list(self.server_state.connections):
                connection.shutdown()
            # Connections accepted from now on see `drain` when they are made.
            queued = await stop_listening(listener, sock, refuse=alone)
            protocol_class: Any = self.config.http_protocol_class
            protocol = functools.partial(
                protocol_class,
                config=self.config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
            )
            for accepted in queued:
                await loop.connect_accepted_socket(protocol, sock=accepted)
            try:
                await asyncio.wait_for(self._wait_tasks_to_complete(), timeout=grace)
            except asyncio.TimeoutError:
                logger.error(
                    "%d requests still busy after %s s: cancelling them",
                    len(self.server_state.tasks),
                    grace,
                )
                for task in self.server_state.tasks:
                    task.cancel()

    return Server(config)
