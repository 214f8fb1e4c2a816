"""The Spark engine in local mode gives the local engine's answers (and so real time's)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pyfunc_ensembler.batch import run
from pyfunc_ensembler.batch.job import ResultType
from pyfunc_ensembler.errors import EnsembleFailed, UnreadableValue
from tests.batch.conftest import interrupt, slow_job
from tests.batch.tables import CASES, typed_table, values
from tests.batch.test_local import job
from tests.helpers import alive, children, wait_for


@pytest.mark.parametrize(("kind", "item", "route"), CASES, ids=[c[2] for c in CASES])
def test_every_result_type_as_the_local_engine(
    spark_session: Any,
    pick_model: str,
    tmp_path: Path,
    kind: ResultType,
    item: ResultType | None,
    route: str,
) -> None:
    pq.write_table(typed_table(route), tmp_path / "in.parquet")
    result = {"type": kind.value, **({"item_type": item.value} if item else {})}
    spec = job(
        {"dataset": str(tmp_path / "in.parquet"), "join_on": ["id"]},
        pick_model,
        tmp_path / "spark",
        result,
    )
    report = run(spec, "spark", session=spark_session)
    local = job(str(tmp_path / "in.parquet"), pick_model, tmp_path / "local", result)
    run(local)
    by_spark = ds.dataset(tmp_path / "spark").to_table().sort_by("id")
    assert report.rows == 4
    assert by_spark.column("result").to_pylist() == values(kind, item)
    assert by_spark.equals(ds.dataset(tmp_path / "local").to_table())


def test_joins_and_row_errors(spark_session: Any, failing_model: str, tmp_path: Path) -> None:
    import pyarrow as pa

    pq.write_table(pa.table({"id": list(range(10))}), tmp_path / "in.parquet")
    pq.write_table(pa.table({"k": [3, 7], "p": [0.5, 0.7]}), tmp_path / "p.parquet")
    spec = job(
        {"dataset": str(tmp_path / "in.parquet"), "join_on": ["id"]},
        failing_model,
        tmp_path / "o",
        {"type": "DOUBLE"},
        predictions={
            "a": {"dataset": str(tmp_path / "p.parquet"), "join_on": ["k"], "columns": ["p"]}
        },
    )
    # Our error, raised on an executor, reaches the caller as itself, not in a Java stack.
    with pytest.raises(
        EnsembleFailed,
        match=r"^partition \d+, row \d+ \(id=7\): ensemble\(\) raised ValueError: seven is unlucky",
    ):
        run(spec, "spark", session=spark_session)


def test_a_value_python_cannot_hold_is_named_by_column_and_row(
    spark_session: Any, failing_model: str, tmp_path: Path
) -> None:
    """Spark holds years past 9999; Python, which ensembles, does not."""
    import pyarrow as pa

    when = pa.array([0, 1, 2, 3, 4, 253_402_300_800_000_000, 6]).view(pa.timestamp("us"))
    pq.write_table(pa.table({"id": list(range(7)), "when": when}), tmp_path / "in.parquet")
    spec = job(str(tmp_path / "in.parquet"), failing_model, tmp_path / "o", {"type": "DOUBLE"})
    with pytest.raises(UnreadableValue) as caught:
        run(spec, "spark", session=spark_session)
    assert caught.value.message.startswith(
        "partition 0, row 5: column 'when' holds a timestamp[us] value that Python "
        "cannot hold (stored as 253402300800000000; Python's dates hold the years 1 to 9999): "
    )
    assert not (tmp_path / "o").exists()


def test_bigquery_goes_through_the_connector_with_turings_options(
    spark_session: Any, pick_model: str
) -> None:
    """What Spark is given; the connector itself cannot be fetched here (no Maven)."""
    from pyfunc_ensembler.batch import parse_job
    from pyfunc_ensembler.batch.spark import CONNECTOR_HINT, reader_options, writer_options
    from pyfunc_ensembler.errors import BatchError, InvalidJob
    from tests.batch.test_bigquery import turing_document

    spec = parse_job(turing_document("proj.dset", pick_model, "OVERWRITE"))
    assert reader_options(spec.source) == (
        "bigquery",
        {"table": "proj.dset.features"},
        None,
    )
    assert spec.source.columns == ("id", "route")  # selected after the load, as Spark prunes
    assert reader_options(spec.predictions[0].dataset) == (
        "bigquery",
        {
            "viewsEnabled": "true",
            "materializationDataset": "dset",
            "query": "SELECT key, data, is_default FROM `proj.dset.predictions_a` WHERE key >= 0",
        },
        None,
    )
    assert writer_options(spec.sink) == (
        "bigquery",
        "overwrite",
        {
            "createDisposition": "CREATE_IF_NEEDED",
            "temporaryGcsBucket": "a-bucket",
            "writeMethod": "indirect",  # files in the bucket, then one load job
            "table": "proj.dset.scores",
        },
        None,
    )
    # Rows committed as they are written would outlive a failed job: refused, with its path.
    document = turing_document("proj.dset", pick_model, "APPEND")
    document["spec"]["sink"]["bq_config"]["options"]["writeAtLeastOnce"] = "true"
    with pytest.raises(InvalidJob, match=r"spec.sink.bq_config.options.writeAtLeastOnce: the"):
        run(parse_job(document), "spark", session=spark_session)
    assert spec.spark_conf()["spark.jars.packages"].startswith("com.google.cloud.spark:")
    # This Spark has no connector: the job says so in one line, not in a Java stack.
    with pytest.raises(BatchError) as caught:
        run(spec, "spark", session=spark_session)
    assert caught.value.message == CONNECTOR_HINT


def _sink_files(sink: Path) -> dict[str, bytes]:
    return {str(p.relative_to(sink)): p.read_bytes() for p in sorted(sink.rglob("*"))}


def test_a_failed_overwrite_leaves_the_sink_as_it_was_and_a_good_one_replaces_it(
    spark_session: Any, failing_model: str, tmp_path: Path
) -> None:
    """Spark's own overwrite deletes the old output first; ours stages and swaps."""
    import pyarrow as pa

    sink = tmp_path / "out"
    sink.mkdir()
    pq.write_table(pa.table({"old": [1, 2]}), sink / "part-0.parquet")
    before = _sink_files(sink)
    pq.write_table(pa.table({"id": list(range(10))}), tmp_path / "bad.parquet")
    pq.write_table(pa.table({"id": list(range(7))}), tmp_path / "good.parquet")

    def spec(source: str) -> Any:
        return job(str(tmp_path / source), failing_model, sink, {"type": "DOUBLE"},
                   sink={"save_mode": "OVERWRITE"})  # fmt: skip

    with pytest.raises(Exception, match="seven is unlucky"):
        run(spec("bad.parquet"), "spark", session=spark_session)
    assert _sink_files(sink) == before
    assert sorted(os.listdir(tmp_path)) == ["bad.parquet", "good.parquet", "out"]  # no staging

    report = run(spec("good.parquet"), "spark", session=spark_session)
    assert report.rows == 7
    written = ds.dataset(sink).to_table().sort_by("id")
    assert written.column("result").to_pylist() == [float(i) for i in range(7)]
    assert "part-0.parquet" not in os.listdir(sink)
    assert sorted(os.listdir(tmp_path)) == ["bad.parquet", "good.parquet", "out"]


