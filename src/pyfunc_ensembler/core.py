"""The worker's gate around the answer pipeline: request line, body and headers -> answer.

Front ends (the native HTTP server, the ASGI app) only move bytes; everything a
request means is decided here, so every front end answers the same way: the probes
and other GET endpoints, admission (back-pressure), the deadline, the in-flight count,
the request metrics and the access log. The answer itself comes from a
`pipeline.Runner`, which knows where the ensembler runs.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter
from typing import TYPE_CHECKING, Any

from pyfunc_ensembler.contract import REQUEST_ID_HEADER, Headers, headers_from_raw
from pyfunc_ensembler.errors import (
    DeadlineExceeded,
    EnsemblerError,
    MethodNotAllowed,
    NotFound,
    Overloaded,
    error_body,
)
from pyfunc_ensembler.health import Readiness, endpoints
from pyfunc_ensembler.metrics import Metrics, model_info
from pyfunc_ensembler.pipeline import (
    Answer,
    Answered,
    RawHeaders,
    Runner,
    SyncRunner,
    failure,
    runner_for,
)

if TYPE_CHECKING:
    from pyfunc_ensembler.loader import Ensembler
    from pyfunc_ensembler.settings import Settings

logger = logging.getLogger("pyfunc_ensembler.core")
access_logger = logging.getLogger("pyfunc_ensembler.access")

ExtraHeaders = tuple[tuple[bytes, bytes], ...]

ENSEMBLE_PATH = "/ensemble"
ALLOW_POST = ((b"allow", b"POST"),)
ALLOW_GET = ((b"allow", b"GET, HEAD"),)
# Overloaded workers ask the client to come back shortly rather than queueing it.
RETRY_AFTER = ((b"retry-after", b"1"),)
_REQUEST_ID = REQUEST_ID_HEADER.lower().encode()


class Core:
    """One worker's gate: answers every request of every front end with one ensembler.

    It keeps what the front ends share: the request metrics, the in-flight count behind
    back-pressure, the deadline, and readiness (`drain` is the hook a front end calls
    when its shutdown begins). `runner` answers ``POST /ensemble`` bodies.
    """

    def __init__(
        self,
        ensembler: Ensembler,
        *,
        debug: bool = False,
        metrics: Metrics | None = None,
        max_concurrency: int = 0,
        request_timeout: float = 0.0,
        sync_threads: int = 0,
        access_log: bool = False,
    ) -> None:
        self.ensembler = ensembler
        self.debug = debug
        self.metrics = metrics if metrics is not None else Metrics(info=model_info(ensembler.info))
        self.readiness = Readiness()
        self.max_concurrency = max_concurrency
        self.deadline = request_timeout if request_timeout > 0 else None
        self.access_log = access_log
        self.in_flight = 0
        self.last_seconds = 0.0
        """How long the last ``POST /ensemble`` took to answer (front ends adapt to it)."""
        self._burst = 0
        self._senders: set[int] = set()  # ids of the connections counted in this burst
        self._endpoints = endpoints(self.readiness, self.metrics)
        self.run_in(runner_for(ensembler, debug=debug, threads=sync_threads))

    @classmethod
    def from_settings(
        cls, ensembler: Ensembler, settings: Settings, metrics: Metrics | None = None
    ) -> Core:
        return cls(
            ensembler,
            debug=settings.debug,
            metrics=metrics,
            max_concurrency=settings.max_concurrency,
            request_timeout=settings.request_timeout,
            sync_threads=settings.sync_threads,
            access_log=settings.access_log,
        )

    def run_in(self, runner: Runner) -> None:
        """Answer ``POST /ensemble`` through `runner` from now on (``--isolate``, tracing)."""
        self.runner = runner
        # Front ends await `handle_async` when this is true: async ensemblers, sync ones
        # sent to the thread pool, and any in a process of its own.
        self.is_async = not isinstance(runner, SyncRunner)
        self._answer_now = runner.answer_now if isinstance(runner, SyncRunner) else _must_await

    def drain(self) -> None:
        """A shutdown began: readiness goes false; requests in flight still finish."""
        self.readiness.drain()

    def route(
        self, method: str, path: str, sender: object = None
    ) -> tuple[Answer, ExtraHeaders] | None:
        """Decide a request from its request line alone, before any body is read.

        ``None`` means: read the body and call `handle` (or `handle_async`). Otherwise
        the answer and any extra response headers to send; the body, if any, is unread.
        Every path other than ``POST /ensemble`` is answered here, for all front ends.
        The extra headers may hold a ``content-type`` (``/metrics`` is text): it then
        replaces the default ``application/json``. `sender` (a front end's connection)
        lets back-pressure count a client pipelining requests once per burst.
        """
        if path == ENSEMBLE_PATH:
            if method != "POST":
                return self._answer(
                    MethodNotAllowed(f"{path} takes POST, not {method}")
                ), ALLOW_POST
            return self.admit(sender=sender)
        endpoint = self._endpoints.get(path)
        if endpoint is None:
            return self._answer(NotFound(f"no such path: {path}")), ()
        # HEAD is GET without the body, which the front end leaves out.
        if method not in ("GET", "HEAD"):
            return self._answer(MethodNotAllowed(f"{path} takes GET, not {method}")), ALLOW_GET
        return endpoint()

    def admit(
        self, *, arriving: bool = True, sender: object = None
    ) -> tuple[Answer, ExtraHeaders] | None:
        """Back-pressure: ``None`` to go on, or the 503 to answer at once.

        Two queues are bounded by ``max_concurrency``: requests in flight (async
        ensemblers, the thread pool), and requests that arrived in the current burst.
        A sync ensembler run inline blocks the loop, so the requests that pile up
        meanwhile are all delivered in one burst once it returns, each then waiting for
        the ones before it: counting them, and refusing those past the limit, bounds
        that wait instead of letting it grow with the load. Requests pipelined on one
        connection count once per burst: they wait behind their own client's requests
        only, and the connection's own back-pressure (reading pauses) bounds them.
        ``arriving=False`` checks a request already counted (a front end re-checking
        when its turn comes).
        """
        limit = self.max_concurrency
        if not limit:
            return None
        burst = self._count_arrival(sender) if arriving else 0
        if self.in_flight < limit and burst <= limit:
            return None
        self.metrics.count(Overloaded.status)
        waiting = max(self.in_flight, burst)
        overloaded = Overloaded(f"{waiting} requests in flight or waiting: try again later")
        return self._answer(overloaded), RETRY_AFTER

    def _count_arrival(self, sender: object) -> int:
        if sender is not None:
            if id(sender) in self._senders:
                return self._burst
            self._senders.add(id(sender))
        if self._burst == 0:
            try:
                # Runs once the loop has dealt with every callback ready now: the burst.
                asyncio.get_running_loop().call_soon(self._end_burst)
            except RuntimeError:
                return 0  # no loop (a direct call): nothing can pile up
        self._burst += 1
        return self._burst

    def _end_burst(self) -> None:
        self._burst = 0
        self._senders.clear()

    def handle(self, body: bytes, raw_headers: RawHeaders) -> Answer:
        """Answer one request with a synchronous ensembler run inline."""
        started = self._enter()
        status, answer, ensemble_seconds = self._answer_now(body, raw_headers)
        return self._leave(status, answer, started, ensemble_seconds, len(body), raw_headers)

    async def handle_async(self, body: bytes, raw_headers: RawHeaders) -> Answer:
        """Answer one request wherever the ensembler runs: awaited on the running loop,
        in the thread pool, in its own process (or inline)."""
        started = self._enter()
        try:
            status, answer, ensemble_seconds = await self.runner.answer(
                body, raw_headers, self.deadline
            )
        except BaseException:
            # Cancelled (the client or the server went away): free its concurrency slot,
            # or enough of these would leave the worker answering 503 for ever.
            self._abandon()
            raise
        return self._leave(status, answer, started, ensemble_seconds, len(body), raw_headers)

    def _enter(self) -> float:
        self.in_flight += 1
        self.metrics.set_in_flight(self.in_flight)
        return perf_counter()

    def _abandon(self) -> None:
        self.in_flight -= 1
        self.metrics.set_in_flight(self.in_flight)

    def _leave(
        self,
        status: int,
        answer: bytes,
        started: float,
        ensemble_seconds: float | None,
        request_bytes: int,
        raw_headers: RawHeaders,
    ) -> Answer:
        seconds = self.last_seconds = perf_counter() - started
        if self.deadline is not None and seconds > self.deadline and status != 504:
            # A sync ensembler cannot be interrupted; its late answer is useless to a
            # router that has already given up, so say what happened instead.
            late = DeadlineExceeded(f"answered after {seconds:.3f} s")
            status, answer = self.fail(late, headers_from_raw(raw_headers))
        self.in_flight -= 1
        metrics = self.metrics
        metrics.set_in_flight(self.in_flight)
        metrics.observe(status, seconds, ensemble_seconds, request_bytes, len(answer))
        if self.access_log:
            access_logger.info(
                "POST %s %d %.3fms in=%dB out=%dB",
                ENSEMBLE_PATH,
                status,
                seconds * 1000,
                request_bytes,
                len(answer),
                extra={"request_id": _request_id(raw_headers)},
            )
        return status, answer

    def fail(self, exc: BaseException, headers: Headers | None = None) -> Answer:
        """Log `exc` once, with the request id, and turn it into its JSON answer."""
        return failure(exc, headers, debug=self.debug)

    def refuse(self, error: EnsemblerError) -> Answer:
        """The answer for a request a front end refuses itself (400, 408, 413, ...): the
        one refusal path of every front end, so that each is counted and logged alike."""
        self.metrics.count(error.status)
        logger.info("refused a request: %d %s: %s", error.status, error.type, error.message)
        return self._answer(error)

    def _answer(self, error: EnsemblerError) -> Answer:
        return error.status, error_body(error, debug=self.debug)


def _must_await(body: bytes, raw_headers: RawHeaders) -> Answered:
    raise TypeError("this ensembler is awaited (async, threads, its own process): handle_async")


def _request_id(raw_headers: RawHeaders) -> str | None:
    for name, value in raw_headers:
        if name.lower() == _REQUEST_ID:
            return value.decode("latin-1")
    return None


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
