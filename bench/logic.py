"""The ensemble logic under test, the same for Turing's server and ours.

`save.py` mixes `BenchLogic` into either SDK's ``PyFunc`` and pickles it by value, so
both servers run exactly this code. It is deliberately ordinary: a treatment may pin a
route; otherwise the answer is the mean of the routes' scores, tagged with the default
route and the request id. Its cost does not grow with the payload (the bulk of large
payloads is the client's request, which ensemblers usually pass over), so what the
benchmark measures is the server around it. Standard library only: the lean loader
must not need anything else.
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
