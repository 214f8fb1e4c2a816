"""`semantics` on fixed inputs; tests/integration/test_http_rules.py checks both front ends."""

from __future__ import annotations

import gzip
import zlib

import pytest

from pyfunc_ensembler import semantics
from pyfunc_ensembler.errors import PayloadTooLarge, RequestError, UnsupportedEncoding


@pytest.mark.parametrize(
    "hosts, version, refused",
    [(1, "1.1", False), (0, "1.0", False), (0, "1.1", True), (2, "1.1", True), (2, "1.0", True)],
)
def test_one_host_is_needed_in_http11_and_two_are_never_allowed(
    hosts: int, version: str, refused: bool
) -> None:
    assert (semantics.host_error(hosts, version) is not None) is refused


@pytest.mark.parametrize(
    "value, refused",
    [(b"chunked", False), (b"Chunked", False), (b"gzip, chunked", True), (b"x,chunked", True)],
)
def test_only_chunked_transfer_coding_is_implemented(value: bytes, refused: bool) -> None:
    error = semantics.transfer_coding_error(value)
    assert (error is not None) is refused
    assert error is None or error.status == 501


def test_content_codings_are_listed_in_order_without_identity() -> None:
    assert semantics.content_codings(b"GZIP, identity ,deflate") == (b"gzip", b"deflate")
    with pytest.raises(UnsupportedEncoding):
        semantics.content_codings(b"gzip, br")


def test_decoding_undoes_the_last_coding_first() -> None:
    body = b'{"request": 1}'
    assert semantics.decode(zlib.compress(gzip.compress(body)), (b"gzip", b"deflate"), 100) == body


def test_decoding_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"0" * 10_000_000)
    with pytest.raises(PayloadTooLarge):
        semantics.decode(bomb, (b"gzip",), 1000)
    assert semantics.decode(gzip.compress(b"0" * 1000), (b"gzip",), 1000) == b"0" * 1000


@pytest.mark.parametrize(
    "data",
    [b"not gzip", gzip.compress(b"{}")[:-4], gzip.compress(b"{}") + b"tail"],
    ids=["garbage", "truncated", "trailing-bytes"],
)
def test_a_body_that_does_not_decode_is_a_bad_request(data: bytes) -> None:
    with pytest.raises(RequestError, match="not valid gzip"):
        semantics.decode(data, (b"gzip",), 1000)
