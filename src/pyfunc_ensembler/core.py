"""The transport-free core: request body bytes and raw headers -> (status, answer bytes).

Front ends (the native HTTP server, the ASGI app) only move bytes; everything a
request means is decided here, so every front end answers the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pyfunc_ensembler.contract import Headers, headers_from_raw
from pyfunc_ensembler.errors import (
    EnsembleFailed,
    EnsemblerError,
    MethodNotAllowed,
    NotFound,
    error_body,
)
from pyfunc_ensembler.loader import Ensembler
from pyfunc_ensembler.serialization import dumps, loads

logger = logging.getLogger("pyfunc_ensembler.core")

Answer = tuple[int, bytes]
RawHeaders = Iterable[tuple[bytes, bytes]]

REQUEST_ID_HEADER = "Turing-Req-Id"
ENSEMBLE_PATH = "/ensemble"
ALLOW_POST = ((b"allow", b"POST"),)


class Core:
    """Answers ``POST /ensemble`` bodies with one loaded ensembler."""

    def __init__(self, ensembler: Ensembler, *, debug: bool = False) -> None:
        self.ensembler = ensembler
        self.is_async = ensembler.is_async
        self.debug = debug
        self._call = ensembler.call

    def route(
        self, method: str, path: str
    ) -> tuple[Answer, tuple[tuple[bytes, bytes], ...]] | None:
        """Decide a request from its request line alone, before any body is read.

        ``None`` means: read the body and call `handle` (or `handle_async`). Otherwise
        the answer and any extra response headers to send; the body, if any, is unread.
        Every path other than ``POST /ensemble`` is answered here, for all front ends.
        """
        if path == ENSEMBLE_PATH:
            if method == "POST":
                return None
            return self.error(MethodNotAllowed(f"{path} takes POST, not {method}")), ALLOW_POST
        return self.error(NotFound(f"no such path: {path}")), ()

    def handle(self, body: bytes, raw_headers: RawHeaders) -> Answer:
        """Answer one request with a synchronous ensembler."""
        headers = headers_from_raw(raw_headers)
        try:
            return 200, dumps(self._call(loads(body), headers))
        except Exception as exc:
            return self.fail(exc, headers)

    async def handle_async(self, body: bytes, raw_headers: RawHeaders) -> Answer:
        """Answer one request with an ``async def ensemble``, awaited on the running loop."""
        headers = headers_from_raw(raw_headers)
        try:
            return 200, dumps(await self._call(loads(body), headers))
        except Exception as exc:
            return self.fail(exc, headers)

    def fail(self, exc: BaseException, headers: Headers | None = None) -> Answer:
        """Log `exc` once, with the request id, and turn it into its JSON answer."""
        error = exc if isinstance(exc, EnsemblerError) else EnsembleFailed.wrap(exc)
        request_id = headers.get(REQUEST_ID_HEADER) if headers is not None else None
        level = logging.ERROR if error.status >= 500 else logging.INFO
        logger.log(
            level,
            "%s %s: %s",
            error.status,
            error.type,
            error.message,
            exc_info=error.__cause__ if level == logging.ERROR else None,
            extra={"request_id": request_id},
        )
        return error.status, error_body(error, debug=self.debug)

    def error(self, error: EnsemblerError) -> Answer:
        """The answer for an error a front end found itself (404, 405, 413, ...)."""
        return error.status, error_body(error, debug=self.debug)


def describe(ensembler: Ensembler) -> dict[str, Any]:
    """What is being served, for logs and for `check`."""
    info = ensembler.info
    return {
        "uri": info.uri,
        "ensembler_class": info.ensembler_class,
        "loader": info.loader,
        "calls": info.calls,
        "async": ensembler.is_async,
        "python_version": info.python_version,
        "load_seconds": round(info.load_seconds, 3),
    }
