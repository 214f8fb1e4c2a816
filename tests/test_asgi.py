"""The ASGI front end: the app driven with ASGI messages, and the real server over a socket.

Refusals go through the core's one refusal path, so both front ends count and log
them with the same words (the native side: tests/test_native.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from pyfunc_ensembler.asgi import App
from pyfunc_ensembler.contract import Headers
from pyfunc_ensembler.core import Core
from pyfunc_ensembler.loader import Ensembler, ModelInfo
from tests.helpers import Server, samples

BODY = orjson.dumps({"request": {}, "response": {"route_responses": [{"route": "a", "data": 2}]}})
INFO = ModelInfo("/models/m", "tests.Route", "lean", "ensemble", "3.11.7", 0.1)
Message = dict[str, Any]


def app_with(
    call: Callable[[Any, Headers], Any], *, is_async: bool = False, max_header_size: int = 0
) -> App:
    core = Core(Ensembler(call, is_async, INFO, None, None))
    return App(core, max_body_size=1024, max_header_size=max_header_size)


def exchange(
    app: App, method: str, path: str, headers: list[tuple[bytes, bytes]], *chunks: bytes
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request through the app: (status, headers, body) of what it sent."""
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
    }
    incoming: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks or (b"",))
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, body = sent
    assert (start["type"], body["type"]) == ("http.response.start", "http.response.body")
    return start["status"], dict(start["headers"]), body["body"]


def route_data(request: Any, headers: Headers) -> Any:
    return request["response"]["route_responses"][0]["data"]


async def async_route_data(request: Any, headers: Headers) -> Any:
    await asyncio.sleep(0)
    return route_data(request, headers)


@pytest.mark.parametrize(
    ("call", "is_async"), [(route_data, False), (async_route_data, True)], ids=["sync", "async"]
)
def test_a_request_is_answered_by_the_core(call: Any, is_async: bool) -> None:
    app = app_with(call, is_async=is_async)
    length = (b"content-length", str(len(BODY)).encode())
    status, headers, body = exchange(app, "POST", "/ensemble", [length], BODY[:10], BODY[10:])
    assert (status, body) == (200, b"2")
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"content-length"] == b"1"


def test_other_paths_get_the_one_error_shape() -> None:
    status, _, body = exchange(app_with(route_data), "GET", "/nowhere", [])
    assert status == 404
    assert json.loads(body) == {"error": {"type": "not_found", "message": "no such path: /nowhere"}}
    status, headers, _ = exchange(app_with(route_data), "GET", "/metrics", [])
    assert status == 200
    assert headers[b"content-type"].startswith(b"text/plain")


@pytest.mark.parametrize(
    ("headers", "chunks", "status", "message"),
    [
        (
            [(b"content-length", b"2000")],
            (b"x" * 2000,),
            413,
            "413 payload_too_large: the body has 2000 bytes; the limit is 1024",
        ),
        (
            [],
            (b"x" * 600, b"x" * 600),
            413,
            "413 payload_too_large: the body is over the limit of 1024 bytes",
        ),
        (
            [(b"x-big", b"y" * 300)],
            (BODY,),
            431,
            "431 headers_too_large: the request head is over the limit of 256 bytes",
        ),
    ],
    ids=["declared", "streamed", "head"],
)
def test_a_refusal_is_answered_closed_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
    headers: list[tuple[bytes, bytes]],
    chunks: tuple[bytes, ...],
    status: int,
    message: str,
) -> None:
    app = app_with(route_data, max_header_size=256)
    with caplog.at_level(logging.INFO, logger="pyfunc_ensembler"):
        answered, sent_headers, body = exchange(app, "POST", "/ensemble", headers, *chunks)
    assert answered == status
    assert sent_headers[b"connection"] == b"close"
    assert json.loads(body)["error"]["message"] == message.split(": ", 1)[1]
    assert [r.getMessage() for r in caplog.records] == [f"refused a request: {message}"]
    code = (("code", str(status)),)
    assert samples(app.core.metrics)[("ensembler_requests_total", code)] == 1


def test_lifespan_is_acknowledged() -> None:
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app_with(route_data)({"type": "lifespan"}, receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


@pytest.mark.parametrize("front_end", ["native", "asgi"])
def test_both_front_ends_log_a_refusal_alike(test_models: dict[str, Path], front_end: str) -> None:
    args = ["--server", front_end, "--log-level", "info", "--max-body-size", "100"]
    server = Server([str(test_models["faulty"]), *args]).start()
    try:
        for request in (
            b"POST /ensemble HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n" + b"x" * 500,
            b"POST /ensemble HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        ):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(request)
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.split(b" ", 2)[1] in (b"413", b"400")
            assert b"application/json" in head.lower()
            assert json.loads(body)["error"]["type"] in ("payload_too_large", "bad_request")
    finally:
        _, log = server.stop()
    limit = "413 payload_too_large: the body has 500 bytes; the limit is 100"
    assert f"refused a request: {limit}" in log
    assert "refused a request: 400 bad_request: malformed HTTP request: " in log
