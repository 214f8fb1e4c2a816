"""The local engine, and the promise that batch answers what real time answers for a row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pyfunc_ensembler.batch import parse_job, run, short_job
from pyfunc_ensembler.batch.job import ResultType
from pyfunc_ensembler.core import Core
from pyfunc_ensembler.errors import BatchError, EnsembleFailed
from pyfunc_ensembler.loader import load
from tests.batch.tables import CASES, router_body, typed_table, values
from tests.helpers import fixture_cases, run_cli


def job(source: Any, uri: str, out: Path, result: dict[str, Any], **spec: Any) -> Any:
    """A job document; a string `source` is the path of a source without keys."""
    return parse_job(
        {
            "kind": "BatchEnsemblingJob",
            "spec": {
                "source": {"dataset": source} if isinstance(source, str) else source,
                "ensembler": {"uri": uri, "result": {"column_name": "result", **result}},
                "sink": {"path": str(out), **spec.pop("sink", {})},
                **spec,
            },
        }
    )


def real_time(uri: str, row: dict[str, Any]) -> Any:
    status, body = Core(load(uri)).handle(orjson.dumps(router_body(row)), [])
    assert status == 200, body
    return orjson.loads(body)


@pytest.mark.parametrize(("kind", "item", "route"), CASES, ids=[c[2] for c in CASES])
def test_every_result_type_answers_as_real_time(
    pick_model: str, tmp_path: Path, kind: ResultType, item: ResultType | None, route: str
) -> None:
    table = typed_table(route)
    pq.write_table(table, tmp_path / "in.parquet")
    result = {"type": kind.value, **({"item_type": item.value} if item else {})}
    report = run(job(str(tmp_path / "in.parquet"), pick_model, tmp_path / "out", result))
    written = ds.dataset(tmp_path / "out").to_table()
    assert report.rows == 4 and report.nulled == 0
    assert written.column("result").to_pylist() == values(kind, item)
    assert written.column("result").to_pylist() == [
        real_time(pick_model, r) for r in table.to_pylist()
    ]


def test_fixtures_answer_as_turing_and_as_real_time(fixtures_dir: Path, tmp_path: Path) -> None:
    """Turing's own ensemblers; the route column is the struct {data, is_default}."""
    for index, case in enumerate(fixture_cases()):
        body, uri = case["body"], str(fixtures_dir / case["ensembler"])
        row = dict(body["request"])
        for entry in body["response"]["route_responses"]:
            row[f"__predictions__{entry['route']}"] = {
                "data": entry["data"],
                "is_default": entry["is_default"],
            }
        pq.write_table(pa.Table.from_pylist([row, row]), tmp_path / f"{index}.parquet")
        out = tmp_path / f"{index}.jsonl"
        run(job(str(tmp_path / f"{index}.parquet"), uri, out, {"type": "JSON"}))
        answers = [json.loads(line)["result"] for line in out.read_text().splitlines()]
        # Batch passes treatment_config=None, as Turing's batch does; real time without an
        # experiment passes {}: these ensemblers treat both alike.
        without_experiment = {**body, "response": {**body["response"], "experiment": {}}}
        status, expected = Core(load(uri)).handle(orjson.dumps(without_experiment), [])
        assert status == 200
        assert [json.loads(a) for a in answers] == [orjson.loads(expected)] * 2, case["case"]
        if case["body"]["response"]["experiment"]["configuration"]["name"] != "choose_the_control":
            assert json.loads(answers[0]) == case["turing_runner_answer"]["json"]


