"""``pyfunc-ensembler image``: what a container image needs to serve one model.

Given a model (a directory or an MLflow URI) this works out, without loading it:

- the Python minor version to build with: an ensembler pickled *by value* only
  loads on the Python it was pickled with, so the image follows the model
  (``python_version`` in ``MLmodel``, else ``python_env.yaml``, else ``conda.yaml``);
- the base image and ``docker build`` arguments for ``docker/app.Dockerfile``;
- the model's own pip requirements, minus those this server replaces
  (`saved_model.REPLACED`);

and refuses, with the reason, a model no image of ours can serve: no MLflow
``python_function`` flavour, or a Python we do not support.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from pyfunc_ensembler import saved_model
from pyfunc_ensembler.errors import LoadError
from pyfunc_ensembler.version import __version__

SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
"""Python minors our package and its compiled dependencies are built and tested for."""

DEFAULT_PYTHON = "3.11"
DEFAULT_IMAGE_REPO = "pyfunc-ensembler"


@dataclasses.dataclass(frozen=True)
class Dropped:
    requirement: str
    reason: str


@dataclasses.dataclass(frozen=True)
class ImagePlan:
    """Everything needed to build the image of one model."""

    model_uri: str
    python_version: str
    """The minor version (``3.11``) the image must run."""
    base_image: str
    requirements: list[str]
    """The model's pip requirement lines to install beside our package."""
    dropped: list[Dropped]
    notes: list[str]

    @property
    def build_args(self) -> dict[str, str]:
        return {"PYTHON_VERSION": self.python_version, "BASE_IMAGE": self.base_image}

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "build_args": self.build_args}


def plan(
    model_uri: str, *, image_repo: str = DEFAULT_IMAGE_REPO, download: Path | None = None
) -> ImagePlan:
    """Read the model at `model_uri` (copied or downloaded to `download` first, if given)."""
    if download is None and saved_model.is_remote(model_uri):
        with tempfile.TemporaryDirectory() as scratch:
            return plan(model_uri, image_repo=image_repo, download=Path(scratch))
    path = fetch(model_uri, download) if download is not None else saved_model.local_dir(model_uri)
    notes: list[str] = []
    conf = saved_model.pyfunc_conf(path)
    if conf.get("loader_module") != "mlflow.pyfunc.model":
        notes.append(
            f"its pyfunc loader is {conf.get('loader_module')!r}, not a PythonModel: it is "
            "called through MLflow's predict({'headers': ..., 'body': ...})"
        )
    saved = saved_model.python_version(path, conf)
    if saved is None:
        notes.append(f"the model records no Python version: using Python {DEFAULT_PYTHON}")
    python = serving_python(saved or DEFAULT_PYTHON)
    kept, dropped = filter_requirements(saved_model.requirements(path))
    return ImagePlan(
        model_uri=model_uri,
        python_version=python,
        base_image=f"{image_repo}:{__version__}-py{python}",
        requirements=kept,
        dropped=dropped,
        notes=notes,
    )


def fetch(model_uri: str, target: Path) -> Path:
    """Copy a local model, or download one by MLflow URI, into the directory `target`."""
    if not saved_model.is_remote(model_uri):
        local = saved_model.local_dir(model_uri)
        if local.resolve() != target.resolve():
            _copy_readable(local, target)
        return target
    import mlflow.artifacts

    # MLflow puts a runs:/ model in a subdirectory named after its artifact path (and
    # may hand back a local store's own directory): download to scratch, copy to `target`.
    with tempfile.TemporaryDirectory() as scratch:
        try:
            where = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=scratch)
        except Exception as exc:
            message = f"cannot download '{model_uri}': {type(exc).__name__}: {exc}"
            raise LoadError(message) from exc
        if not (Path(where) / "MLmodel").is_file():
            raise LoadError(f"no MLflow model at '{model_uri}': it has no MLmodel file")
        _copy_readable(Path(where), target)
    return target


def _copy_readable(source: Path, target: Path) -> None:
    """Copy a model directory so that any user can read it (``chmod -R a+rX``).

    copytree copies modes too, and MLflow downloads into a 0700 scratch directory:
    an image built as root would then hold a model its non-root server cannot read.
    """
    shutil.copytree(source, target, dirs_exist_ok=True)
    for path in (target, *target.rglob("*")):
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        readable = 0o555 if path.is_dir() or mode & 0o111 else 0o444
        path.chmod(mode | readable)


def serving_python(saved: str) -> str:
    """The Python minor to serve a model saved with `saved`; refuse one we cannot run."""
    minor = saved_model.python_minor(saved)
    if minor in SUPPORTED_PYTHONS:
        return minor
    supported = f"{SUPPORTED_PYTHONS[0]} to {SUPPORTED_PYTHONS[-1]}"
    raise LoadError(
        f"the model was saved with Python {saved}, and images exist for Python {supported} "
        "only: a class pickled by value loads only on the Python it was pickled with, so "
        f"re-save the ensembler with Python {supported}"
    )


def require_this_python(plan: ImagePlan) -> None:
    """Refuse to install a model's requirements into a Python that cannot load it."""
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if plan.python_version != running:
        raise LoadError(
            f"the model needs Python {plan.python_version} and this is Python {running}: "
            f"build with --build-arg PYTHON_VERSION={plan.python_version} "
            f"--build-arg BASE_IMAGE={plan.base_image}"
        )


def filter_requirements(lines: list[str]) -> tuple[list[str], list[Dropped]]:
    """Split requirement lines into those to install and those the server replaces (with why)."""
    kept: list[str] = []
    dropped: list[Dropped] = []
    for line in lines:
        if line.startswith(("-c", "--constraint")):
            # A model's constraints could pin MLflow (say) under the server; its
            # requirements are applied, its constraints are not.
            dropped.append(Dropped(line, "constraints files of a model are not applied"))
            continue
        parsed = saved_model.requirement(line)
        reason = saved_model.why_replaced(parsed) if parsed is not None else None
        if reason is not None:
            dropped.append(Dropped(line, reason))
        else:
            kept.append(line)  # pip options and URLs too: pip judges them
    return kept, dropped
