"""Tracing with `--tracing console`: spans read back from the real server's stderr."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Server, console_spans

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
BODY = {"request": {"fault": None}, "response": {"route_responses": []}}


@pytest.mark.parametrize(
    "runs_in",
    [[], ["--sync-threads", "2"], ["--isolate"]],
    ids=["inline", "thread-pool", "own-process"],
)
def test_request_and_ensemble_spans_follow_traceparent(
    test_models: dict[str, Path], runs_in: list[str]
) -> None:
    server = Server([str(test_models["faulty"]), "--tracing", "console", *runs_in]).start()
    try:
        headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
        assert server.post_json(BODY, headers) == (200, "ok")
        assert server.request("GET", "/healthz")[0] == 200
    finally:
        code, stderr = server.stop()
    assert code == 0
    spans = {span["name"]: span for span in console_spans(stderr)}
    # The start-up probe of Server.start() is a POST too: keep the one in our trace.
    traced = [s for s in console_spans(stderr) if s["context"]["trace_id"] == f"0x{TRACE_ID}"]
    assert sorted(s["name"] for s in traced) == ["POST /ensemble", "ensemble"]
    request = next(s for s in traced if s["name"] == "POST /ensemble")
    ensemble = next(s for s in traced if s["name"] == "ensemble")
    assert request["parent_id"] == f"0x{PARENT_ID}"
    assert request["kind"] == "SpanKind.SERVER"
    assert request["attributes"]["http.response.status_code"] == 200
    assert ensemble["parent_id"] == request["context"]["span_id"]
    assert "GET /healthz" not in spans


def test_async_ensemble_span_covers_the_awaited_call(test_models: dict[str, Path]) -> None:
    server = Server([str(test_models["async"]), "--tracing", "console"]).start()
    try:
        body = {"request": {}, "response": {"route_responses": [{"route": "a", "data": 2}]}}
        assert server.post_json(body) == (200, 2)
    finally:
        _, stderr = server.stop()
    names = [s["name"] for s in console_spans(stderr)]
    assert names.count("ensemble") == names.count("POST /ensemble") >= 1


B3_TRACE_ID = "80f198ee56343ba864fe8b2a57d3eff7"
B3_SPAN_ID = "e457b5a2e4d86bd1"


@pytest.mark.parametrize(
    ("headers", "trace_id", "parent_id"),
    [
        (
            {"X-B3-TraceId": B3_TRACE_ID, "X-B3-SpanId": B3_SPAN_ID, "X-B3-Sampled": "1"},
            B3_TRACE_ID,
            B3_SPAN_ID,
        ),
        ({"b3": f"{B3_TRACE_ID}-{B3_SPAN_ID}-1"}, B3_TRACE_ID, B3_SPAN_ID),
        # Istio's sidecars send both; they agree there, and W3C's wins when they do not.
        (
            {"b3": f"{B3_TRACE_ID}-{B3_SPAN_ID}-1", "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
            TRACE_ID,
            PARENT_ID,
        ),
    ],
    ids=["b3-multi", "b3-single", "b3-and-w3c"],
)
def test_b3_headers_continue_the_callers_trace(
    test_models: dict[str, Path], headers: dict[str, str], trace_id: str, parent_id: str
) -> None:
    server = Server([str(test_models["faulty"]), "--tracing", "console"]).start()
    try:
        assert server.post_json(BODY, headers) == (200, "ok")
    finally:
        code, stderr = server.stop()
    assert code == 0
    (request,) = [
        s
        for s in console_spans(stderr)
        if s["context"]["trace_id"] == f"0x{trace_id}" and s["name"] == "POST /ensemble"
    ]
    assert request["parent_id"] == f"0x{parent_id}"
    assert request["kind"] == "SpanKind.SERVER"


def test_otel_propagators_chooses_instead(test_models: dict[str, Path]) -> None:
    server = Server(
        [str(test_models["faulty"]), "--tracing", "console"],
        env={"OTEL_PROPAGATORS": "tracecontext"},
    ).start()
    try:
        b3 = {"X-B3-TraceId": B3_TRACE_ID, "X-B3-SpanId": B3_SPAN_ID, "X-B3-Sampled": "1"}
        assert server.post_json(BODY, b3) == (200, "ok")
    finally:
        _, stderr = server.stop()
    traced = {s["context"]["trace_id"] for s in console_spans(stderr)}
    assert f"0x{B3_TRACE_ID}" not in traced and traced
