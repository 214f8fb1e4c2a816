from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pyfunc_ensembler.cli import EXTRAS, build_parser, import_extra
from pyfunc_ensembler.settings import Settings
from tests.helpers import fixture_cases, run_cli


def test_check_loads_and_answers(fixtures_dir: Path, tmp_path: Path) -> None:
    case = fixture_cases()[0]
    request = tmp_path / "request.json"
    request.write_text(json.dumps(case["body"]))
    result = run_cli(
        "check",
        str(fixtures_dir / case["ensembler"]),
        "--request",
        str(request),
        "--header",
        "Turing-Req-Id=x",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == case["turing_runner_answer"]["json"]
    assert json.loads(result.stderr.splitlines()[-1])["loader"] == "lean"


def test_check_without_request(example_model: Path) -> None:
    result = run_cli("check", str(example_model))
    assert result.returncode == 0, result.stderr


def test_check_of_a_missing_model_fails_with_one_line(tmp_path: Path) -> None:
    result = run_cli("check", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "cannot load the model" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_fails_when_the_answer_is_an_error(fixtures_dir: Path, tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text("[1, 2]")
    result = run_cli("check", str(fixtures_dir / "control_or_mean"), "--request", str(request))
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["type"] == "invalid_request"
    assert result.stderr.splitlines()[-1] == (
        "pyfunc-ensembler check: the request was answered with status 400"
    )


def test_serve_without_a_model_says_how_to_give_one() -> None:
    result = run_cli("serve")
    assert result.returncode == 2
    assert "ENSEMBLER_MODEL_URI" in result.stderr


@pytest.mark.parametrize("command", ["serve", "check"])
def test_help_explains_itself_with_examples(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout
    if command == "serve":
        for name in (
            "ENSEMBLER_PORT",
            "ENSEMBLER_WORKERS",
            "ENSEMBLER_MAX_BODY_SIZE",
            "ENSEMBLER_LOG_LEVEL",
        ):
            assert name in result.stdout


def test_every_setting_is_a_flag() -> None:
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    dests = {action.dest for action in serve._actions}
    assert {f for f in Settings.__dataclass_fields__} <= dests


def test_settings_precedence() -> None:
    env = {
        "ENSEMBLER_PORT": "9000",
        "ENSEMBLER_WORKERS": "3",
        "LOG_LEVEL": "DEBUG",
        "ENSEMBLER_DEBUG": "true",
    }
    settings = Settings.from_environ(env, workers=5)
    assert (settings.port, settings.workers, settings.log_level, settings.debug) == (
        9000,
        5,
        "debug",
        True,
    )
    assert (
        Settings.from_environ({"LOG_LEVEL": "info", "ENSEMBLER_LOG_LEVEL": "error"}).log_level
        == "error"
    )


@pytest.mark.parametrize(
    ("env", "flag", "port"),
    [
        ({}, None, 8083),
        ({"PORT": "8080"}, None, 8080),  # Knative's, when nothing of ours says otherwise
        ({"PORT": "8080", "ENSEMBLER_PORT": "9000"}, None, 9000),
        ({"PORT": "8080", "ENSEMBLER_PORT": "9000"}, 9100, 9100),
    ],
)
def test_port_precedence_flag_then_ours_then_knatives(
    env: dict[str, str], flag: int | None, port: int
) -> None:
    assert Settings.from_environ(env, port=flag).port == port


@pytest.mark.parametrize(("variable", "value"), [("PORT", "http"), ("LOG_LEVEL", "loud")])
def test_a_bad_fallback_variable_is_named_as_set(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"^{variable}='{value}'"):
        Settings.from_environ({variable: value})


@pytest.mark.parametrize(
    "env",
    [
        {"ENSEMBLER_PORT": "x"},
        {"ENSEMBLER_DEBUG": "maybe"},
        {"ENSEMBLER_LOG_LEVEL": "loud"},
        {"ENSEMBLER_BUSY_POLL": "-1"},
        {"ENSEMBLER_BUSY_POLL": "20000"},  # would hold the event loop 20 ms at a time
        {"ENSEMBLER_BUSY_POLL": "100", "ENSEMBLER_SERVER": "asgi"},  # native only
    ],
)
def test_bad_environment_values_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        Settings.from_environ(env)


def test_bad_environment_value_is_a_usage_error(example_model: Path) -> None:
    import os

    result = run_cli("check", str(example_model), env={**os.environ, "ENSEMBLER_PORT": "x"})
    assert result.returncode == 2
    assert "ENSEMBLER_PORT" in result.stderr


def test_the_cli_imports_no_heavy_library() -> None:
    # serve builds every command's parser; none of them may pull in the batch engines'
    # pyarrow/numpy or MLflow, or every server would pay for them.
    import subprocess
    import sys

    code = (
        "import sys; from pyfunc_ensembler.cli import build_parser; build_parser(); "
        "print([m for m in ('pyarrow', 'numpy', 'pandas', 'mlflow') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_check_refuses_a_header_without_a_value(example_model: Path, tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text("{}")
    result = run_cli("check", str(example_model), "--request", str(request), "--header", "oops")
    assert result.returncode == 2
    assert "NAME=VALUE" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["batch", "--ensembler", "m", "--input", "rows.parquet", "--output", "out"], "batch"),
        (["batch", "job.yaml", "--engine", "spark"], "spark"),
        (["serve", "MODEL", "--tracing", "otlp"], "tracing"),
    ],
    ids=["batch", "spark", "tracing"],
)
def test_a_missing_extra_is_a_one_line_hint(
    base_venv: Path, example_model: Path, args: list[str], extra: str
) -> None:
    # A real install of our wheel without extras, as a user's (or the base image's) is.
    python = base_venv / "bin" / "python"
    imports = [
        subprocess.run([python, "-c", f"import {m}"], capture_output=True).returncode
        for m in EXTRAS[extra]
    ]
    assert 1 in imports, f"the {extra} extra's modules are installed in the venv without extras"
    args = [str(example_model) if a == "MODEL" else a for a in args]
    result = subprocess.run(
        [base_venv / "bin" / "pyfunc-ensembler", *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert f"needs the '{extra}' extra" in result.stderr
    assert f"pip install 'pyfunc-ensembler[{extra}]'" in result.stderr


def test_a_module_missing_for_another_reason_is_not_blamed_on_an_extra() -> None:
    import_extra("batch", "pyfunc-ensembler batch", "pyfunc_ensembler.batch.local")
    with pytest.raises(ModuleNotFoundError):
        import_extra("batch", "pyfunc-ensembler batch", "no_such_module_x")


def test_usage_mistakes_of_batch_exit_2_with_one_line(tmp_path: Path) -> None:
    for args in (["batch"], ["batch", "job.yaml", "--ensembler", "m"]):
        result = run_cli(*args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("pyfunc-ensembler batch: error: give ")
        assert result.stderr.strip().count("\n") == 0
