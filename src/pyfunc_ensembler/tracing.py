"""OpenTelemetry tracing of ``POST /ensemble``: the optional ``tracing`` extra.

``--tracing otlp`` exports spans over OTLP/HTTP, configured by the standard
``OTEL_EXPORTER_OTLP_*`` and ``OTEL_SERVICE_NAME`` variables (read by the SDK);
``--tracing console`` prints them to stderr. Each request gets a server span
``POST /ensemble`` that continues the caller's trace, and a child span ``ensemble``
around the answer pipeline (parse, call, serialize), wherever the ensembler runs:
inline, in the thread pool, or in its own process (``--isolate``). Probes and
``/metrics`` are never traced.

The caller's trace comes in W3C ``traceparent`` or in B3 (one ``b3`` header, or
``X-B3-TraceId``/``X-B3-SpanId``/``X-B3-Sampled``), which Turing's router and Istio's
sidecars forward; W3C wins when both come. ``OTEL_PROPAGATORS``, when set, chooses
instead (e.g. ``tracecontext,baggage,b3multi``).

Instrumenting wraps the core's entry points and its `pipeline.Runner`, and only when
tracing is on: with it off, the hot path does not even check a flag.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators import textmap
from opentelemetry.propagators.b3 import B3MultiFormat
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pyfunc_ensembler.core import ENSEMBLE_PATH, Core
from pyfunc_ensembler.pipeline import Answer, Answered, RawHeaders, Runner, SyncRunner

_SPAN_NAME = f"POST {ENSEMBLE_PATH}"


def instrument(core: Core, exporter: str) -> None:
    """Trace every ensemble request `core` answers from now on (call it in each worker)."""
    tracer = _provider(exporter).get_tracer("pyfunc_ensembler")
    _propagate()
    attributes = {"ensembler.class": core.ensembler.info.ensembler_class}

    def ensemble_span() -> Any:
        return tracer.start_as_current_span("ensemble", attributes=attributes)

    core.run_in(_traced(core.runner, ensemble_span))
    handle, handle_async = core.handle, core.handle_async

    def traced_handle(body: bytes, raw_headers: RawHeaders) -> Answer:
        raw = list(raw_headers)
        with _request_span(tracer, raw) as span:
            return _finish(span, handle(body, raw))

    async def traced_handle_async(body: bytes, raw_headers: RawHeaders) -> Answer:
        raw = list(raw_headers)
        with _request_span(tracer, raw) as span:
            return _finish(span, await handle_async(body, raw))

    # Instance attributes shadow the methods: front ends call core.handle(...) as before.
    setattr(core, "handle", traced_handle)  # noqa: B010
    setattr(core, "handle_async", traced_handle_async)  # noqa: B010


def _traced(runner: Runner, span: Callable[[], Any]) -> Runner:
    """`runner` with each answer inside an ``ensemble`` span, wherever it runs."""

    class Traced:
        async def answer(
            self, body: bytes, raw_headers: RawHeaders, timeout: float | None
        ) -> Answered:
            with span():
                return await runner.answer(body, raw_headers, timeout)

    if not isinstance(runner, SyncRunner):
        return Traced()
    answer_now = runner.answer_now

    class TracedNow(Traced):
        def answer_now(self, body: bytes, raw_headers: RawHeaders) -> Answered:
            with span():
                return answer_now(body, raw_headers)

    return TracedNow()


def _provider(exporter: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "pyfunc-ensembler"}))
    provider.add_span_processor(_processor(exporter))
    # Global, so that spans an ensembler makes itself become children of ours.
    trace.set_tracer_provider(provider)
    return provider


def _propagate() -> None:
    """Read (and, in what an ensembler sends on, write) W3C and B3 trace headers."""
    if "OTEL_PROPAGATORS" in os.environ:
        return  # the user's choice, which the API has read already
    propagators: list[textmap.TextMapPropagator] = [
        # B3MultiFormat reads a single `b3` header as well as the X-B3-* ones. Each
        # extraction overrides the one before: W3C's comes last, so it wins.
        B3MultiFormat(),
        TraceContextTextMapPropagator(),
        W3CBaggagePropagator(),
    ]
    # Global, as the provider is: an ensembler's own instrumented calls pass both on.
    propagate.set_global_textmap(CompositePropagator(propagators))


def _processor(exporter: str) -> SpanProcessor:
    if exporter == "console":
        # Unbatched: a span is written as soon as it ends, which is what a person
        # watching a terminal (or a test reading stderr) wants.
        return SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return BatchSpanProcessor(OTLPSpanExporter())


def _request_span(tracer: trace.Tracer, raw: list[tuple[bytes, bytes]]) -> Any:
    # Every header: the propagators (ours, or OTEL_PROPAGATORS's) pick theirs.
    carrier = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}
    return tracer.start_as_current_span(
        _SPAN_NAME,
        context=propagate.extract(carrier),
        kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": "POST", "url.path": ENSEMBLE_PATH},
    )


def _finish(span: trace.Span, answer: Answer) -> Answer:
    span.set_attribute("http.response.status_code", answer[0])
    if answer[0] >= 500:
        span.set_status(trace.StatusCode.ERROR)
    return answer
