"""The worker's gate (`Core`): routing, probes, admission, the deadline, in-flight count
and request metrics, and what the runners of the pipeline answer, without HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from pyfunc_ensembler.contract import Headers
from pyfunc_ensembler.core import Core
from pyfunc_ensembler.errors import PayloadTooLarge
from pyfunc_ensembler.loader import Ensembler, ModelInfo
from pyfunc_ensembler.pipeline import Answered, RawHeaders
from tests.helpers import samples

BODY = orjson.dumps({"request": {}, "response": {"route_responses": [{"route": "a", "data": 1}]}})
INFO = ModelInfo("/models/m", "tests.Sum", "lean", "ensemble", "3.11.7", 0.25)


def core_with(
    call: Callable[[Any, Headers], Any], *, is_async: bool = False, **kwargs: Any
) -> Core:
    return Core(Ensembler(call, is_async, INFO, None, None), **kwargs)


def test_requests_are_counted_by_status_and_probes_are_not() -> None:
    core = core_with(lambda body, headers: {"ok": True})
    for _ in range(3):
        assert core.handle(BODY, [])[0] == 200
    bad = core.handle(b"{", [])
    assert bad[0] == 400
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        decided = core.route("GET", path)
        assert decided is not None and decided[0][0] == 200
    scraped = samples(core.metrics)
    assert scraped[("ensembler_requests_total", (("code", "200"),))] == 3
    assert scraped[("ensembler_requests_total", (("code", "400"),))] == 1
    assert scraped[("ensembler_request_duration_seconds_count", ())] == 4
    # The malformed body never reached the ensembler.
    assert scraped[("ensembler_ensemble_duration_seconds_count", ())] == 3
    answered = 3 * len(b'{"ok":true}') + len(bad[1])
    assert scraped[("ensembler_response_size_bytes_sum", ())] == answered


def test_metrics_are_text_and_openapi_is_the_document() -> None:
    core = core_with(lambda body, headers: 1)
    decided = core.route("GET", "/metrics")
    assert decided is not None
    _, extra = decided
    assert dict(extra)[b"content-type"].startswith(b"text/plain")
    decided = core.route("GET", "/openapi.json")
    assert decided is not None
    assert set(json.loads(decided[0][1])["paths"]) == {
        "/ensemble",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    }


def test_readiness_goes_false_when_draining_and_liveness_stays() -> None:
    core = core_with(lambda body, headers: 1)
    core.drain()
    ready, alive = core.route("GET", "/readyz"), core.route("GET", "/healthz")
    assert ready is not None and ready[0] == (503, b'{"status":"shutting_down"}')
    assert alive is not None and alive[0][0] == 200
    assert core.handle(BODY, [])[0] == 200  # requests still in flight are answered


def test_over_the_concurrency_limit_is_503_with_retry_after() -> None:
    async def slow(body: Any, headers: Headers) -> int:
        await asyncio.sleep(0.05)
        return 1

    core = core_with(slow, is_async=True, max_concurrency=2)

    async def scenario() -> tuple[list[int], Any]:
        pending = [asyncio.ensure_future(core.handle_async(BODY, [])) for _ in range(2)]
        await asyncio.sleep(0)  # both are now in flight
        rejected = core.route("POST", "/ensemble")
        return [status for status, _ in await asyncio.gather(*pending)], rejected

    statuses, rejected = asyncio.run(scenario())
    assert statuses == [200, 200]
    assert rejected is not None
    (status, body), extra = rejected
    assert status == 503 and json.loads(body)["error"]["type"] == "overloaded"
    assert dict(extra)[b"retry-after"] == b"1"
    assert core.route("POST", "/ensemble") is None  # admitted again once they finished
    assert samples(core.metrics)[("ensembler_requests_total", (("code", "503"),))] == 1


def test_an_async_ensembler_past_the_deadline_gets_504() -> None:
    async def slow(body: Any, headers: Headers) -> int:
        await asyncio.sleep(10)
        return 1

    core = core_with(slow, is_async=True, request_timeout=0.05)
    status, body = asyncio.run(core.handle_async(BODY, []))
    assert status == 504 and json.loads(body)["error"]["type"] == "deadline_exceeded"
    assert core.in_flight == 0


def test_a_sync_ensembler_past_the_deadline_gets_504_when_it_returns() -> None:
    core = core_with(lambda body, headers: time.sleep(0.06), request_timeout=0.01)
    assert core.handle(BODY, [])[0] == 504


def test_an_ensemblers_own_timeout_error_is_not_a_deadline() -> None:
    async def fails(body: Any, headers: Headers) -> int:
        raise asyncio.TimeoutError

    core = core_with(fails, is_async=True, request_timeout=30)
    assert asyncio.run(core.handle_async(BODY, []))[0] == 500


def test_sync_ensemblers_run_in_the_thread_pool_when_asked() -> None:
    import threading

    threads: list[str] = []

    def record(body: Any, headers: Headers) -> str:
        threads.append(threading.current_thread().name)
        return "ok"

    core = core_with(record, sync_threads=2)
    assert core.is_async  # front ends await handle_async
    assert asyncio.run(core.handle_async(BODY, [])) == (200, b'"ok"')
    assert threads[0].startswith("ensemble")


@pytest.mark.parametrize("status", [200, 500])
def test_in_flight_returns_to_zero(status: int) -> None:
    def call(body: Any, headers: Headers) -> int:
        if status == 500:
            raise ValueError("boom")
        return 1

    core = core_with(call)
    assert core.handle(BODY, [])[0] == status
    assert core.in_flight == 0
    assert samples(core.metrics)[("ensembler_requests_in_flight", ())] == 0


def test_a_cancelled_request_frees_its_concurrency_slot() -> None:
    async def forever(body: Any, headers: Headers) -> int:
        await asyncio.sleep(3600)
        return 1

    core = core_with(forever, is_async=True, max_concurrency=1)

    async def cancel_one() -> None:
        task = asyncio.ensure_future(core.handle_async(BODY, []))
        await asyncio.sleep(0.01)
        assert core.in_flight == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_one())
    assert core.in_flight == 0
    assert core.route("POST", "/ensemble") is None


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_answer_head_as_get(path: str) -> None:
    core = core_with(lambda body, headers: 1)
    decided = core.route("HEAD", path)
    assert decided is not None and decided[0][0] == 200
    (status, _), extra = core.route("PUT", path)  # type: ignore[misc]
    assert status == 405 and dict(extra)[b"allow"] == b"GET, HEAD"


def test_a_burst_counts_each_sender_once() -> None:
    core = core_with(lambda body, headers: 1, max_concurrency=2)

    async def burst() -> list[bool]:
        one, two, three = object(), object(), object()
        senders = [one, one, one, two, two, three]  # pipelined requests arrive together
        return [core.route("POST", "/ensemble", sender) is None for sender in senders]

    assert asyncio.run(burst()) == [True, True, True, True, True, False]


def test_a_refusal_is_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    core = core_with(lambda body, headers: 1)
    with caplog.at_level(logging.INFO, logger="pyfunc_ensembler"):
        status, answer = core.refuse(PayloadTooLarge.over(10, declared=20))
    assert status == 413
    message = "the body has 20 bytes; the limit is 10"
    assert json.loads(answer) == {"error": {"type": "payload_too_large", "message": message}}
    assert [r.getMessage() for r in caplog.records] == [
        f"refused a request: 413 payload_too_large: {message}"
    ]
    assert samples(core.metrics)[("ensembler_requests_total", (("code", "413"),))] == 1


def test_a_failure_is_logged_once_with_the_request_id(caplog: pytest.LogCaptureFixture) -> None:
    def fails(request: Any, headers: Headers) -> Any:
        raise KeyError("weights")

    with caplog.at_level(logging.INFO, logger="pyfunc_ensembler"):
        status, answer = core_with(fails).handle(BODY, [(b"turing-req-id", b"r-7")])
    assert (status, json.loads(answer)["error"]["type"]) == (500, "ensemble_error")
    [record] = caplog.records
    assert record.getMessage() == "500 ensemble_error: KeyError: 'weights'"
    assert record.request_id == "r-7"  # type: ignore[attr-defined]
    assert record.exc_info is not None


def test_handle_async_answers_whatever_runs_the_ensembler() -> None:
    # A sync one inline too: a front end may always await it (asgi does).
    core = core_with(lambda body, headers: "inline")
    assert not core.is_async
    assert asyncio.run(core.handle_async(BODY, [])) == (200, b'"inline"')
    assert core.in_flight == 0


def test_an_awaited_ensembler_cannot_be_answered_without_awaiting() -> None:
    async def ensemble(request: Any, headers: Headers) -> Any:
        return 1

    core = core_with(ensemble, is_async=True)
    with pytest.raises(TypeError, match="handle_async"):
        core.handle(BODY, [])


def test_the_gate_runs_any_runner_it_is_given() -> None:
    # The seam: where the ensembler runs is the runner's business (isolation's process
    # is one); the gate only counts, times and logs what it answers.
    asked: list[tuple[bytes, list[tuple[bytes, bytes]], float | None]] = []

    class Elsewhere:
        async def answer(
            self, body: bytes, raw_headers: RawHeaders, timeout: float | None
        ) -> Answered:
            asked.append((body, list(raw_headers), timeout))
            return 200, b'"from elsewhere"', 0.0005

    core = core_with(lambda body, headers: 1, request_timeout=2.5)
    core.run_in(Elsewhere())
    assert core.is_async
    assert asyncio.run(core.handle_async(BODY, [(b"a", b"1")])) == (200, b'"from elsewhere"')
    assert asked == [(BODY, [(b"a", b"1")], 2.5)]
    scraped = samples(core.metrics)
    assert scraped[("ensembler_requests_total", (("code", "200"),))] == 1
    assert scraped[("ensembler_ensemble_duration_seconds_sum", ())] == 0.0005