def test_joins_globs_formats_and_sink_columns(pick_model: str, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    rows = [{"id": i, "route": "a"} for i in range(6)]
    for part in range(2):  # a directory of part files, as Spark writes
        pq.write_table(
            pa.Table.from_pylist(rows[part * 3 : part * 3 + 3]),
            tmp_path / "src" / f"part-{part}.parquet",
        )
    (tmp_path / "src" / "_SUCCESS").write_text("")
    preds = "\n".join(
        json.dumps({"key": i, "data": i * 10, "is_default": False}) for i in (5, 1, 3, 9, 0, 2, 4)
    )
    (tmp_path / "a.jsonl").write_text(preds + "\n")
    spec = job(
        {"dataset": {"path": str(tmp_path / "src")}, "join_on": ["id"]},
        pick_model,
        tmp_path / "out.csv",
        {"type": "LONG", "on_invalid": "null"},
        predictions={
            "a": {
                "dataset": str(tmp_path / "*.jsonl"),
                "join_on": ["key"],
                "columns": ["data", "is_default"],
            }
        },
        sink={"columns": ["id", "result"]},
    )
    report = run(spec)
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == '"id","result"'
    # Source order kept; the key 9, absent from the source, is not joined.
    assert lines[1:] == ["0,0", "1,10", "2,20", "3,30", "4,40", "5,50"]
    assert report.nulled == 0 and report.rows == 6


def test_save_modes(pick_model: str, tmp_path: Path) -> None:
    pq.write_table(typed_table("long"), tmp_path / "in.parquet")
    out = tmp_path / "out"

    def go(mode: str) -> Any:
        spec = short_job(
            pick_model, str(tmp_path / "in.parquet"), str(out), result_type="LONG", save_mode=mode
        )
        return run(spec)

    go("errorifexists")
    with pytest.raises(BatchError, match="exists"):
        go("errorifexists")
    assert go("ignore").skipped
    go("append")
    assert ds.dataset(out).count_rows() == 8
    go("overwrite")
    assert ds.dataset(out).count_rows() == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_a_value_that_does_not_fit_names_the_row_or_becomes_null(
    pick_model: str, tmp_path: Path
) -> None:
    pq.write_table(typed_table("string"), tmp_path / "in.parquet")
    failing = short_job(
        pick_model, str(tmp_path / "in.parquet"), str(tmp_path / "a"), result_type="DOUBLE"
    )
    with pytest.raises(
        BatchError, match=r"row 0: the ensembler answered 'a', which is not a DOUBLE"
    ):
        run(failing)
    assert not (tmp_path / "a").exists()
    nulling = short_job(
        pick_model,
        str(tmp_path / "in.parquet"),
        str(tmp_path / "b.parquet"),
        result_type="DOUBLE",
        on_invalid="null",
    )
    report = run(nulling)
    assert report.nulled == 3  # "a", "é", "" (the null stays a null, uncounted)
    assert pq.read_table(tmp_path / "b.parquet").column("result").null_count == 4


def test_an_ensembler_that_raises_names_the_row_and_its_keys(
    failing_model: str, tmp_path: Path
) -> None:
    pq.write_table(pa.table({"id": list(range(10))}), tmp_path / "in.parquet")
    spec = job(
        {"dataset": str(tmp_path / "in.parquet"), "join_on": ["id"]},
        failing_model,
        tmp_path / "o",
        {"type": "DOUBLE"},
    )
    with pytest.raises(
        EnsembleFailed, match=r"row 7 \(id=7\): ensemble\(\) raised ValueError: seven is unlucky"
    ):
        run(spec, batch_size=4)


def test_duplicate_prediction_keys_are_refused(pick_model: str, tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "in.parquet")
    pq.write_table(pa.table({"id": [1, 1], "p": [0.1, 0.2]}), tmp_path / "p.parquet")
    spec = job(
        {"dataset": str(tmp_path / "in.parquet"), "join_on": ["id"]},
        pick_model,
        tmp_path / "o",
        {"type": "DOUBLE"},
        predictions={
            "a": {"dataset": str(tmp_path / "p.parquet"), "join_on": ["id"], "columns": ["p"]}
        },
    )
    with pytest.raises(BatchError) as caught:
        run(spec)
    assert caught.value.message.startswith(
        "prediction source 'a' has 1 duplicate keys on ['id']: a left join would repeat "
        "source rows (Turing's SQL join does, silently)"
    )


def test_an_ensembler_that_requires_enricher_response_gets_none(tmp_path: Path) -> None:
    from tests.batch import models
    from tests.batch.conftest import save

    uri = save(models.RequiresEnricher(), tmp_path / "model")
    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "in.parquet")
    run(short_job(uri, str(tmp_path / "in.parquet"), str(tmp_path / "o.parquet"),
                  result_type="BOOLEAN"))  # fmt: skip
    assert pq.read_table(tmp_path / "o.parquet").column("result").to_pylist() == [True, True]


