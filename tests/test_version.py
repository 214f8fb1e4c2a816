"""The version lives in one module, which the build reads; the wheel carries py.typed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyfunc_ensembler
from pyfunc_ensembler.version import __version__

_INSTALLED = """
import importlib.metadata, importlib.resources
print(importlib.metadata.version("pyfunc-ensembler"))
print(importlib.resources.files("pyfunc_ensembler").joinpath("py.typed").is_file())
"""


def test_the_package_says_the_version_module_s_version() -> None:
    assert pyfunc_ensembler.__version__ == __version__


def test_the_built_wheel_has_that_version_and_ships_py_typed(base_venv: Path) -> None:
    # A wheel built by pip from this tree, installed without extras (tests/conftest.py).
    python = base_venv / "bin" / "python"
    result = subprocess.run([python, "-c", _INSTALLED], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [__version__, "True"]
