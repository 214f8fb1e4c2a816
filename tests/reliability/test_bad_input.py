"""Bad input on both front ends: each gets a 4xx JSON answer quickly, and the next request
succeeds. "Quickly" is bounded by the client's timeout, never measured.

Native-only cases (the uvicorn path has no such limit) are marked so in their names.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Server
from tests.reliability.net import (
    VALID,
    body,
    exchange,
    post_bytes,
    read_response,
    status_and_error,
)

# (id, body, error type): each gets a 400.
MALFORMED_JSON = [
    ("open-brace", b"{", "invalid_json"),
    ("missing-value", b'{"request":}', "invalid_json"),
    ("missing-colon", b'{"a" 1}', "invalid_json"),
    ("trailing-comma", b'{"request": 1,}', "invalid_json"),
    ("single-quotes", b"{'request': 1}", "invalid_json"),
    ("content-after", b'{"a":1}}', "invalid_json"),
    ("two-documents", b"{} {}", "invalid_json"),
    ("comment", b"// x\n{}", "invalid_json"),
    ("nan-literal", b'{"request": NaN}', "invalid_json"),
    ("infinity-literal", b'{"request": Infinity}', "invalid_json"),
    ("truncated-literal", b"tru", "invalid_json"),
    ("unterminated-string", b'{"request": "abc', "invalid_json"),
    ("control-char-in-string", b'{"request": "a\x01b"}', "invalid_json"),
    ("bad-escape", b'{"request": "\\q"}', "invalid_json"),
    ("lone-surrogate-escape", b'{"request": "\\ud800"}', "invalid_json"),
    ("leading-zero", b'{"request": 01}', "invalid_json"),
    ("hex-number", b'{"request": 0x10}', "invalid_json"),
    ("empty-body", b"", "invalid_json"),
    ("only-whitespace", b" \r\n\t ", "invalid_json"),
    ("nul-bytes", b"\x00" * 16, "invalid_json"),
    ("beyond-double", b'{"request": 1e400, "response": {"route_responses": []}}', "invalid_json"),
    ("beyond-double-int", b'{"request": ' + b"9" * 400 + b"}", "invalid_json"),
    ("nested-100000-lists", b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
    (
        "nested-100000-in-request",
        b'{"request": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"}",
        "invalid_json",
    ),
    ("nested-unclosed", b"[" * 100_000, "invalid_json"),
    ("invalid-utf8-ff", b'{"request": "\xff"}', "invalid_utf8"),
    ("invalid-utf8-overlong", b'{"request": "\xc0\xaf"}', "invalid_utf8"),
    ("invalid-utf8-surrogate", b'{"request": "\xed\xa0\x80"}', "invalid_utf8"),
    ("invalid-utf8-truncated", b'{"request": "\xe2\x82"}', "invalid_utf8"),
    ("utf8-bom", b"\xef\xbb\xbf{}", "invalid_utf8"),
    ("latin1-body", '{"request": "café"}'.encode("latin-1"), "invalid_utf8"),
    ("utf16-body", '{"request": 1}'.encode("utf-16"), "invalid_utf8"),
    ("pickle-bytes", b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.", "invalid_utf8"),
]


def _with(response: Any) -> dict[str, Any]:
    return {"request": 1, "response": response}


def _routes(routes: Any) -> dict[str, Any]:
    return _with({"route_responses": routes})


# (id, decoded body): each is valid JSON but not a router request: 400 invalid_request.
INVALID_REQUESTS = [
    ("list-body", [1, 2]),
    ("empty-list-body", []),
    ("number-body", 3),
    ("float-body", 3.5),
    ("string-body", "request"),
    ("null-body", None),
    ("true-body", True),
    ("empty-object", {}),
    ("no-request", {"response": {"route_responses": []}}),
    ("no-response", {"request": 1}),
    ("response-is-list", _with([])),
    ("response-is-string", _with("x")),
    ("no-route-responses", _with({})),
    ("route-responses-object", _routes({})),
    ("route-responses-string", _routes("a")),
    ("route-responses-null", _routes(None)),
    ("route-responses-number", _routes(1)),
    ("entry-not-object", _routes([1])),
    ("entry-null", _routes([None])),
    ("entry-without-route", _routes([{"data": 1}])),
    ("route-null", _routes([{"route": None}])),
    ("route-number", _routes([{"route": 7}])),
    ("route-list", _routes([{"route": ["a"]}])),
    ("duplicate-routes", _routes([{"route": "a"}, {"route": "a", "data": 2}])),
]


@pytest.fixture
def echo(servers: Callable[..., Server], test_models: dict[str, Path], front_end: str) -> Server:
    return servers(str(test_models["echo"]), "--server", front_end)


def _assert_json_error(status: int, headers: dict[str, str], payload: bytes, kind: str) -> None:
    assert 400 <= status < 500
    assert headers["content-type"] == "application/json"
    error = json.loads(payload)["error"]
    assert error["type"] == kind
    assert error["message"]
    assert "traceback" not in error and "Traceback" not in error["message"]


def _still_serves(server: Server) -> None:
    status, answer = server.post_json(VALID)
    assert status == 200 and answer["input"] == {}


@pytest.mark.parametrize(
    ("payload", "kind"), [c[1:] for c in MALFORMED_JSON], ids=[c[0] for c in MALFORMED_JSON]
)
def test_malformed_json_gets_400(echo: Server, payload: bytes, kind: str) -> None:
    status, headers, answer = echo.request("POST", "/ensemble", payload)
    assert status == 400
    _assert_json_error(status, headers, answer, kind)
    _still_serves(echo)


@pytest.mark.parametrize(
    "doc", [c[1] for c in INVALID_REQUESTS], ids=[c[0] for c in INVALID_REQUESTS]
)
def test_bodies_that_are_not_router_requests_get_400(echo: Server, doc: Any) -> None:
    status, headers, answer = echo.request("POST", "/ensemble", json.dumps(doc).encode())
    assert status == 400
    _assert_json_error(status, headers, answer, "invalid_request")
    _still_serves(echo)


def test_duplicate_route_names_name_the_route(echo: Server) -> None:
    doc = body(response=None)
    doc["response"]["route_responses"] = [{"route": "m-1", "data": 1}, {"route": "m-1", "data": 2}]
    status, answer = echo.post_json(doc)
    assert status == 400
    assert "'m-1' appears more than once" in answer["error"]["message"]


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        (b"18446744073709551616", 18446744073709551616.0),  # 2**64
        (b"-9223372036854775809", -9223372036854775809.0),  # below int64
        (b"1" * 30, float("1" * 30)),
        (b"1e308", 1e308),
        (b"1e-400", 0.0),  # below the smallest double: 0, as orjson reads it
    ],
    ids=["2^64", "below-int64", "30-digits", "1e308", "underflow"],
)
def test_numbers_beyond_64_bits_are_read_as_the_nearest_double(
    echo: Server, literal: bytes, expected: float
) -> None:
    payload = b'{"request": ' + literal + b', "response": {"route_responses": []}}'
    status, _, answer = echo.request("POST", "/ensemble", payload)
    assert status == 200
    assert json.loads(answer)["input"] == expected


def test_one_gigabyte_declared_with_a_small_body_gets_413(echo: Server) -> None:
    reply = exchange(
        echo.port,
        b"POST /ensemble HTTP/1.1\r\nHost: t\r\nContent-Length: 1073741824\r\n\r\n{}",
    )
    status, answer = status_and_error(reply)
    assert (status, answer["error"]["type"]) == (413, "payload_too_large")
    _still_serves(echo)


def test_chunked_body_over_the_default_limit_gets_413(echo: Server) -> None:
    chunk = b"100000\r\n" + b" " * 0x100000 + b"\r\n"  # 1 MiB chunks of JSON whitespace
    with socket.create_connection(("127.0.0.1", echo.port), timeout=30) as sock:
        sock.sendall(b"POST /ensemble HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        sent = 0
        try:
            # Up to 32 MiB, twice the default limit; the server may stop reading sooner.
            for _ in range(32):
                sock.sendall(chunk)
                sent += 1
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _, answer = read_response(sock)
    assert status == 413
    assert json.loads(answer)["error"]["type"] == "payload_too_large"
    assert sent >= 16  # it was really over the limit when refused
    _still_serves(echo)


@pytest.mark.parametrize(
    "extra",
    [
        b"X-Big: " + b"a" * (1 << 20) + b"\r\n",  # one of 1 MiB, 16 times the default limit
        b"".join(b"X-H%d: v\r\n" % i for i in range(20_000)),  # many small ones
    ],
    ids=["one-huge-header", "many-headers"],
)
def test_oversized_headers_get_431(echo: Server, extra: bytes) -> None:
    with socket.create_connection(("127.0.0.1", echo.port), timeout=10) as sock:
        sock.sendall(post_bytes(json.dumps(VALID).encode(), extra))
        status, headers, answer = read_response(sock)
    assert status == 431
    _assert_json_error(status, headers, answer, "headers_too_large")
    _still_serves(echo)
