"""Log set-up: one handler on stderr, configured once at start-up."""

from __future__ import annotations

import logging
import sys

from pyfunc_ensembler.settings import Settings

_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"


class _RequestIdFilter(logging.Filter):
    """Append ``request_id=…`` to lines that carry one, so they can be grepped."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = getattr(record, "request_id", None)
        if request_id is not None and not getattr(record, "_request_id_added", False):
            record.msg = f"{record.msg} request_id={request_id}"
            record._request_id_added = True
        return True


def configure(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger("pyfunc_ensembler")
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    root.propagate = False
