"""Serve MLflow pyfunc ensemblers for Turing routers in real time, and run them in batch.

Public API::

    from pyfunc_ensembler import PyFunc, save_ensembler, log_ensembler

`PyFunc`, `save_ensembler` and `log_ensembler` import MLflow on first use, so that
serving, which needs none of them, starts fast and stays small.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyfunc_ensembler.base import EnsemblerBase
from pyfunc_ensembler.errors import (
    EnsembleFailed,
    EnsemblerError,
    InvalidRequest,
    LoadError,
    RequestError,
)
from pyfunc_ensembler.version import __version__

__all__ = [
    "EnsembleFailed",
    "EnsemblerBase",
    "EnsemblerError",
    "InvalidRequest",
    "LoadError",
    "PyFunc",
    "RequestError",
    "__version__",
    "log_ensembler",
    "save_ensembler",
]

if TYPE_CHECKING:
    from pyfunc_ensembler.sdk import PyFunc, log_ensembler, save_ensembler

_SDK_NAMES = ("PyFunc", "save_ensembler", "log_ensembler")


def __getattr__(name: str) -> Any:
    if name in _SDK_NAMES:
        from pyfunc_ensembler import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'pyfunc_ensembler' has no attribute '{name}'")
