"""What users import in a notebook: the `PyFunc` base class and the functions that save it.

Importing this module imports MLflow; serving does not need it (see `loader`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cloudpickle
import mlflow.pyfunc

from pyfunc_ensembler.base import EnsemblerBase
from pyfunc_ensembler.version import __version__


class PyFunc(EnsemblerBase, mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """Base class of an ensembler: implement `ensemble`, and `initialize` if it has artifacts.

    Example::

        class Weighted(PyFunc):
            def initialize(self, artifacts):
                self.weights = yaml.safe_load(open(artifacts["weights"]))

            def ensemble(self, input, predictions, treatment_config,
                         enricher_response=None, **kwargs):
                return max(predictions, key=lambda r: self.weights.get(r, 1.0))
    """

    def __getstate__(self) -> dict[str, Any]:
        # MLflow caches predict()'s type hints on the instance while saving; pickling
        # that cache would make every load need MLflow, so it is left out.
        state = self.__dict__.copy()
        state.pop("_predict_type_hints", None)
        return state


def requirements(extra: Sequence[str] = ()) -> list[str]:
    """The pip requirements of a saved ensembler: this package, cloudpickle, then `extra`."""
    return [f"pyfunc-ensembler=={__version__}", f"cloudpickle=={cloudpickle.__version__}", *extra]


def save_ensembler(
    path: str,
    ensembler: PyFunc,
    *,
    artifacts: Mapping[str, str] | None = None,
    code_paths: Sequence[str] | None = None,
    pip_requirements: Sequence[str] = (),
    **mlflow_options: Any,
) -> None:
    """Save `ensembler` as an MLflow pyfunc model in the directory `path`.

    `artifacts` maps a name to a local file or directory; `initialize` receives the
    same names mapped to their saved copies. `code_paths` are files or directories
    put on ``sys.path`` at load. This package is always added to the requirements.
    """
    mlflow.pyfunc.save_model(
        path=path,
        **_model_options(ensembler, artifacts, code_paths, pip_requirements),
        **mlflow_options,
    )


def log_ensembler(
    name: str,
    ensembler: PyFunc,
    *,
    artifacts: Mapping[str, str] | None = None,
    code_paths: Sequence[str] | None = None,
    pip_requirements: Sequence[str] = (),
    **mlflow_options: Any,
) -> Any:
    """Log `ensembler` to the active MLflow run (started if none); return MLflow's ModelInfo.

    Its ``model_uri`` (``runs:/<run id>/<name>``) is what `pyfunc-ensembler serve` takes.
    Pass ``registered_model_name=`` to register it too (then ``models:/<name>/<version>``).
    """
    return mlflow.pyfunc.log_model(
        name=name,
        **_model_options(ensembler, artifacts, code_paths, pip_requirements),
        **mlflow_options,
    )


def _model_options(
    ensembler: PyFunc,
    artifacts: Mapping[str, str] | None,
    code_paths: Sequence[str] | None,
    pip_requirements: Sequence[str],
) -> dict[str, Any]:
    """What saving and logging both pass to MLflow."""
    return {
        "python_model": ensembler,
        "artifacts": dict(artifacts) if artifacts else None,
        "code_paths": list(code_paths) if code_paths else None,
        "pip_requirements": requirements(pip_requirements),
    }
