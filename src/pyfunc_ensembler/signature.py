"""Adapt any generation of `ensemble` signature to one calling convention, once, at load.

Turing's SDK tries the newest signature and retries on `TypeError` for every request;
we read the signature once instead and build a caller that passes only what the
ensembler accepts:

- ``ensemble(self, input, predictions, treatment_config, enricher_response=None, **kwargs)``
- ``ensemble(self, input, predictions, treatment_config, **kwargs)`` (enricher in kwargs)
- ``ensemble(self, input, predictions, treatment_config)`` (oldest: no headers at all)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from pyfunc_ensembler.errors import LoadError

EnsembleCall = Callable[[Any, Any, Any, Any, Any], Any]
"""``call(input, predictions, treatment_config, enricher_response, headers)``."""

_STANDARD = ("input", "predictions", "treatment_config")
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def bind_ensemble(ensemble: Callable[..., Any]) -> EnsembleCall:
    """Return a caller for the bound method `ensemble`, whatever its generation."""
    try:
        parameters = inspect.signature(ensemble).parameters
    except (TypeError, ValueError) as exc:
        raise LoadError(f"cannot read the signature of ensemble(): {exc}") from exc
    kinds = {p.kind for p in parameters.values()}
    takes_all = inspect.Parameter.VAR_KEYWORD in kinds
    enricher = takes_all or "enricher_response" in parameters
    headers = takes_all or "headers" in parameters
    positional = [name for name, p in parameters.items() if p.kind in _POSITIONAL]
    if set(positional[:3]) == set(_STANDARD) and tuple(positional[:3]) != _STANDARD:
        return _by_keyword(ensemble, enricher, headers)
    if len(positional) < 3 and inspect.Parameter.VAR_POSITIONAL not in kinds:
        raise LoadError(
            "ensemble() must accept (input, predictions, treatment_config), "
            f"it takes ({', '.join(parameters)})"
        )
    return _by_position(ensemble, enricher, headers)


def _by_position(fn: Callable[..., Any], enricher: bool, headers: bool) -> EnsembleCall:
    # One closure per case keeps the per-request call free of dict building.
    if enricher and headers:
        return _described(
            lambda i, p, t, e, h: fn(i, p, t, enricher_response=e, headers=h),
            fn,
            "{i}, {p}, {t}, enricher_response={e}, headers={h}",
        )
    if enricher:
        return _described(
            lambda i, p, t, e, h: fn(i, p, t, enricher_response=e),
            fn,
            "{i}, {p}, {t}, enricher_response={e}",
        )
    if headers:
        return _described(
            lambda i, p, t, e, h: fn(i, p, t, headers=h), fn, "{i}, {p}, {t}, headers={h}"
        )
    return _described(lambda i, p, t, e, h: fn(i, p, t), fn, "{i}, {p}, {t}")


def _by_keyword(fn: Callable[..., Any], enricher: bool, headers: bool) -> EnsembleCall:
    def call(i: Any, p: Any, t: Any, e: Any, h: Any) -> Any:
        kwargs: dict[str, Any] = {"input": i, "predictions": p, "treatment_config": t}
        if enricher:
            kwargs["enricher_response"] = e
        if headers:
            kwargs["headers"] = h
        return fn(**kwargs)

    arguments = "input={i}, predictions={p}, treatment_config={t}"
    arguments += ", enricher_response={e}" * enricher + ", headers={h}" * headers
    return _described(call, fn, arguments)


def _described(call: EnsembleCall, fn: Callable[..., Any], arguments: str) -> EnsembleCall:
    """`call`, saying how it calls `fn`: ``call.target`` and ``call.arguments``, a format
    string over ``{i} {p} {t} {e} {h}``. Batch loops (`rows`) compile that call into
    their own code and call `fn` directly, one Python frame less per row."""
    call.target = fn  # type: ignore[attr-defined]
    call.arguments = arguments  # type: ignore[attr-defined]
    return call


def is_async(ensemble: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(ensemble)
