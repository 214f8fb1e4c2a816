"""What HTTP asks of a request beyond its syntax, for both front ends.

- One ``Host`` (RFC 9112 §3.2): an HTTP/1.1 request without it, or any request with two,
  gets 400.
- Transfer codings (RFC 9112 §6.1): we implement ``chunked`` only; any other (``gzip,
  chunked``) gets 501, as nginx answers, instead of being read as plain chunked.
- Content codings (RFC 9110 §8.4): a body sent with ``Content-Encoding: gzip`` (``x-gzip``)
  or ``deflate`` is decoded before the core sees it, to at most ``--max-body-size`` bytes:
  a small body that inflates past the limit (a zip bomb) gets 413 once the limit is
  reached, never more decoded than that. Any other coding gets 415 with ``Accept-Encoding``
  naming the ones we take (RFC 9110 §15.5.16). The router never compresses its bodies;
  clients that do (a gateway, a batch caller) should not be told their JSON is not UTF-8.
"""

from __future__ import annotations

import zlib

from pyfunc_ensembler.errors import (
    PayloadTooLarge,
    RequestError,
    UnsupportedEncoding,
    UnsupportedTransferCoding,
)

ACCEPT_ENCODING = ((b"Accept-Encoding", b"gzip, deflate"),)
"""The extra header of a 415: the content codings we decode."""

# zlib's window bits per content coding: gzip's header and trailer, or zlib's (which
# RFC 9110 §8.4.1.2 calls "deflate").
_WBITS = {b"gzip": 31, b"x-gzip": 31, b"deflate": 15}

Codings = tuple[bytes, ...]


def host_error(hosts: int, http_version: str) -> RequestError | None:
    """The 400 for a request with `hosts` Host header fields, if it is one."""
    if hosts == 1 or (hosts == 0 and http_version != "1.1"):
        return None
    if hosts == 0:
        return RequestError("an HTTP/1.1 request needs a Host header")
    return RequestError(f"the request has {hosts} Host headers; one is allowed")


def transfer_coding_error(value: bytes) -> UnsupportedTransferCoding | None:
    """The 501 for a ``Transfer-Encoding`` field that names anything but ``chunked``."""
    if all(token.strip().lower() == b"chunked" for token in value.split(b",")):
        return None
    shown = value.decode("latin-1")
    return UnsupportedTransferCoding(f"transfer coding {shown!r}: only chunked is implemented")


def content_codings(value: bytes) -> Codings:
    """The codings a ``Content-Encoding`` field lists, in the order they were applied.

    Raises `UnsupportedEncoding` (415; answer it with `ACCEPT_ENCODING`) for one we do
    not decode. ``identity`` is no coding at all.
    """
    codings = []
    for token in value.split(b","):
        coding = token.strip().lower()
        if coding in _WBITS:
            codings.append(coding)
        elif coding not in (b"identity", b""):
            shown = coding.decode("latin-1")
            raise UnsupportedEncoding(
                f"content coding {shown!r} is not supported; send gzip, deflate or none"
            )
    return tuple(codings)


def decode(body: bytes, codings: Codings, limit: int) -> bytes:
    """`body` with its `codings` undone, last applied first; 413 past `limit` bytes."""
    for coding in reversed(codings):
        body = _inflate(body, coding, limit)
    return body


def _inflate(data: bytes, coding: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(_WBITS[coding])
    name = coding.decode()
    try:
        # At most one byte past the limit: enough to know it is over, and no more.
        decoded = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise RequestError(f"the body is not valid {name}: {exc}") from None
    if len(decoded) > limit:
        raise PayloadTooLarge(f"the {name} body decodes to over the limit of {limit} bytes")
    if not inflater.eof or inflater.unused_data:
        raise RequestError(f"the body is not valid {name}: it does not end where its data does")
    return decoded
