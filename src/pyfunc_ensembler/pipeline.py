"""The answer pipeline: one request's body bytes and headers -> its status and answer bytes.

Parse the body, call the ensembler, serialize what it returns; any failure becomes its
JSON answer, logged once with the request id. Nothing here knows HTTP or the worker's
limits (the gate around it, in `core`, does). *Where* the ensembler runs is a `Runner`,
as httpx's client talks to a transport and MLServer's data plane to a model that may
be a pool of processes:

- `Inline`: a sync ensembler called on the caller's thread (the worker's event loop);
- `OnLoop`: an ``async def ensemble`` awaited on the running loop;
- `InThreads`: a sync ensembler in a pool of threads (``--sync-threads``);
- `isolation.EnsemblerProcess`: `Inline` or `OnLoop` in a process of its own
  (``--isolate``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Awaitable, Iterable
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pyfunc_ensembler.contract import REQUEST_ID_HEADER, Headers, headers_from_raw
from pyfunc_ensembler.errors import (
    DeadlineExceeded,
    EnsembleFailed,
    EnsemblerError,
    error_body,
)
from pyfunc_ensembler.logging import answers_requests
from pyfunc_ensembler.serialization import dumps, loads

if TYPE_CHECKING:
    from pyfunc_ensembler.loader import BodyCall, Ensembler

logger = logging.getLogger("pyfunc_ensembler.pipeline")

Answer = tuple[int, bytes]
Answered = tuple[int, bytes, float | None]
"""status, answer bytes, and how long the ensembler's call took (``None``: not called)"""
RawHeaders = Iterable[tuple[bytes, bytes]]


@runtime_checkable
class Runner(Protocol):
    """Where the ensembler runs: what turns one request into its answer."""

    async def answer(self, body: bytes, raw_headers: RawHeaders, timeout: float | None) -> Answered:
        """Answer one request; a call still running after `timeout` seconds gets the 504."""


@runtime_checkable
class SyncRunner(Runner, Protocol):
    """A runner that can also answer without awaiting: the hot path of a sync ensembler."""

    def answer_now(self, body: bytes, raw_headers: RawHeaders) -> Answered:
        """Answer one request before returning (no deadline: the call cannot be stopped)."""


def runner_for(ensembler: Ensembler, *, debug: bool = False, threads: int = 0) -> Runner:
    """Where `ensembler` runs in this process: awaited, in `threads` threads, or inline."""
    if ensembler.is_async:
        return OnLoop(ensembler.call, debug=debug)
    if threads > 0:
        return InThreads(ensembler.call, threads, debug=debug)
    return Inline(ensembler.call, debug=debug)


def failure(exc: BaseException, headers: Headers | None, *, debug: bool = False) -> Answer:
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
    return error.status, error_body(error, debug=debug)


class _Calls:
    """What the runners share: the ensembler's call, and the answer when it fails."""

    def __init__(self, call: BodyCall, *, debug: bool = False) -> None:
        self.call = call
        self.debug = debug

    def failed(self, exc: Exception, headers: Headers, called: float | None) -> Answered:
        """The answer to a request that raised `exc`, in the call begun at `called`
        (`perf_counter`) or before it (``None``)."""
        seconds = None if called is None else perf_counter() - called
        return (*failure(exc, headers, debug=self.debug), seconds)


class Inline(_Calls):
    """A sync ensembler, called on the caller's thread."""

    @answers_requests  # what the ensembler logs under it carries the request id
    def answer_now(self, body: bytes, raw_headers: RawHeaders) -> Answered:
        headers = headers_from_raw(raw_headers)
        called = None
        try:
            request = loads(body)
            called = perf_counter()
            result = self.call(request, headers)
            seconds = perf_counter() - called
            # Not in a helper shared with OnLoop: one call more per request (measured).
            return 200, dumps(result), seconds
        except Exception as exc:
            return self.failed(exc, headers, called)

    async def answer(self, body: bytes, raw_headers: RawHeaders, timeout: float | None) -> Answered:
        # The call cannot be interrupted: the gate replaces an answer that came too late.
        return self.answer_now(body, raw_headers)


class OnLoop(_Calls):
    """An ``async def ensemble``, awaited on the running event loop, many at once."""

    def start(self, request: Any, headers: Headers) -> Awaitable[Any]:
        return self.call(request, headers)  # type: ignore[no-any-return]

    @answers_requests  # what the ensembler logs under it carries the request id
    async def answer(self, body: bytes, raw_headers: RawHeaders, timeout: float | None) -> Answered:
        headers = headers_from_raw(raw_headers)
        called = None
        try:
            request = loads(body)
            called = perf_counter()
            if timeout is None:
                result = await self.start(request, headers)
            else:
                result = await _within(self.start(request, headers), timeout, called)
            seconds = perf_counter() - called
            return 200, dumps(result), seconds
        except Exception as exc:
            return self.failed(exc, headers, called)


class InThreads(OnLoop):
    """A sync ensembler in a pool of threads, awaited on the loop meanwhile."""

    def __init__(self, call: BodyCall, threads: int, *, debug: bool = False) -> None:
        super().__init__(call, debug=debug)
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="ensemble")

    def start(self, request: Any, headers: Headers) -> Awaitable[Any]:
        # In the request's context, so that tracing spans and the like follow it.
        call = functools.partial(
            contextvars.copy_context().run, _call_in_thread, self.call, request, headers
        )
        return asyncio.get_running_loop().run_in_executor(self.pool, call)


@answers_requests  # the thread's stack does not have OnLoop.answer
def _call_in_thread(call: BodyCall, request: Any, headers: Headers) -> Any:
    return call(request, headers)


async def _within(pending: Awaitable[Any], timeout: float, started: float) -> Any:
    try:
        return await asyncio.wait_for(pending, timeout - (perf_counter() - started))
    except asyncio.TimeoutError:
        if perf_counter() - started < timeout:
            raise  # the ensembler's own timeout, not ours
        raise DeadlineExceeded(f"no answer within {timeout} s") from None
