"""The PyFunc base class and the save/log helpers, with real MLflow."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pandas
import pytest

from pyfunc_ensembler import PyFunc, __version__, save_ensembler
from tests import ensemblers

BODY = {
    "request": {"q": 1},
    "response": {
        "route_responses": [{"route": "a", "data": 1, "is_default": True}],
        "experiment": {"configuration": {"t": 1}},
    },
}


def test_pyfunc_is_an_mlflow_python_model_with_abstract_ensemble() -> None:
    assert issubclass(PyFunc, mlflow.pyfunc.PythonModel)

    class Incomplete(PyFunc):
        pass

    with pytest.raises(TypeError, match="ensemble"):
        Incomplete()  # type: ignore[abstract]


def test_predict_takes_the_real_time_dict() -> None:
    answer = ensemblers.Echo().predict(None, {"headers": {"turing-req-id": "r"}, "body": BODY})
    assert answer["input"] == {"q": 1}
    assert answer["predictions"] == {"a": {"data": 1, "is_default": True}}
    assert answer["treatment_config"] == {"configuration": {"t": 1}}
    assert answer["request_id"] == "r"


def test_predict_takes_a_batch_dataframe_row_by_row() -> None:
    frame = pandas.DataFrame(
        {"q": [1, 2], "__predictions__a": [10, 20], "__predictions__b": [0.5, 0.25]}
    )
    answers = ensemblers.Echo().predict(None, frame)
    assert list(answers.index) == [0, 1]
    assert answers[1]["input"] == {"q": 2}
    assert answers[1]["predictions"] == {"a": 20, "b": 0.25}
    assert answers[1]["treatment_config"] is None


def test_saved_model_answers_through_mlflow_predict(tmp_path: Path) -> None:
    model = ensemblers.save_model(ensemblers.NoKwargs(), tmp_path / "m")
    loaded = mlflow.pyfunc.load_model(str(model))
    assert loaded.predict({"headers": {}, "body": BODY}) == ["a"]


def test_our_package_is_in_the_saved_requirements(tmp_path: Path) -> None:
    model = ensemblers.save_model(ensemblers.NoKwargs(), tmp_path / "m", pip_requirements=["x==1"])
    lines = (model / "requirements.txt").read_text().split()
    assert f"pyfunc-ensembler=={__version__}" in lines
    assert "x==1" in lines


def test_mlflow_type_hint_cache_is_not_pickled() -> None:
    ensembler = ensemblers.NoKwargs()
    ensembler._predict_type_hints = object()  # type: ignore[attr-defined]
    assert "_predict_type_hints" not in ensembler.__getstate__()


def test_code_paths_make_a_module_class_loadable_elsewhere(tmp_path: Path) -> None:
    source = tmp_path / "src" / "my_code_path_ensembler.py"
    source.parent.mkdir()
    source.write_text(
        textwrap.dedent(
            """
            from pyfunc_ensembler import PyFunc

            class Routes(PyFunc):
                def ensemble(self, input, predictions, treatment_config, **kwargs):
                    return sorted(predictions)
            """
        )
    )
    sys.path.insert(0, str(source.parent))
    try:
        import my_code_path_ensembler

        save_ensembler(
            str(tmp_path / "m"), my_code_path_ensembler.Routes(), code_paths=[str(source)]
        )
    finally:
        sys.path.remove(str(source.parent))
        sys.modules.pop("my_code_path_ensembler", None)
    # A fresh interpreter that has never seen the module loads it from the model's code/.
    code = (
        "from pyfunc_ensembler.loader import load; from pyfunc_ensembler.contract import Headers; "
        f"e = load({str(tmp_path / 'm')!r}); "
        "body = {'request': 0, 'response': {'route_responses': [{'route': 'z'}]}}; "
        "print(e.call(body, Headers()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['z']"
