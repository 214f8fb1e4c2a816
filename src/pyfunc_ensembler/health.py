"""The cheap GET endpoints every front end shares: probes, metrics, the OpenAPI document.

They are answered in `Core.route` from the request line alone, and are not counted in
the request metrics, so a probe every second does not drown the real traffic.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

from pyfunc_ensembler.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from pyfunc_ensembler.metrics import Metrics

Answer = tuple[int, bytes]
ExtraHeaders = tuple[tuple[bytes, bytes], ...]
Decided = tuple[Answer, ExtraHeaders]

HEALTHZ = "/healthz"
READYZ = "/readyz"
METRICS = "/metrics"
OPENAPI = "/openapi.json"

_ALIVE: Decided = ((200, b'{"status":"alive"}'), ())
_READY: Decided = ((200, b'{"status":"ready"}'), ())
_DRAINING: Decided = ((503, b'{"status":"shutting_down"}'), ())
_TEXT = ((b"content-type", METRICS_CONTENT_TYPE.encode()),)


class Readiness:
    """Ready once the model is loaded in this worker; not ready again once it drains.

    The model is loaded before a worker serves at all, so a worker that can answer is
    loaded; `drain` is the one hook a front end calls when a shutdown begins.
    """

    def __init__(self) -> None:
        self.draining = False

    def drain(self) -> None:
        self.draining = True


def endpoints(readiness: Readiness, metrics: Metrics) -> dict[str, Callable[[], Decided]]:
    """``{path: answer}`` for the GET endpoints; each call is cheap."""
    openapi = resources.files("pyfunc_ensembler").joinpath("openapi.json").read_bytes()

    def ready() -> Decided:
        return _DRAINING if readiness.draining else _READY

    return {
        HEALTHZ: lambda: _ALIVE,
        READYZ: ready,
        METRICS: lambda: ((200, metrics.render()), _TEXT),
        OPENAPI: lambda: ((200, openapi), ()),
    }
