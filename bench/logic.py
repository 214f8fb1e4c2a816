"""The ensemble logic under test, the same for Turing's server and ours.

`save.py` mixes `BenchLogic` into either SDK's ``PyFunc`` and pickles it by value, so
both servers run exactly this code. It is deliberately ordinary: a treatment may pin a
route; otherwise the answer is the mean of the routes' scores, tagged with the default
route and the request id. Its cost does not grow with the payload (the bulk of large
payloads is the client's request, which ensemblers usually pass over), so what the
benchmark measures is the server around it. Standard library only: the lean loader
must not need anything else (`MeteredLogic` imports ``prometheus_client`` when it loads,
for the rows that measure the ensembler's own metrics).
"""

from __future__ import annotations

from typing import Any


class BenchLogic:
    ballast: bytes | None = None

    def initialize(self, artifacts: dict[str, str]) -> None:
        # The memory benchmark's variant holds a large artifact in memory, as a model
        # with a lookup table would; the trivial variant has no artifacts.
        path = artifacts.get("ballast") if artifacts else None
        if path:
            with open(path, "rb") as file:
                self.ballast = file.read()

    def ensemble(
        self,
        input: Any,
        predictions: Any,
        treatment_config: Any,
        enricher_response: Any = None,
        **kwargs: Any,
    ) -> Any:
        headers = kwargs.get("headers") or {}
        configuration = (treatment_config or {}).get("configuration") or {}
        pinned = predictions.get(configuration.get("route"))
        if pinned is not None:
            return pinned["data"]
        scores = [
            p["data"]["score"] for p in predictions.values() if isinstance(p.get("data"), dict)
        ]
        default = next((route for route, p in predictions.items() if p.get("is_default")), None)
        return {
            "request_id": headers.get("Turing-Req-Id"),
            "default_route": default,
            "score": sum(scores) / len(scores) if scores else None,
        }


class MeteredLogic(BenchLogic):
    """`BenchLogic` with ``prometheus_client`` metrics of its own, made when it loads
    (multiprocess mode, set up by the server by then) and left alone: what importing
    ``prometheus_client`` and making metrics costs a request, if anything."""

    def initialize(self, artifacts: dict[str, str]) -> None:
        super().initialize(artifacts)
        # Imported here: the other variants must not need it.
        from prometheus_client import Counter, Histogram

        self.answers = Counter("bench_answers", "Answers, by default route.", ["default_route"])
        self.scores = Histogram("bench_score", "The scores answered.", buckets=(0.25, 0.5, 0.75))


class CountingLogic(MeteredLogic):
    """`MeteredLogic` that updates both of its metrics on every request."""

    def ensemble(
        self,
        input: Any,
        predictions: Any,
        treatment_config: Any,
        enricher_response: Any = None,
        **kwargs: Any,
    ) -> Any:
        answer = super().ensemble(input, predictions, treatment_config, enricher_response, **kwargs)
        self.answers.labels(str(answer.get("default_route"))).inc()
        score = answer.get("score")
        if isinstance(score, float):
            self.scores.observe(score)
        return answer
