"""MLflow model URI -> a ready `Ensembler`.

Two ways in, the lean one first:

- **lean** (a local model directory whose pyfunc flavour holds a pickled
  `PythonModel` subclass of our `PyFunc` or Turing's): read ``MLmodel``, put its code
  on ``sys.path``, unpickle ``python_model.pkl`` with both base classes mapped onto
  `EnsemblerBase`, and call `load_context`. Neither MLflow nor pandas is imported,
  which saves seconds and ~170 MB per worker.
- **mlflow**: everything else (``runs:/``, ``models:/``, remote stores, other
  flavours, pickles that need MLflow), through ``mlflow.pyfunc.load_model``. Turing's
  SDK cannot be installed beside MLflow 3, so ``turing.ensembler`` is provided by a
  stand-in module whose ``PyFunc`` is ours.

For `PyFunc` subclasses the server calls `ensemble` directly; any other pyfunc
model is called through its ``predict({"headers": ..., "body": ...})``.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import logging
import pickle
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyfunc_ensembler import saved_model
from pyfunc_ensembler.base import EnsemblerBase
from pyfunc_ensembler.contract import Headers, ensemble_args
from pyfunc_ensembler.errors import EnsemblerError, LoadError
from pyfunc_ensembler.signature import EnsembleCall, bind_ensemble, is_async

logger = logging.getLogger("pyfunc_ensembler.loader")

BodyCall = Callable[[Any, Headers], Any]
"""``call(decoded body, headers) -> answer`` (an awaitable when `is_async`)."""

_BASE_CLASSES = {
    ("pyfunc_ensembler.sdk", "PyFunc"),
    ("turing.ensembler", "PyFunc"),
}


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    uri: str
    ensembler_class: str
    loader: str
    """``lean`` or ``mlflow``: how the model was loaded."""
    calls: str
    """``ensemble`` (called directly) or ``predict`` (through MLflow's wrapper)."""
    python_version: str | None
    load_seconds: float


@dataclasses.dataclass(frozen=True)
class Ensembler:
    """A loaded model, ready to answer: the one thing front ends and batch engines need."""

    call: BodyCall
    is_async: bool
    info: ModelInfo
    python_model: Any
    ensemble: EnsembleCall | None
    """The adapted `ensemble` of a `PyFunc` model (``None`` for other pyfunc models)."""


class _NeedsMlflow(Exception):
    """The lean path cannot load this model; MLflow's loader must."""


def load(uri: str, *, force_mlflow: bool = False) -> Ensembler:
    """Load the model at `uri`; any failure is a `LoadError` with a one-line reason."""
    started = time.perf_counter()
    try:
        if not saved_model.is_remote(uri):
            path = saved_model.local_dir(uri)
            conf = saved_model.pyfunc_conf(path)
            if "python_model" in conf:
                saved = saved_model.python_version(path, conf)
                check_python_version(saved, path / conf["python_model"])
            if not force_mlflow:
                try:
                    return _load_lean(uri, path, conf, started)
                except _NeedsMlflow:
                    pass
        return _load_mlflow(uri, started)
    except EnsemblerError:
        raise
    except Exception as exc:
        raise LoadError(_reason(exc)) from exc


def _load_lean(uri: str, path: Path, conf: dict[str, Any], started: float) -> Ensembler:
    if conf.get("loader_module") != "mlflow.pyfunc.model" or "python_model" not in conf:
        raise _NeedsMlflow
    check_requirements(path)
    if conf.get("code"):
        sys.path.insert(0, str(path / conf["code"]))
    with open(path / conf["python_model"], "rb") as file:
        model = _LeanUnpickler(file).load()
    if not isinstance(model, EnsemblerBase):
        raise _NeedsMlflow
    artifacts = {name: str(path / a["path"]) for name, a in (conf.get("artifacts") or {}).items()}
    model.load_context(
        types.SimpleNamespace(artifacts=artifacts, model_config=conf.get("model_config") or {})
    )
    return _direct(uri, model, "lean", conf.get("python_version"), started)


class _LeanUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _BASE_CLASSES:
            return EnsemblerBase
        if module == "mlflow" or module.startswith("mlflow."):
            raise _NeedsMlflow
        try:
            return super().find_class(module, name)
        except ModuleNotFoundError as exc:
            if exc.name in ("turing", "pandas", "numpy") or (exc.name or "").startswith("turing."):
                # Probably the pickle needs what the MLflow path provides (or imports).
                raise _NeedsMlflow from exc
            raise


def check_python_version(saved: str | None, pickled: Path) -> None:
    """Refuse a model whose code was pickled by value on another minor Python; warn otherwise.

    Bytecode changes with every minor release, so a class pickled by value (a notebook
    class) fails to load, or worse, on another one, with errors such as
    ``code() argument 13 must be str``. A class pickled by reference only needs its
    module to import, so for those a warning is enough.
    """
    if not saved:
        return
    saved_minor = saved_model.python_minor(saved)
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if saved_minor == running:
        return
    if _pickles_code_by_value(pickled):
        raise LoadError(
            f"the ensembler's code was pickled by value with Python {saved} and this is "
            f"Python {running}: serve it with Python {saved_minor}"
        )
    logger.warning(
        "the model was saved with Python %s and this is Python %s; its class is pickled "
        "by reference, so it should load, but test it",
        saved,
        running,
    )


def _pickles_code_by_value(pickled: Path) -> bool:
    # cloudpickle rebuilds by-value functions and classes through these helpers.
    data = pickled.read_bytes()
    return b"_make_function" in data or b"_make_skeleton_class" in data


def check_requirements(path: Path) -> list[str]:
    """Warn, once, about requirements of the model that this environment lacks.

    Those serving replaces (Turing's SDK by our base class, MLflow by the one the
    server has) are not looked for.
    """
    mismatches = [m for line in saved_model.requirements(path) if (m := _mismatch(line))]
    if mismatches:
        logger.warning(
            "the model's requirements differ from this environment: %s", "; ".join(mismatches)
        )
    return mismatches


def _mismatch(line: str) -> str | None:
    wanted = saved_model.requirement(line)
    if wanted is None or saved_model.why_replaced(wanted) is not None:
        return None
    try:
        installed = importlib.metadata.version(wanted.name)
    except importlib.metadata.PackageNotFoundError:
        return f"{wanted} (not installed)"
    if wanted.specifier.contains(installed, prereleases=True):
        return None
    return f"{wanted} (installed: {installed})"


def _load_mlflow(uri: str, started: float) -> Ensembler:
    _provide_turing_sdk()
    import mlflow.pyfunc

    pyfunc_model = mlflow.pyfunc.load_model(uri)
    try:
        python_model = pyfunc_model.unwrap_python_model()
    except Exception:
        python_model = None
    version = (
        getattr(pyfunc_model.metadata, "flavors", {})
        .get("python_function", {})
        .get("python_version")
    )
    if isinstance(python_model, EnsemblerBase):
        return _direct(uri, python_model, "mlflow", version, started)
    predict = pyfunc_model.predict

    def call(body: Any, headers: Headers) -> Any:
        return predict({"headers": headers, "body": body})

    kind = type(python_model if python_model is not None else pyfunc_model)
    info = ModelInfo(
        uri, _qualname(kind), "mlflow", "predict", version, time.perf_counter() - started
    )
    return Ensembler(call, False, info, python_model, None)


def _direct(
    uri: str, model: EnsemblerBase, loader: str, version: str | None, started: float
) -> Ensembler:
    ensemble = bind_ensemble(model.ensemble)

    def call(body: Any, headers: Headers) -> Any:
        return ensemble(*ensemble_args(body), headers)

    info = ModelInfo(
        uri, _qualname(type(model)), loader, "ensemble", version, time.perf_counter() - started
    )
    return Ensembler(call, is_async(model.ensemble), info, model, ensemble)


def _provide_turing_sdk() -> None:
    """Make ``turing.ensembler.PyFunc`` importable (as ours) when turing-sdk is absent."""
    if "turing.ensembler" in sys.modules or importlib.util.find_spec("turing") is not None:
        return
    from pyfunc_ensembler.sdk import PyFunc

    package = types.ModuleType("turing")
    package.__path__ = []
    module = types.ModuleType("turing.ensembler")
    module.PyFunc = PyFunc  # type: ignore[attr-defined]
    module.EnsemblerBase = EnsemblerBase  # type: ignore[attr-defined]
    package.ensembler = module  # type: ignore[attr-defined]
    sys.modules.update({"turing": package, "turing.ensembler": module})


def _qualname(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _reason(exc: BaseException) -> str:
    """One line saying why a model failed to load, for people, not a traceback."""
    if isinstance(exc, ModuleNotFoundError):
        return f"the ensembler needs the module '{exc.name}', which is not installed here"
    if isinstance(exc, FileNotFoundError):
        return f"a file the model needs is missing: {exc.filename or exc}"
    if isinstance(exc, TypeError) and "code" in str(exc):
        return f"the pickled ensembler was made by another Python version ({exc})"
    if isinstance(exc, (pickle.UnpicklingError, EOFError, AttributeError)):
        return f"the pickled ensembler cannot be loaded: {type(exc).__name__}: {exc}"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first_line}".rstrip(": ")
