"""Schemathesis hooks for the OpenAPI fuzz test (loaded through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def filter_body(context: Any, body: Any) -> bool:
    """Drop bodies that name a route twice: JSON Schema cannot say that a property is
    unique across array items, and the server rightly answers them with 400."""
    response = body.get("response") if isinstance(body, dict) else None
    routes = response.get("route_responses") if isinstance(response, dict) else None
    if not isinstance(routes, list):
        return True
    names = [r["route"] for r in routes if isinstance(r, dict) and isinstance(r.get("route"), str)]
    return len(names) == len(set(names))