def test_a_source_that_has_the_result_column_is_refused(pick_model: str, tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": [1], "result": [0.5]}), tmp_path / "in.parquet")
    spec = short_job(pick_model, str(tmp_path / "in.parquet"), str(tmp_path / "o"))
    with pytest.raises(BatchError, match="already has a column 'result'"):
        run(spec)


def test_struct_columns_become_the_dicts_arrow_makes() -> None:
    from pyfunc_ensembler.batch.apply import python_values

    inner = pa.array([{"x": 1}, None, {"x": None}], pa.struct([("x", pa.int64())]))
    array = pa.StructArray.from_arrays(
        [pa.array([0.5, None, 2.0]), pa.array([True, False, None]), inner],
        names=["data", "is_default", "it's"],
        mask=pa.array([False, True, False]),
    )
    for part in (array, array.slice(1), pa.array([], array.type)):
        assert python_values(part) == part.to_pylist()
    assert python_values(array)[0] == {"data": 0.5, "is_default": True, "it's": {"x": 1}}


@pytest.mark.parametrize(
    "kind",
    [
        *(pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint64()),
        *(pa.float32(), pa.float64(), pa.bool_(), pa.string(), pa.timestamp("us"), pa.float16()),
    ],
    ids=str,
)
def test_column_values_are_the_values_and_types_arrow_makes(kind: pa.DataType) -> None:
    """Numbers without nulls come from a view of the buffer; whatever the way, a row
    gets what ``to_pylist`` gives, value and type (an int stays an int, 0.1 in float32
    the double it is), sliced or not, with nulls or not."""
    from pyfunc_ensembler.batch.apply import python_values

    samples = {"bool": [True, False, True], "string": ["a", "", "é"]}
    if pa.types.is_timestamp(kind):
        raw: Any = pa.array([0, 1_500_000, 2**40], pa.int64()).cast(kind)
    elif pa.types.is_floating(kind):
        raw = pa.array([0.1, -2.5, 3e38], pa.float64()).cast(kind, safe=False)
    elif pa.types.is_integer(kind):
        low, high = (0, 2**kind.bit_width - 1) if kind.id in _UNSIGNED else (-128, 127)
        raw = pa.array([low, 7, high], kind)
    else:
        raw = pa.array(samples[str(kind)], kind)
    nulled = pa.array([raw[0].as_py(), None, raw[2].as_py()], kind)
    parts = [raw, raw.slice(1), raw.slice(1, 1), raw.slice(3), nulled, nulled.slice(1)]
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):  # no rows, no buffer at all
        parts.append(pa.Array.from_buffers(kind, 0, [None, None]))
    for part in parts:
        got = list(python_values(part))
        assert got == part.to_pylist()
        assert [type(v) for v in got] == [type(v) for v in part.to_pylist()]


_UNSIGNED = {pa.uint8().id, pa.uint16().id, pa.uint32().id, pa.uint64().id}


def test_a_parquet_job_imports_neither_pandas_nor_asyncio(pick_model: str, tmp_path: Path) -> None:
    """pandas costs a job 0.3-0.8 s of start: neither reading Parquet nor building the
    result column may import it (`pyarrow.dataset` and `pyarrow.array` both do); asyncio
    18 ms, for a synchronous ensembler that has no use of it."""
    routes = pa.array([{"data": 0.5}, {"data": None}], pa.struct([("data", pa.float64())]))
    table = pa.table({"id": [1, 2], "route": ["a", "a"], "__predictions__a": routes})
    pq.write_table(table, tmp_path / "i.parquet")
    script = (
        "import sys; from pyfunc_ensembler.batch import run, short_job; "
        f"r = run(short_job({pick_model!r}, {str(tmp_path / 'i.parquet')!r}, "
        f"{str(tmp_path / 'o.parquet')!r}, result_type='DOUBLE'), processes=2); "
        "print(r.rows, 'pandas' in sys.modules, 'asyncio' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "False", "False"]
    assert pq.read_table(tmp_path / "o.parquet").column("result").to_pylist() == [0.5, None]


@pytest.mark.parametrize(
    ("kind", "stored"),
    [
        (pa.timestamp("us"), 253_402_300_800_000_000),  # 10000-01-01: past Python's year 9999
        (pa.timestamp("ms", tz="UTC"), -62_135_596_800_001),  # just before 0001-01-01
        (pa.date32(), 3_000_000),  # a day in the year 10183
    ],
    ids=["after-9999", "before-year-1", "date"],
)
def test_a_value_python_cannot_hold_is_named_by_column_and_row(
    failing_model: str, tmp_path: Path, kind: pa.DataType, stored: int
) -> None:
    """Parquet stores such dates as plain integers; Python's datetime cannot hold them."""
    values = pa.array(
        [0, 1, 2, 3, 4, stored, 6], pa.int64() if kind.bit_width == 64 else pa.int32()
    )
    when = values.view(kind)
    pq.write_table(pa.table({"id": list(range(7)), "when": when}), tmp_path / "in.parquet")
    (tmp_path / "out.parquet").write_text("the last run's")
    done = run_cli("batch", "--ensembler", failing_model, "--input", str(tmp_path / "in.parquet"),
                   "--output", str(tmp_path / "out.parquet"), "--save-mode", "overwrite",
                   "--batch-size", "4", "--processes", "2")  # fmt: skip
    assert done.returncode == 1
    # One line, no traceback: the row, the column, the stored value, Python's own reason.
    line = (
        f"pyfunc-ensembler batch: row 5: column 'when' holds a {kind} value that Python cannot "
        f"hold (stored as {stored}; Python's dates hold the years 1 to 9999): "
    )
    assert done.stderr.startswith(line), done.stderr
    assert done.stderr.endswith("out of range; correct or filter it in the source\n")
    assert done.stderr.count("\n") == 1
    assert (tmp_path / "out.parquet").read_text() == "the last run's"
