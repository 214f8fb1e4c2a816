"""The Turing router contract: a request body and its headers -> `ensemble` arguments.

Shared by the servers and by `PyFunc.predict`, so that both read a request the same
way Turing's own `PyFunc._ensemble_request` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from pyfunc_ensembler.errors import InvalidRequest

PREDICTION_COLUMN_PREFIX = "__predictions__"
REQUEST_ID_HEADER = "Turing-Req-Id"
"""The router's id of each request, which every log line about the request carries."""


class EnsembleArgs(NamedTuple):
    input: Any
    predictions: dict[str, Any]
    treatment_config: Any
    enricher_response: Any


def ensemble_args(body: object) -> EnsembleArgs:
    """Validate a decoded router body and map it onto the ensembler's arguments."""
    if not isinstance(body, dict):
        raise InvalidRequest(f"the body must be a JSON object, not {_json_type(body)}")
    if "request" not in body:
        raise InvalidRequest("the body has no 'request' field")
    response = body.get("response")
    if not isinstance(response, dict):
        raise InvalidRequest(f"'response' must be an object, not {_json_type(response)}")
    routes = response.get("route_responses")
    if not isinstance(routes, list):
        raise InvalidRequest(f"'response.route_responses' must be a list, not {_json_type(routes)}")
    return EnsembleArgs(
        body["request"],
        predictions_by_route(routes),
        # The router omits an empty experiment; Turing's SDK would then fail, we pass {}.
        response.get("experiment", {}),
        response.get("enricher_response"),
    )


def predictions_by_route(routes: list[Any]) -> dict[str, Any]:
    """`{route: entry without its "route" key}`, whatever order the routes came in."""
    predictions: dict[str, Any] = {}
    for index, entry in enumerate(routes):
        if not isinstance(entry, dict):
            raise InvalidRequest(f"route_responses[{index}] must be an object")
        entry = entry.copy()
        route = entry.pop("route", None)
        if not isinstance(route, str):
            raise InvalidRequest(f"route_responses[{index}] needs a string 'route'")
        if route in predictions:
            # A Go map cannot produce this, so it is a caller's mistake: refuse to guess.
            raise InvalidRequest(f"route '{route}' appears more than once in route_responses")
        predictions[route] = entry
    return predictions


_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}


def _json_type(value: object) -> str:
    if value is None:
        return "null (or missing)"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return _JSON_TYPES.get(type(value), type(value).__name__)


class Headers(dict[str, str]):
    """Request headers under canonical `Header-Case` names, as Turing's server gives them.

    A plain dict to the ensembler, but a lookup in any other case finds the header too,
    so `headers["turing-req-id"]` and `headers.get("TURING-REQ-ID")` both work.
    """

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> Headers:
        """`headers` under canonical names (a `Headers` is returned as it is)."""
        if isinstance(headers, Headers):
            return headers
        return cls({canonical_name(name): value for name, value in headers.items()})

    def __missing__(self, key: str) -> str:
        canonical = canonical_name(key)
        if canonical == key:
            raise KeyError(key)
        return self[canonical]

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        try:
            return self[key]
        except KeyError:
            return default


_canonical_cache: dict[bytes, str] = {}
_CANONICAL_CACHE_SIZE = 1024


def canonical_name(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def _canonical_raw(name: bytes) -> str:
    try:
        return _canonical_cache[name]
    except KeyError:
        canonical = canonical_name(name.decode("latin-1"))
        # Bounded: header names are attacker-chosen, the cache must not grow without end.
        if len(_canonical_cache) < _CANONICAL_CACHE_SIZE:
            _canonical_cache[name] = canonical
        return canonical


def headers_from_raw(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    """Build `Headers` from raw pairs; repeated headers join with ',' as in tornado."""
    headers = Headers()
    for raw_name, raw_value in raw:
        name = _canonical_raw(raw_name)
        value = raw_value.decode("latin-1")
        if name in headers:
            value = headers[name] + "," + value
        headers[name] = value
    return headers
