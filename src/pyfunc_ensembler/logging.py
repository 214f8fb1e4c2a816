"""Log set-up: one handler on stderr, text or JSON lines, configured once at start-up.

Lines about a request carry its ``Turing-Req-Id`` (passed as ``extra={"request_id":
...}``): appended as ``request_id=...`` in text, a ``request_id`` field in JSON. The
access log (``pyfunc_ensembler.access``, one line per ``POST /ensemble``) is off
unless `Settings.access_log` turns it on, whatever the log level. Request payloads are
never logged. Records are only formatted when a line is actually written, so a level
that is off costs the hot path one ``isEnabledFor`` check.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson

from pyfunc_ensembler.settings import Settings

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
ACCESS_LOGGER = "pyfunc_ensembler.access"


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
    root = logging.getLogger("pyfunc_ensembler")
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    root.propagate = False
    # The access log has its own switch: on means INFO lines even at the default
    # level (warning); off means nothing, even at debug.
    access = logging.getLogger(ACCESS_LOGGER)
    access.setLevel(logging.INFO if settings.access_log else logging.CRITICAL + 1)