def test_the_other_save_modes_keep_their_meaning(
    spark_session: Any, failing_model: str, tmp_path: Path
) -> None:
    import pyarrow as pa

    from pyfunc_ensembler.errors import BatchError

    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "in.parquet")
    pq.write_table(pa.table({"id": list(range(10))}), tmp_path / "bad.parquet")
    sink = tmp_path / "out"

    def spec(mode: str, source: str = "in.parquet") -> Any:
        return job(str(tmp_path / source), failing_model, sink, {"type": "DOUBLE"},
                   sink={"save_mode": mode})  # fmt: skip

    assert run(spec("ERRORIFEXISTS"), "spark", session=spark_session).rows == 2  # a new sink
    first = _sink_files(sink)
    with pytest.raises(BatchError, match=r"'.*out' exists: choose save_mode"):
        run(spec("ERRORIFEXISTS"), "spark", session=spark_session)
    report = run(spec("IGNORE", "bad.parquet"), "spark", session=spark_session)
    assert report.skipped and _sink_files(sink) == first
    with pytest.raises(Exception, match="seven is unlucky"):
        run(spec("APPEND", "bad.parquet"), "spark", session=spark_session)
    assert _sink_files(sink) == first
    assert run(spec("APPEND"), "spark", session=spark_session).rows == 2
    assert all(sink.joinpath(name).read_bytes() == data for name, data in first.items())
    assert sorted(ds.dataset(sink).to_table().column("id").to_pylist()) == [1, 1, 2, 2]
    assert sorted(os.listdir(tmp_path)) == ["bad.parquet", "in.parquet", "out"]


@pytest.mark.parametrize(
    ("signum", "to_group"),
    [
        (signal.SIGINT, True),  # Ctrl-C: the terminal signals the whole process group
        (signal.SIGTERM, False),  # a deleted pod
    ],
)
def test_a_signal_stops_a_spark_job_in_one_line_and_leaves_the_sink_as_it_was(
    signum: signal.Signals, to_group: bool, tmp_path: Path
) -> None:
    job = slow_job(
        tmp_path, "--engine", "spark", "--master", "local[1]", "--output", str(tmp_path / "out"),
        "--save-mode", "overwrite", stderr=subprocess.PIPE,
    )  # fmt: skip
    spark: list[int] = []

    def begun() -> bool:
        # An executor's Python worker has begun a row: the JVM and its workers are up.
        if not list(tmp_path.glob("started.*")):
            return False
        spark.extend(_descendants(job.pid))
        return True

    stderr = interrupt(job, signum, to_group, begun)
    assert spark
    assert job.returncode == 128 + signum
    # One line from the command, and nothing from PySpark, py4j or the JVM: no Python
    # traceback, no Java stack, no log of the tasks the stop cancelled.
    assert stderr.endswith(f"\npyfunc-ensembler batch: interrupted by {signum.name}\n")
    assert stderr.count("interrupted by") == 1
    for noise in ("Traceback", "\tat ", "ERROR", "Exception"):
        assert noise not in stderr, stderr
    assert os.listdir(tmp_path / "out") == ["scores.csv"]
    assert (tmp_path / "out" / "scores.csv").read_text() == "the last run's\n"
    assert not list(tmp_path.glob(".out.*"))  # no staged output left
    # The JVM and its Python workers have ended with it.
    wait_for(lambda: not any(alive(pid) for pid in spark), every=0.05)


def _descendants(pid: int) -> list[int]:
    found = children(pid)
    return [*found, *(d for child in found for d in _descendants(child))]
