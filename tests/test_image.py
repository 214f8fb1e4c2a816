"""`pyfunc-ensembler image`: the Python, base image and requirements a model's image needs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from pyfunc_ensembler import __version__
from pyfunc_ensembler.errors import LoadError
from pyfunc_ensembler.image import filter_requirements, plan, require_this_python
from tests.helpers import CLI, run_cli

THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def make_model(
    where: Path, flavors: dict[str, Any] | None = None, **files: str | dict[str, Any]
) -> Path:
    """A model directory with just the metadata `image` reads (nothing loadable)."""
    where.mkdir(parents=True)
    pyfunc = {"loader_module": "mlflow.pyfunc.model", "python_model": "python_model.pkl"}
    mlmodel = {"flavors": flavors if flavors is not None else {"python_function": pyfunc}}
    (where / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    for name, content in files.items():
        text = content if isinstance(content, str) else yaml.safe_dump(content)
        (where / name.replace("_yaml", ".yaml").replace("_txt", ".txt")).write_text(text)
    return where


def names(dropped: list[Any]) -> list[str]:
    return [d.requirement.split("=")[0] for d in dropped]


def test_turing_model_keeps_its_python_and_drops_turing_sdk_and_mlflow(
    fixtures_dir: Path,
) -> None:
    model = plan(str(fixtures_dir / "weighted_legacy"))
    assert model.python_version == "3.11"
    assert model.base_image == f"pyfunc-ensembler:{__version__}-py3.11"
    assert model.build_args == {"PYTHON_VERSION": "3.11", "BASE_IMAGE": model.base_image}
    assert model.requirements == []
    assert names(model.dropped) == ["turing-sdk", "mlflow"]


def test_our_own_model_keeps_its_requirements_but_not_our_package(example_model: Path) -> None:
    model = plan(str(example_model), image_repo="registry.example/ensembler")
    assert model.base_image.startswith("registry.example/ensembler:")
    assert [r.split("=")[0] for r in model.requirements] == ["cloudpickle", "pyyaml"]
    assert sorted(names(model.dropped)) == ["mlflow", "pyfunc-ensembler"]


@pytest.mark.parametrize("saved", ["3.8.10", "3.9.18", "2.7"])
def test_refuses_a_python_older_than_3_10(tmp_path: Path, saved: str) -> None:
    pyfunc = {"loader_module": "mlflow.pyfunc.model", "python_version": saved}
    make_model(tmp_path / "m", {"python_function": pyfunc})
    with pytest.raises(LoadError, match=rf"saved with Python {saved}.*re-save"):
        plan(str(tmp_path / "m"))


def test_refuses_a_model_without_the_pyfunc_flavour(tmp_path: Path) -> None:
    make_model(tmp_path / "m", {"sklearn": {"pickled_model": "model.pkl"}})
    with pytest.raises(LoadError, match=r"no python_function flavour \(it has: sklearn\)"):
        plan(str(tmp_path / "m"))


def test_refuses_a_directory_that_is_no_model(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="no MLmodel file"):
        plan(str(tmp_path))


def test_python_comes_from_python_env_then_conda_then_a_default(tmp_path: Path) -> None:
    from_env = make_model(tmp_path / "a", python_env_yaml={"python": "3.12.1"})
    assert plan(str(from_env)).python_version == "3.12"
    conda = {"dependencies": ["python=3.10.4", {"pip": ["numpy"]}]}
    from_conda = make_model(tmp_path / "b", conda_yaml=conda)
    assert plan(str(from_conda)).python_version == "3.10"
    assert plan(str(from_conda)).requirements == ["numpy"]
    unknown = plan(str(make_model(tmp_path / "c")))
    assert unknown.python_version == "3.11"
    assert any("no Python version" in note for note in unknown.notes)


def test_a_non_python_model_loader_is_noted(tmp_path: Path) -> None:
    pyfunc = {"loader_module": "mlflow.sklearn", "python_version": "3.11.2"}
    model = plan(str(make_model(tmp_path / "m", {"python_function": pyfunc})))
    assert any("mlflow.sklearn" in note for note in model.notes)


def test_requirement_files_are_followed_and_comments_dropped(tmp_path: Path) -> None:
    model = make_model(
        tmp_path / "m",
        requirements_txt=textwrap.dedent(
            """\
            # saved by MLflow
            -r more.txt
            -c constraints.txt
            scikit-learn==1.5.0  # a comment
            git+https://github.com/example/lib.git#egg=lib
            """
        ),
        **{"more.txt": "Turing_SDK>=0.16\npandas<3\n"},
    )
    result = plan(str(model))
    assert result.requirements == [
        "pandas<3",
        "scikit-learn==1.5.0",
        "git+https://github.com/example/lib.git#egg=lib",
    ]
    assert [d.requirement for d in result.dropped] == ["Turing_SDK>=0.16", "-c constraints.txt"]


def test_python_env_dependencies_are_read_without_requirements_txt(tmp_path: Path) -> None:
    env = {"python": "3.11.7", "dependencies": ["-r extra.txt", "mlflow==1.30.1"]}
    model = make_model(tmp_path / "m", python_env_yaml=env, **{"extra.txt": "orjson\n"})
    kept, dropped = plan(str(model)).requirements, plan(str(model)).dropped
    assert kept == ["orjson"]
    assert names(dropped) == ["mlflow"]


def test_filter_normalises_names() -> None:
    kept, dropped = filter_requirements(["PyFunc_Ensembler==9.9", "MLflow-Skinny", "numpy"])
    assert kept == ["numpy"]
    assert len(dropped) == 2


def test_requirements_only_install_into_the_models_python(tmp_path: Path) -> None:
    other = "3.12" if THIS_PYTHON != "3.12" else "3.11"
    pyfunc = {"loader_module": "mlflow.pyfunc.model", "python_version": f"{other}.0"}
    model = plan(str(make_model(tmp_path / "m", {"python_function": pyfunc})))
    with pytest.raises(LoadError, match=f"needs Python {other}.*PYTHON_VERSION={other}"):
        require_this_python(model)


def test_download_copies_a_local_model(fixtures_dir: Path, tmp_path: Path) -> None:
    model = plan(str(fixtures_dir / "weighted_legacy"), download=tmp_path / "copy")
    assert (tmp_path / "copy" / "artifacts" / "weights.yaml").is_file()
    assert model.python_version == "3.11"


def test_cli_prints_build_args(fixtures_dir: Path) -> None:
    result = run_cli("image", str(fixtures_dir / "weighted_legacy"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "--build-arg",
        "PYTHON_VERSION=3.11",
        "--build-arg",
        f"BASE_IMAGE=pyfunc-ensembler:{__version__}-py3.11",
    ]
    assert "left out 'turing-sdk==0.16.2.post3'" in result.stderr


def test_cli_refuses_with_one_line(tmp_path: Path) -> None:
    pyfunc = {"loader_module": "mlflow.pyfunc.model", "python_version": "3.8.10"}
    make_model(tmp_path / "m", {"python_function": pyfunc})
    result = run_cli("image", str(tmp_path / "m"), "--format", "json")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0 and "Python 3.8.10" in result.stderr


@pytest.mark.parametrize("uri", ["runs:/{run_id}/ensembler", "models:/image-test/1"])
def test_cli_downloads_an_mlflow_uri(fixtures_dir: Path, tmp_path: Path, uri: str) -> None:
    # Run from tmp_path: MLflow keeps artifacts in ./mlartifacts or ./mlruns beside it.
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    log = textwrap.dedent(
        f"""\
        import mlflow
        mlflow.set_experiment("image-test")
        with mlflow.start_run() as run:
            mlflow.log_artifacts({str(fixtures_dir / "weighted_legacy")!r}, "ensembler")
        mlflow.register_model(f"runs:/{{run.info.run_id}}/ensembler", "image-test")
        print(run.info.run_id)
        """
    )
    logged = subprocess.run(
        [sys.executable, "-c", log],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    run_id = logged.stdout.strip().splitlines()[-1]
    result = subprocess.run(
        [*CLI, "image", uri.format(run_id=run_id), "--download", "model", "--format", "json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["python_version"] == "3.11"
    assert (tmp_path / "model" / "MLmodel").is_file()
    assert (tmp_path / "model" / "artifacts" / "weights.yaml").is_file()
    # A models:/ download lands in a 0700 scratch directory; the copy must not keep that
    # mode, or an image built as root holds a model its server (uid 10001) cannot read.
    assert_readable_by_all(tmp_path / "model")


def test_a_private_local_model_is_copied_readable_by_all(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    private = tmp_path / "private"
    shutil.copytree(fixtures_dir / "weighted_legacy", private)
    for path in (private, *private.rglob("*")):
        path.chmod(0o700 if path.is_dir() else 0o600)
    plan(str(private), download=tmp_path / "copy")
    assert_readable_by_all(tmp_path / "copy")


def assert_readable_by_all(model: Path) -> None:
    for path in (model, *model.rglob("*")):
        wanted = 0o005 if path.is_dir() else 0o004
        assert path.stat().st_mode & wanted == wanted, f"{path} is {oct(path.stat().st_mode)}"
