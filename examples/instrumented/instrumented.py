"""An ensembler that reports on itself: its own Prometheus metrics, log lines and spans.

It answers with the route the experiment chose (``treatment_config["configuration"]
["route"]``) and falls back to the control route when that route is missing or has no
score. The server does the rest:

- **metrics**: the ``prometheus_client`` metrics below appear on the server's
  ``/metrics``, summed over every worker (those made at import, and the histogram made
  in `initialize`);
- **logs**: lines written with `logging` during a request carry its ``Turing-Req-Id``;
- **traces**: with ``--tracing``, the ``choose-route`` span nests under the server's
  span for the request (without it, OpenTelemetry's API does nothing).

Saved by reference with its module as a code path (``save.py``), so the module is
imported when the model loads and its metrics are made then, once, before the workers
start. A class pickled by value would try to pickle the metrics instead.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram, Summary

from pyfunc_ensembler import PyFunc

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

FALLBACKS = Counter(
    "route_fallbacks", "Answers that fell back to the control route, by reason.", ["reason"]
)
MISSING = Counter("routes_missing", "Expected routes absent from the router's answer.", ["route"])
USABLE = Summary("usable_routes", "Routes with a usable score, per request.")
# livesum: the requests in ensemble() now, all live processes together; a process that
# is gone stops counting (other modes: all, liveall, min, max, sum, mostrecent, ...).
IN_PROGRESS = Gauge(
    "ensembles_in_progress", "Requests in ensemble() now.", multiprocess_mode="livesum"
)


class InstrumentedEnsembler(PyFunc):
    def __init__(
        self,
        routes: tuple[str, ...] = ("control", "model-a", "model-b"),
        control: str = "control",
        score_buckets: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9),
    ) -> None:
        self.routes = routes
        self.control = control
        self.score_buckets = score_buckets

    def initialize(self, artifacts: dict[str, str]) -> None:
        # A metric may be made here too; its buckets come from the saved configuration.
        self.scores = Histogram(
            "answered_score", "The scores answered.", ["route"], buckets=self.score_buckets
        )

    def ensemble(
        self,
        input: Any,
        predictions: Any,
        treatment_config: Any,
        enricher_response: Any = None,
        **kwargs: Any,
    ) -> Any:
        with IN_PROGRESS.track_inprogress(), tracer.start_as_current_span("choose-route") as span:
            for route in self.routes:
                if route not in predictions:
                    MISSING.labels(route).inc()
            scores = {route: s for route, p in predictions.items() if (s := _score(p)) is not None}
            USABLE.observe(len(scores))
            experiment = treatment_config or {}
            wanted = (experiment.get("configuration") or {}).get("route")
            route, reason = self._choose(wanted, scores, experiment.get("error"))
            span.set_attribute("ensembler.route", route)
            if reason is not None:
                FALLBACKS.labels(reason).inc()
                span.set_attribute("ensembler.fallback", reason)
                logger.warning("fell back to %s: %s (wanted %s)", route, reason, wanted)
            score = scores.get(route)
            if score is not None:
                self.scores.labels(route).observe(score)
            logger.info("answered with %s, score %s", route, score)
            return {"route": route, "score": score, "fallback": reason}

    def _choose(
        self, wanted: str | None, scores: dict[str, float], error: str | None
    ) -> tuple[str, str | None]:
        if error:
            return self.control, "experiment_error"
        if wanted is None:
            return self.control, "no_treatment"
        if wanted not in scores:
            return self.control, "route_without_score"
        return wanted, None


def _score(prediction: Any) -> float | None:
    data = prediction.get("data") if isinstance(prediction, dict) else None
    value = data.get("score") if isinstance(data, dict) else None
    return float(value) if isinstance(value, (int, float)) else None
