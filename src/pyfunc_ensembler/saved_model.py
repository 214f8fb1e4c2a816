"""What a saved MLflow model says about itself, read from its files without loading it.

The loader (to serve a model) and `image` (to build a model's image) ask a model
directory the same questions: does the URI name a local directory, what does its
``python_function`` flavour say, which Python was it saved with, which pip
requirements does it list, and which of those does this server replace. They are
answered here, once, so that serving and building answer alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from pyfunc_ensembler.errors import LoadError

REPLACED = {
    "pyfunc-ensembler": "the server's own pyfunc-ensembler serves the model",
    "turing-sdk": (
        "not needed to serve: the server provides turing.ensembler.PyFunc itself "
        "(and turing-sdk cannot be installed beside MLflow 2+)"
    ),
    "mlflow": "the server keeps the MLflow it needs; a model's pin would replace it",
    "mlflow-skinny": "the server keeps the MLflow it needs; a model's pin would replace it",
}
"""Requirements a saved model may list that serving it does not install, and why."""


def is_remote(uri: str) -> bool:
    """Whether `uri` is for MLflow to resolve (``runs:/``, ``models:/``, ``s3://``, ...)."""
    return not uri.startswith("file://") and (
        "://" in uri or uri.startswith(("runs:/", "models:/"))
    )


def local_dir(uri: str) -> Path:
    """The model directory that `uri` (a path or ``file://`` URI) names, or why it is none."""
    path = Path(uri.removeprefix("file://"))
    if not path.exists():
        raise LoadError(f"no model at '{uri}': the path does not exist")
    if not (path / "MLmodel").is_file():
        raise LoadError(f"no MLflow model at '{uri}': it has no MLmodel file")
    return path.resolve()


def pyfunc_conf(path: Path) -> dict[str, Any]:
    """The ``python_function`` flavour of ``MLmodel``; refuse a model without one."""
    flavors = (_yaml(path / "MLmodel") or {}).get("flavors") or {}
    conf = flavors.get("python_function")
    if not isinstance(conf, dict):
        others = ", ".join(sorted(flavors)) or "none"
        raise LoadError(
            f"'{path}' has no python_function flavour (it has: {others}): "
            "only MLflow pyfunc models can be served"
        )
    return conf


def python_version(path: Path, conf: dict[str, Any]) -> str | None:
    """The full Python version the model was saved with, if it recorded one.

    ``python_version`` of the flavour, else ``python_env.yaml``, else ``conda.yaml``.
    """
    if conf.get("python_version"):
        return str(conf["python_version"])
    python_env = _yaml(path / "python_env.yaml")
    if isinstance(python_env, dict) and python_env.get("python"):
        return str(python_env["python"])
    for dependency in _conda_dependencies(path):
        if isinstance(dependency, str) and dependency.replace(" ", "").startswith("python="):
            return dependency.split("=", 1)[1].strip().lstrip("=")
    return None


def python_minor(version: str) -> str:
    """``3.11`` of ``3.11.7``: what by-value pickles and images must match."""
    return ".".join(version.split(".")[:2])


def requirements(path: Path) -> list[str]:
    """The model's pip requirement lines: ``requirements.txt``, else its environment files."""
    if (path / "requirements.txt").is_file():
        return _requirement_lines(path / "requirements.txt")
    python_env = _yaml(path / "python_env.yaml")
    if isinstance(python_env, dict):
        return _expand([str(d) for d in python_env.get("dependencies") or []], path)
    for dependency in _conda_dependencies(path):
        if isinstance(dependency, dict) and "pip" in dependency:
            return _expand([str(d) for d in dependency["pip"]], path)
    return []


def requirement(line: str) -> Requirement | None:
    """`line` as a requirement, or ``None`` for what pip alone judges (options, URLs)."""
    try:
        return Requirement(line)
    except InvalidRequirement:
        return None


def why_replaced(requirement: Requirement) -> str | None:
    """Why serving leaves `requirement` out (`REPLACED`), or ``None`` if it is installed."""
    return REPLACED.get(canonicalize_name(requirement.name))


def _conda_dependencies(path: Path) -> list[Any]:
    conda = _yaml(path / "conda.yaml")
    return list(conda.get("dependencies") or []) if isinstance(conda, dict) else []


def _requirement_lines(file: Path) -> list[str]:
    return _expand(file.read_text().splitlines(), file.parent)


def _expand(lines: list[str], base: Path) -> list[str]:
    """Drop comments and blank lines; inline ``-r FILE`` (relative to `base`).

    A ``-r`` of a file the model does not have stays a line, for pip to refuse.
    """
    result: list[str] = []
    for raw in lines:
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        option, _, argument = line.partition(" ")
        included = base / argument.strip()
        if option in ("-r", "--requirement") and argument.strip() and included.is_file():
            result.extend(_requirement_lines(included))
        else:
            result.append(line)
    return result


def _yaml(file: Path) -> Any:
    if not file.is_file():
        return None
    with open(file) as handle:
        return yaml.safe_load(handle)
