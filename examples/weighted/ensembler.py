"""A realistic ensembler: a weighted average of the routes' scores, steered by the treatment.

- Weights are read once, at load, from the ``weights`` artifact (a YAML file).
- The treatment (``treatment_config["configuration"]``) may pin one route
  (``{"route": "model-a"}``) or scale the weights (``{"weight_scale": {"model-a": 2}}``).
- The request id from the ``Turing-Req-Id`` header is echoed, so answers can be traced.
"""

from __future__ import annotations

from typing import Any

import yaml

from pyfunc_ensembler import PyFunc


class WeightedEnsembler(PyFunc):
    def initialize(self, artifacts: dict[str, str]) -> None:
        with open(artifacts["weights"]) as file:
            config = yaml.safe_load(file)
        self.weights: dict[str, float] = config["weights"]
        self.default_weight: float = config.get("default_weight", 0.0)

    def ensemble(
        self,
        input: Any,
        predictions: Any,
        treatment_config: Any,
        enricher_response: Any = None,
        **kwargs: Any,
    ) -> Any:
        configuration = (treatment_config or {}).get("configuration") or {}
        scores = {
            route: score for route, p in predictions.items() if (score := _score(p)) is not None
        }
        headers = kwargs.get("headers") or {}
        answer: dict[str, Any] = {
            "request_id": headers.get("Turing-Req-Id"),
            "routes": sorted(scores),
        }
        pinned = configuration.get("route")
        if pinned in scores:
            return {**answer, "score": scores[pinned], "strategy": f"pinned:{pinned}"}
        scale = configuration.get("weight_scale") or {}
        weights = {r: self.weights.get(r, self.default_weight) * scale.get(r, 1.0) for r in scores}
        total = sum(weights.values())
        if total <= 0:
            return {**answer, "score": None, "strategy": "no-usable-route"}
        score = sum(scores[r] * w for r, w in weights.items()) / total
        return {**answer, "score": round(score, 6), "strategy": "weighted"}


def _score(prediction: Any) -> float | None:
    """A route's score: ``data.score`` in real time, or the bare column value in batch."""
    data = prediction.get("data") if isinstance(prediction, dict) else prediction
    value = data.get("score") if isinstance(data, dict) else data
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None
