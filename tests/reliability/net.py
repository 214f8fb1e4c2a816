"""Raw-socket helpers: requests the stdlib client will not send, and answers read whole."""

from __future__ import annotations

import json
import socket
from typing import Any

ROUTES = [{"route": "a", "data": 1, "is_default": True}]
VALID = {"request": {}, "response": {"route_responses": ROUTES}}


def body(request: Any = None, **response: Any) -> dict[str, Any]:
    return {"request": request or {}, "response": {"route_responses": ROUTES, **response}}


def post_bytes(payload: bytes, extra: bytes = b"") -> bytes:
    head = b"POST /ensemble HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    return head + extra + b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload


def read_until_closed(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """Everything the server sends until it closes (or resets) the connection."""
    received = b""
    while len(received) < limit:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        received += chunk
    return received


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One whole response with a Content-Length, leaving the connection open."""
    return read_responses(sock, 1)[0]


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """`count` whole responses with a Content-Length, in order: answers to pipelined
    requests may arrive in one read."""
    responses = []
    buffer = b""
    for _ in range(count):
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {buffer!r}")
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(buffer) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed in the body")
            buffer += chunk
        responses.append((status, headers, buffer[:length]))
        buffer = buffer[length:]
    return responses


def exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_until_closed(sock)


def status_and_error(reply: bytes) -> tuple[int, dict[str, Any]]:
    """The status and the parsed JSON body of one raw response."""
    head, _, payload = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return status, json.loads(payload[:length])
