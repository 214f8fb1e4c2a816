"""What a saved model says: one reading, so serving (the loader) and building (image) agree."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

from pyfunc_ensembler.errors import LoadError
from pyfunc_ensembler.image import plan
from pyfunc_ensembler.loader import load
from pyfunc_ensembler.saved_model import is_remote, local_dir, python_version, requirements


@pytest.mark.parametrize(
    ("uri", "remote"),
    [
        ("runs:/abc/ensembler", True),
        ("models:/ensembler/3", True),
        ("s3://bucket/ensembler", True),
        ("file:///models/ensembler", False),
        ("./ensembler", False),
    ],
)
def test_which_uris_mlflow_resolves(uri: str, remote: bool) -> None:
    assert is_remote(uri) is remote


def test_a_local_dir_is_resolved_or_refused_with_the_reason(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    model = fixtures_dir / "weighted_legacy"
    assert local_dir(f"file://{model}") == model.resolve()
    with pytest.raises(LoadError, match="does not exist"):
        local_dir(str(tmp_path / "nope"))
    with pytest.raises(LoadError, match="no MLmodel file"):
        local_dir(str(tmp_path))


def _only_environment_files(fixtures_dir: Path, tmp_path: Path, python: str) -> Path:
    """The by-value fixture, its Python and requirements told only by its conda.yaml."""
    model = tmp_path / "model"
    shutil.copytree(fixtures_dir / "weighted_legacy", model)
    mlmodel = yaml.safe_load((model / "MLmodel").read_text())
    del mlmodel["flavors"]["python_function"]["python_version"]
    (model / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    for name in ("requirements.txt", "python_env.yaml"):
        (model / name).unlink()
    conda = {"dependencies": [f"python={python}", {"pip": ["no-such-package-x==1.0"]}]}
    (model / "conda.yaml").write_text(yaml.safe_dump(conda))
    return model


def test_loader_and_image_read_the_same_python(fixtures_dir: Path, tmp_path: Path) -> None:
    model = _only_environment_files(fixtures_dir, tmp_path, "3.8.10")
    assert python_version(model, {}) == "3.8.10"
    with pytest.raises(LoadError, match=r"pickled by value with Python 3\.8\.10"):
        load(str(model))
    with pytest.raises(LoadError, match=r"saved with Python 3\.8\.10"):
        plan(str(model))


def test_loader_and_image_read_the_same_requirements(
    fixtures_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    model = _only_environment_files(fixtures_dir, tmp_path, running)
    assert requirements(model) == ["no-such-package-x==1.0"]
    assert plan(str(model)).requirements == ["no-such-package-x==1.0"]
    with caplog.at_level("WARNING", logger="pyfunc_ensembler.loader"):
        load(str(model))
    assert "no-such-package-x==1.0 (not installed)" in caplog.text


def test_a_missing_included_file_is_left_for_pip(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("-r missing.txt\nnumpy\n")
    assert requirements(tmp_path) == ["-r missing.txt", "numpy"]
