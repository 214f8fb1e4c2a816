"""Log lines: text or JSON, the request id on lines about a request, the access log switch."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator

import pytest

from pyfunc_ensembler import logging as ensembler_logging
from pyfunc_ensembler.contract import Headers
from pyfunc_ensembler.settings import Settings


class Captured:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def getvalue(self) -> str:
        return self.capsys.readouterr().err


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[Captured]:
    """What the handler writes (configure binds the handler to pytest's captured stderr)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield Captured(capsys)
    root.handlers[:], root.level = handlers, level


def test_text_lines_end_with_the_request_id(stderr: Captured) -> None:
    ensembler_logging.configure(Settings(log_level="info"))
    logging.getLogger("pyfunc_ensembler.core").info("500 boom", extra={"request_id": "r-1"})
    logging.getLogger("pyfunc_ensembler.core").info("no request here")
    first, second = stderr.getvalue().splitlines()
    assert first.endswith("500 boom request_id=r-1")
    assert "request_id" not in second


def test_json_lines_carry_the_request_id_and_the_exception(stderr: Captured) -> None:
    ensembler_logging.configure(Settings(log_format="json"))
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("pyfunc_ensembler.core").exception("failed", extra={"request_id": "r-2"})
    line = json.loads(stderr.getvalue())
    assert line["level"] == "error" and line["message"] == "failed"
    assert line["request_id"] == "r-2"
    assert "ValueError: bad" in line["exception"]


@pytest.mark.parametrize(
    ("access_log", "level", "written"), [(False, "debug", False), (True, "warning", True)]
)
def test_the_access_log_has_its_own_switch(
    stderr: Captured, access_log: bool, level: str, written: bool
) -> None:
    ensembler_logging.configure(Settings(access_log=access_log, log_level=level))
    logging.getLogger(ensembler_logging.ACCESS_LOGGER).info("POST /ensemble 200")
    assert ("POST /ensemble 200" in stderr.getvalue()) is written


def test_nothing_is_formatted_when_the_level_is_off(stderr: Captured) -> None:
    ensembler_logging.configure(Settings(log_level="warning"))

    class Exploding:
        def __str__(self) -> str:
            raise AssertionError("formatted although the level is off")

    logging.getLogger("pyfunc_ensembler.core").info("%s", Exploding())
    assert stderr.getvalue() == ""


@ensembler_logging.answers_requests
def answering(request_id: str | None, then: Callable[[], None]) -> None:
    """Call `then` as the pipeline calls an ensembler, for a request with that id."""
    # Read from this frame by the filter, as from the pipeline's.
    headers = Headers() if request_id is None else Headers({"Turing-Req-Id": request_id})  # noqa: F841
    then()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_an_ensemblers_own_lines_carry_the_request_id(stderr: Captured, log_format: str) -> None:
    ensembler_logging.configure(Settings(log_format=log_format, log_level="info"))
    theirs = logging.getLogger("my_ensembler")
    answering("r-3", lambda: theirs.info("chose %s", "model-a"))
    # On another thread, as in the pool (its stack is the thread's own).
    thread = threading.Thread(target=answering, args=("r-4", lambda: theirs.warning("fell back")))
    thread.start()
    thread.join()

    async def awaited() -> None:
        await asyncio.sleep(0)  # resumed by the loop: found through the awaiting frame
        theirs.info("awaited")

    async def answer_async(headers: Headers) -> None:
        await awaited()

    ensembler_logging.answers_requests(answer_async)
    asyncio.run(answer_async(Headers({"Turing-Req-Id": "r-5"})))
    theirs.info("between requests")
    lines = stderr.getvalue().splitlines()
    if log_format == "json":
        entries = [json.loads(line) for line in lines]
        assert [e.get("request_id") for e in entries] == ["r-3", "r-4", "r-5", None]
        assert entries[0]["logger"] == "my_ensembler" and entries[0]["message"] == "chose model-a"
    else:
        assert lines[0].endswith(f"INFO my_ensembler [{os.getpid()}] chose model-a request_id=r-3")
        assert lines[1].endswith("fell back request_id=r-4")
        assert lines[2].endswith("awaited request_id=r-5")
        assert "request_id" not in lines[3]


def test_an_explicit_request_id_wins_and_a_request_without_one_has_none(stderr: Captured) -> None:
    ensembler_logging.configure(Settings(log_level="info"))
    ours = logging.getLogger("pyfunc_ensembler.core")
    answering("r-5", lambda: ours.info("x", extra={"request_id": "r-6"}))
    answering(None, lambda: ours.info("no id sent"))
    first, second = stderr.getvalue().splitlines()
    assert first.endswith("x request_id=r-6")
    assert second.endswith("no id sent")
