"""The ASGI front end: a framework-free ASGI 3 application over the core.

The compatibility path: any ASGI server can host it (``uvicorn
'pyfunc_ensembler.asgi:from_environ' --factory``), and ``serve --server asgi`` runs it
on uvicorn with uvloop and httptools.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from types import FrameType
from typing import Any

from pyfunc_ensembler.core import Core, force_exit
from pyfunc_ensembler.errors import (
    EnsemblerError,
    HeadersTooLarge,
    PayloadTooLarge,
    RequestError,
    RequestTimeout,
)
from pyfunc_ensembler.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
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
            limit = self.max_header_size
            error = HeadersTooLarge(f"the request head is over the limit of {limit} bytes")
            await _send(send, *self.core.error(error), ((b"connection", b"close"),))
            return
        decided = self.core.route(scope["method"], scope["path"])
        if decided is None:
            await self._ensemble(scope, receive, send)
        else:
            (status, answer), extra = decided
            await _send(send, status, answer, extra)

    async def _ensemble(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await self._read_body(scope, receive)
        except EnsemblerError as error:
            await _send(send, *self.core.error(error), ((b"connection", b"close"),))
            return
        if self.core.is_async:
            status, answer = await self.core.handle_async(body, scope["headers"])
        else:
            status, answer = self.core.handle(body, scope["headers"])
        await _send(send, status, answer)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_body_size
        declared = _content_length(scope["headers"])
        if declared is not None and declared > limit:
            if declared - limit <= DRAIN_LIMIT:
                await _drain(receive)
            raise PayloadTooLarge(f"the body has {declared} bytes; the limit is {limit}")
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
                raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
            chunks.append(chunk)
            if not more:
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _head_size(scope: Scope) -> int:
    """About the size of the request line and headers, counted as the native front end does."""
    size = len(scope["raw_path"] or b"") + len(scope.get("query_string", b""))
    return size + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return None


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

    config = uvicorn.Config(
        App(core, max_body_size=settings.max_body_size, max_header_size=settings.max_header_size),
        loop="uvloop",
        http=_protocol(core, settings.receive_timeout),
        lifespan="off",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        log_config=None,
        log_level=settings.log_level,
        timeout_keep_alive=settings.keepalive_timeout,
        timeout_graceful_shutdown=settings.graceful_timeout,
    )
    _graceful_server(config, core).run(sockets=[sock])


def _protocol(core: Core, receive_timeout: float) -> Any:
    """uvicorn's httptools protocol with JSON refusals and a time limit to receive a request.

    uvicorn answers a malformed request with a text/plain 400 and never times out a
    client that sends its request slowly; this subclass answers both as the native front
    end does (JSON 400, JSON 408 after `receive_timeout`), then closes the connection.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class Protocol(HttpToolsProtocol):  # type: ignore[misc]
        _receive_timer: asyncio.TimerHandle | None = None

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._stop_receive_timer()
            if receive_timeout > 0:
                self._receive_timer = self.loop.call_later(receive_timeout, self._timed_out)

        def on_message_complete(self) -> None:
            self._stop_receive_timer()
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_receive_timer()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            self._refuse(RequestError(f"malformed HTTP request: {msg}"))

        def _timed_out(self) -> None:
            self._receive_timer = None
            if self.cycle is not None and self.cycle.response_started:
                self.transport.close()  # answered already (say a 404): just stop waiting
            else:
                self._refuse(
                    RequestTimeout(f"the request did not arrive within {receive_timeout} s")
                )

        def _stop_receive_timer(self) -> None:
            if self._receive_timer is not None:
                self._receive_timer.cancel()
                self._receive_timer = None

        def _refuse(self, error: EnsemblerError) -> None:
            status, body = core.error(error)
            head = (
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
                "connection: close\r\n\r\n"
            )
            self.transport.write(head.encode("latin-1") + body)
            self.transport.close()

    return Protocol


def _graceful_server(config: Any, core: Core) -> Any:
    """uvicorn's server, telling the core when a shutdown begins; a second signal forces it."""
    import uvicorn

    class Server(uvicorn.Server):  # type: ignore[misc]
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.should_exit:
                force_exit(sig)
            core.drain()
            super().handle_exit(sig, frame)

    return Server(config)
