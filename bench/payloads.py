"""Request bodies of a given size, shaped like what a Turing router sends.

Three routes answer with a score each; the client's request carries a list of
feature values sized so that the whole body is about the requested number of bytes.
"""

from __future__ import annotations

import json
import random

SIZES = {"0.5KB": 512, "5KB": 5 * 1024, "500KB": 500 * 1024}
HEADERS = {"Content-Type": "application/json", "Turing-Req-Id": "bench-1"}


def body(size: int, seed: int = 0) -> bytes:
    """A router body of about `size` bytes (never under the bare envelope's size)."""
    rng = random.Random(seed)
    features: list[float] = []
    envelope = _envelope(features)
    while len(envelope) < size:
        # A feature value's JSON is ~20 bytes; fill in steps, then overshoot by < 1 value.
        missing = (size - len(envelope)) // 22 + 1
        features.extend(round(rng.random(), 15) for _ in range(missing))
        envelope = _envelope(features)
    return envelope


def _envelope(features: list[float]) -> bytes:
    routes = [
        {"route": "control", "data": {"score": 0.61, "version": "v1"}, "is_default": True},
        {"route": "model-a", "data": {"score": 0.74, "version": "v7"}, "is_default": False},
        {"route": "model-b", "data": {"score": 0.69, "version": "v3"}, "is_default": False},
    ]
    document = {
        "request": {"customer_id": "c-4711", "country": "ID", "features": features},
        "response": {
            "route_responses": routes,
            "experiment": {"configuration": {"name": "treatment-a"}, "error": ""},
            "enricher_response": {"segment": "frequent"},
        },
    }
    return json.dumps(document, separators=(",", ":")).encode()
