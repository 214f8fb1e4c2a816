from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from pyfunc_ensembler.contract import Headers
from pyfunc_ensembler.errors import LoadError
from pyfunc_ensembler.loader import load
from tests import ensemblers
from tests.helpers import fixture_cases


@pytest.mark.parametrize("force_mlflow", [False, True], ids=["lean", "mlflow"])
@pytest.mark.parametrize("case", fixture_cases(), ids=lambda c: f"{c['ensembler']}-{c['case']}")
def test_turing_fixtures_answer_as_turing_did(
    fixtures_dir: Path, case: dict[str, object], force_mlflow: bool
) -> None:
    ensembler = load(str(fixtures_dir / str(case["ensembler"])), force_mlflow=force_mlflow)
    assert ensembler.info.loader == ("mlflow" if force_mlflow else "lean")
    assert ensembler.info.calls == "ensemble"
    answer = ensembler.call(case["body"], Headers(case["headers"]))  # type: ignore[arg-type]
    expected = case["turing_runner_answer"]
    assert expected["status"] == 200  # type: ignore[index]
    assert json.loads(json.dumps(answer)) == expected["json"]  # type: ignore[index]


def test_lean_loading_imports_neither_mlflow_nor_pandas(fixtures_dir: Path) -> None:
    code = (
        "import sys; from pyfunc_ensembler.loader import load; "
        f"e = load({str(fixtures_dir / 'weighted_legacy')!r}); "
        "print(e.info.loader, *(m in sys.modules for m in ('mlflow', 'pandas', 'numpy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["lean", "False", "False", "False"]


def test_example_loads_lean_with_its_artifact(example_model: Path) -> None:
    ensembler = load(str(example_model))
    assert ensembler.info.loader == "lean"
    assert ensembler.python_model.weights["model-a"] == 2.0


def test_old_signature_without_kwargs(tmp_path: Path) -> None:
    model = ensemblers.save_model(ensemblers.NoKwargs(), tmp_path / "m")
    ensembler = load(str(model))
    body = {"request": {}, "response": {"route_responses": [{"route": "b"}, {"route": "a"}]}}
    assert ensembler.call(body, Headers()) == ["a", "b"]


def test_async_ensembler_is_marked(tmp_path: Path) -> None:
    ensembler = load(str(ensemblers.save_model(ensemblers.AsyncSum(), tmp_path / "m")))
    assert ensembler.is_async


def test_generic_pyfunc_model_is_called_through_predict(tmp_path: Path) -> None:
    class Plain(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            return {"routes": len(model_input["body"]["response"]["route_responses"])}

    mlflow.pyfunc.save_model(str(tmp_path / "plain"), python_model=Plain())
    ensembler = load(str(tmp_path / "plain"))
    assert (ensembler.info.loader, ensembler.info.calls) == ("mlflow", "predict")
    body = {"request": {}, "response": {"route_responses": [{"route": "a"}]}}
    assert ensembler.call(body, Headers()) == {"routes": 1}


def test_runs_and_models_uris(tmp_path: Path) -> None:
    from pyfunc_ensembler import log_ensembler

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with mlflow.start_run():
            info = log_ensembler("ensembler", ensemblers.NoKwargs(), registered_model_name="ens")
        body = {"request": {}, "response": {"route_responses": [{"route": "z"}]}}
        for uri in (info.model_uri, "models:/ens/1"):
            ensembler = load(uri)
            assert ensembler.info.loader == "mlflow"
            assert ensembler.call(body, Headers()) == ["z"]
    finally:
        mlflow.set_tracking_uri(None)


def copy_fixture(fixtures_dir: Path, tmp_path: Path, name: str = "weighted_legacy") -> Path:
    target = tmp_path / name
    shutil.copytree(fixtures_dir / name, target)
    return target


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="does not exist"):
        load(str(tmp_path / "nope"))


def test_directory_without_mlmodel(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="no MLmodel file"):
        load(str(tmp_path))


def test_missing_artifact(fixtures_dir: Path, tmp_path: Path) -> None:
    model = copy_fixture(fixtures_dir, tmp_path)
    (model / "artifacts" / "weights.yaml").unlink()
    with pytest.raises(LoadError, match=r"missing.*weights\.yaml"):
        load(str(model))


def test_corrupt_pickle(fixtures_dir: Path, tmp_path: Path) -> None:
    model = copy_fixture(fixtures_dir, tmp_path)
    (model / "python_model.pkl").write_bytes(b"not a pickle")
    with pytest.raises(LoadError, match="cannot be loaded"):
        load(str(model))


def test_missing_dependency(fixtures_dir: Path, tmp_path: Path) -> None:
    model = copy_fixture(fixtures_dir, tmp_path)
    # A pickle holding a class from a module that is not installed (GLOBAL opcode).
    (model / "python_model.pkl").write_bytes(b"cno_such_module_x\nC\n.")
    with pytest.raises(LoadError, match="needs the module 'no_such_module_x'"):
        load(str(model))


def test_other_python_version(fixtures_dir: Path, tmp_path: Path) -> None:
    model = copy_fixture(fixtures_dir, tmp_path)
    mlmodel = model / "MLmodel"
    mlmodel.write_text(
        re.sub(r"python_version: \S+", "python_version: 3.8.10", mlmodel.read_text())
    )
    with pytest.raises(
        LoadError, match=r"pickled by value with Python 3\.8\.10.*serve it with Python 3\.8"
    ):
        load(str(model))


def test_other_python_version_of_a_by_reference_class_only_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # tests.ensemblers is importable here, so unless it is registered for pickling by
    # value (ensemblers.save_model does that) the class is pickled by reference.
    import cloudpickle

    from pyfunc_ensembler import save_ensembler

    model = tmp_path / "m"
    by_value = ensemblers.__name__ in cloudpickle.list_registry_pickle_by_value()
    if by_value:
        cloudpickle.unregister_pickle_by_value(ensemblers)
    try:
        save_ensembler(str(model), ensemblers.NoKwargs())
    finally:
        if by_value:
            cloudpickle.register_pickle_by_value(ensemblers)
    assert b"_make_skeleton_class" not in (model / "python_model.pkl").read_bytes()
    mlmodel = model / "MLmodel"
    version = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    mlmodel.write_text(
        mlmodel.read_text().replace(f"python_version: {version}", "python_version: 3.10.4")
    )
    with caplog.at_level("WARNING", logger="pyfunc_ensembler.loader"):
        ensembler = load(str(model))
    assert ensembler.info.python_version == "3.10.4"
    assert "saved with Python 3.10.4" in caplog.text


def test_requirements_that_differ_are_warned_about(
    fixtures_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = copy_fixture(fixtures_dir, tmp_path)
    (model / "requirements.txt").write_text(
        "turing-sdk==0.16.2.post3\nmlflow==1.30.1\npyyaml==0.0.1\nno-such-package-x==1.0\n"
        "# a comment\n-r other.txt\norjson\n"
    )
    with caplog.at_level("WARNING", logger="pyfunc_ensembler.loader"):
        load(str(model))
    warning = caplog.text
    assert "pyyaml==0.0.1 (installed: " in warning
    assert "no-such-package-x==1.0 (not installed)" in warning
    assert "turing-sdk" not in warning and "mlflow" not in warning and "orjson" not in warning


def test_fixture_requirements_raise_no_warning(
    fixtures_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="pyfunc_ensembler.loader"):
        load(str(fixtures_dir / "control_or_mean"))
    assert caplog.text == ""
