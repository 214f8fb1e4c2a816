"""The isolation wire format; the processes themselves are exercised over HTTP in
tests/reliability/test_isolation.py."""

from __future__ import annotations

import pytest

from pyfunc_ensembler.isolation import (
    ANSWER,
    REQUEST,
    _join_headers,
    _Reader,
    _split_headers,
)


def request_frame(request_id: int, headers: bytes, body: bytes) -> bytes:
    return REQUEST.pack(request_id, len(headers), len(headers) + len(body)) + headers + body


def test_frames_split_anywhere_come_out_whole() -> None:
    stream = request_frame(1, b"a:1", b"{}") + request_frame(2, b"", b"x" * 100)
    for cut in range(len(stream) + 1):
        reader = _Reader(REQUEST)
        frames = reader.frames(stream[:cut]) + reader.frames(stream[cut:])
        assert frames == [((1, 3, 5), b"a:1{}"), ((2, 0, 100), b"x" * 100)]


def test_answer_frames_carry_status_flags_and_seconds() -> None:
    frame = ANSWER.pack(7, 504, 1, 0.25, 2) + b"{}"
    assert _Reader(ANSWER).frames(frame) == [((7, 504, 1, 0.25, 2), b"{}")]


@pytest.mark.parametrize(
    "headers",
    [[], [(b"Turing-Req-Id", b"r:1")], [(b"a", b""), (b"a", b"two words"), (b"b", b"x")]],
)
def test_headers_cross_unchanged(headers: list[tuple[bytes, bytes]]) -> None:
    assert _split_headers(_join_headers(headers)) == headers
