"""Log lines: text or JSON, the request id on lines about a request, the access log switch."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from pyfunc_ensembler import logging as ensembler_logging
from pyfunc_ensembler.settings import Settings


class Captured:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def getvalue(self) -> str:
        return self.capsys.readouterr().err


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[Captured]:
    """What the handler writes (configure binds the handler to pytest's captured stderr)."""
    yield Captured(capsys)
    logging.getLogger("pyfunc_ensembler").handlers[:] = []


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
