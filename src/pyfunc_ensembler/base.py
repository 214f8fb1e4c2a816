"""The ensembler base class without MLflow: what ours and Turing's `PyFunc` become when served.

`pyfunc_ensembler.PyFunc` adds MLflow's `PythonModel` on top of this class so that
models can be saved; serving maps every pickled reference to either base class
(ours or Turing's) onto `EnsemblerBase`, so serving never needs MLflow or pandas.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

from pyfunc_ensembler.contract import PREDICTION_COLUMN_PREFIX, Headers, ensemble_args
from pyfunc_ensembler.signature import bind_ensemble

if TYPE_CHECKING:
    import pandas


class EnsemblerBase(abc.ABC):
    """Combine the answers of several routes into one.

    Subclass it (through `pyfunc_ensembler.PyFunc`), implement `ensemble`, and
    optionally `initialize` to read artifacts once at load.
    """

    PREDICTION_COLUMN_PREFIX = PREDICTION_COLUMN_PREFIX

    def load_context(self, context: Any) -> None:
        self.initialize(context.artifacts)

    def initialize(self, artifacts: dict[str, str]) -> None:  # noqa: B027 (optional hook)
        """Called once at load with `{artifact name: local path}`."""

    @abc.abstractmethod
    def ensemble(
        self,
        input: Any,
        predictions: Any,
        treatment_config: Any,
        enricher_response: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Return the final answer for one request (real time) or one row (batch).

        `input` is the client's request; `predictions` maps a route name to
        ``{"data": ..., "is_default": ...}`` (real time) or to that route's column value
        (batch); `treatment_config` is the router's ``experiment`` object (``None`` in
        batch); `kwargs["headers"]` holds the request headers.
        """

    # Unannotated on purpose: MLflow reads predict()'s type hints to infer a signature,
    # and warns at every save about a hint it cannot use.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        """MLflow's entry point: a ``{"headers", "body"}`` dict, or a batch DataFrame."""
        if isinstance(model_input, dict):
            return self._ensemble_request(model_input)
        return self._ensemble_batch(model_input)

    def _ensemble_request(self, model_input: dict[str, Any]) -> Any:
        args = ensemble_args(model_input["body"])
        headers = Headers.of(model_input.get("headers") or {})
        return bind_ensemble(self.ensemble)(*args, headers)

    def _ensemble_batch(self, frame: pandas.DataFrame) -> pandas.Series:
        import pandas

        from pyfunc_ensembler.rows import ensemble_rows

        results = ensemble_rows(bind_ensemble(self.ensemble), frame.to_dict("list"), len(frame))
        return pandas.Series(results, index=frame.index, dtype=object)
