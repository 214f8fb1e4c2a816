"""Log set-up: one handler on stderr, text or JSON lines, configured once at start-up.

The handler is the root logger's, so the ensembler's own `logging` lines come out the
same way as ours, at the same level. Lines about a request carry its ``Turing-Req-Id``:
appended as ``request_id=...`` in text, a ``request_id`` field in JSON. Ours may pass it
(``extra={"request_id": ...}``); any other line written while a request is answered
(the ensembler's: inline, awaited, in the thread pool, under ``--isolate``) gets it
from the stack: the pipeline's functions that call the ensembler are marked
(`answers_requests`), and the filter walks up from the line to the nearest of them and
reads its ``headers``. So a request costs nothing for this (a context variable set and
reset around each call measured ~0.4 µs a request), and a line the walk (~2 µs, of the
~40 µs that writing a line takes). The
access log (``pyfunc_ensembler.access``, one line per ``POST /ensemble``) is off
unless `Settings.access_log` turns it on, whatever the log level. Request payloads are
never logged. Records are only formatted when a line is actually written, so a level
that is off costs the hot path one ``isEnabledFor`` check.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

import orjson

from pyfunc_ensembler.contract import REQUEST_ID_HEADER
from pyfunc_ensembler.settings import Settings

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
ACCESS_LOGGER = "pyfunc_ensembler.access"

F = TypeVar("F", bound=Callable[..., Any])
# ids, not the code objects: hashing a code object hashes all of it, on every frame.
# (They are the pipeline's own functions, which live as long as the process.)
_ANSWERING: set[int] = set()


def answers_requests(function: F) -> F:
    """Mark `function` as calling the ensembler for one request, whose headers it holds
    in a local named ``headers``: a line logged below it on its stack carries their id."""
    _ANSWERING.add(id(function.__code__))
    return function


class RequestIdFilter(logging.Filter):
    """Gives a record without a ``request_id`` the id of the request being answered."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = _answering_id()
        return True


def _answering_id() -> str | None:
    # The filter runs on the thread that logs, under the call that logged (a coroutine
    # awaited by another has it as its caller frame, so awaited calls are found too).
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        if id(frame.f_code) in _ANSWERING:
            headers = frame.f_locals.get("headers")
            return headers.get(REQUEST_ID_HEADER) if headers is not None else None
        frame = frame.f_back
    return None


class TextFormatter(logging.Formatter):
    """The classic line, with ``request_id=...`` appended when the record has one."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        if request_id is None:
            return line
        # Keep the id on the first line even when a traceback follows.
        first, newline, rest = line.partition("\n")
        return f"{first} request_id={request_id}{newline}{rest}"


class JSONFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    # The root's, before the model loads: an ensembler's logger finds it already there
    # (and logging.basicConfig in its code then adds no second one).
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # The access log has its own switch: on means INFO lines even at the default
    # level (warning); off means nothing, even at debug.
    access = logging.getLogger(ACCESS_LOGGER)
    access.setLevel(logging.INFO if settings.access_log else logging.CRITICAL + 1)
