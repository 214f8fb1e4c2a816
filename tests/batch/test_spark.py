"""The Spark engine in local mode gives the local engine's answers (and so real time's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pyfunc_ensembler.batch import run
from pyfunc_ensembler.batch.job import ResultType
from tests.batch.tables import CASES, typed_table, values
from tests.batch.test_local import job


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
    with pytest.raises(
        Exception, match=r"row \d+ \(id=7\): ensemble\(\) raised ValueError: seven is unlucky"
    ):
        run(spec, "spark", session=spark_session)


def test_bigquery_goes_through_the_connector_with_turings_options(
    spark_session: Any, pick_model: str
) -> None:
    """What Spark is given; the connector itself cannot be fetched here (no Maven)."""
    from pyfunc_ensembler.batch import parse_job
    from pyfunc_ensembler.batch.spark import CONNECTOR_HINT, reader_options, writer_options
    from pyfunc_ensembler.errors import BatchError
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
            "table": "proj.dset.scores",
        },
        None,
    )
    assert spec.spark_conf()["spark.jars.packages"].startswith("com.google.cloud.spark:")
    # This Spark has no connector: the job says so in one line, not in a Java stack.
    with pytest.raises(BatchError) as caught:
        run(spec, "spark", session=spark_session)
    assert caught.value.message == CONNECTOR_HINT
