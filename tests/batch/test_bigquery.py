"""Turing's BigQuery jobs, unchanged, against a real BigQuery emulator (bqemulator) on loopback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pyfunc_ensembler.batch import parse_job, run
from pyfunc_ensembler.batch.bigquery import BigQueryTable
from pyfunc_ensembler.batch.job import BigQuery, Dataset
from pyfunc_ensembler.errors import BatchError, EnsembleFailed, InvalidJob, MissingExtra
from tests.batch.conftest import BigQueryPlace

# A job file as Turing writes it (its SDK's BigQueryDataset/BigQuerySink), names aside.
TURING_JOB = """
version: v1
kind: BatchEnsemblingJob
metadata:
  name: turing-job
  annotations:
    spark/spark.jars.packages: com.google.cloud.spark:spark-bigquery-with-dependencies_2.12:0.36.1
spec:
  source:
    dataset:
      type: BQ
      bq_config:
        table: {dataset}.features
        features: [id, route]
    join_on: [id]
  predictions:
    model_a:
      dataset:
        type: BQ
        bq_config:
          query: SELECT key, data, is_default FROM `{dataset}.predictions_a` WHERE key >= 0
          options:
            viewsEnabled: "true"
            materializationDataset: {dataset_id}
      join_on: [key]
      columns: [data, is_default]
  ensembler:
    uri: {model}
    result:
      type: LONG
      column_name: score
  sink:
    type: BQ
    columns: [id, score]
    save_mode: {save_mode}
    bq_config:
      table: {dataset}.scores
      staging_bucket: a-bucket
      options:
        createDisposition: CREATE_IF_NEEDED
"""


def turing_document(dataset: str, model: str, save_mode: str = "ERRORIFEXISTS") -> Any:
    """Turing's job file for tables in `dataset` (``project.dataset``), decoded."""
    text = TURING_JOB.format(
        dataset=dataset, dataset_id=dataset.split(".")[1], model=model, save_mode=save_mode
    )
    return yaml.safe_load(text)


def turing_job(bq: BigQueryPlace, model: str, save_mode: str = "ERRORIFEXISTS") -> Any:
    return parse_job(turing_document(bq.dataset, model, save_mode))


def fill(bq: BigQueryPlace, ids: range) -> None:
    features = [{"id": i, "route": "model_a", "unused": "x"} for i in ids]
    bq.table("features", {"id": "INT64", "route": "STRING", "unused": "STRING"}, features)
    predictions = [{"key": i, "data": i * 10, "is_default": i == 3} for i in ids]
    predictions.append({"key": -1, "data": 0, "is_default": True})  # the query leaves it out
    schema = {"key": "INT64", "data": "INT64", "is_default": "BOOL"}
    bq.table("predictions_a", schema, predictions)


def test_a_turing_job_runs_unchanged(bq: BigQueryPlace, pick_model: str, tmp_path: Path) -> None:
    fill(bq, range(5))
    report = run(turing_job(bq, pick_model))
    assert report.rows == 5
    assert bq.rows(f"{bq.dataset}.scores") == [{"id": i, "score": i * 10} for i in range(5)]
    assert bq.tables() == ["features", "predictions_a", "scores"]  # no staging, no query table
    # The same rows as files give the same answers (and so real time's: tests/batch/test_local).
    rows = [{"id": i, "route": "model_a"} for i in range(5)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "f.parquet")
    preds = [{"key": i, "data": i * 10, "is_default": i == 3} for i in range(5)]
    pq.write_table(pa.Table.from_pylist(preds), tmp_path / "p.parquet")
    document = turing_document("proj.dset", pick_model, "ERRORIFEXISTS")
    spec = document["spec"]
    spec["source"]["dataset"] = str(tmp_path / "f.parquet")
    spec["predictions"]["model_a"]["dataset"] = str(tmp_path / "p.parquet")
    spec["sink"] = {"path": str(tmp_path / "out.parquet"), "columns": ["id", "score"]}
    run(parse_job(document))
    assert pq.read_table(tmp_path / "out.parquet").to_pylist() == bq.rows(f"{bq.dataset}.scores")


def test_save_modes_and_a_failed_job_leave_the_table_as_they_should(
    bq: BigQueryPlace, pick_model: str, failing_model: str
) -> None:
    fill(bq, range(8))
    scores = f"{bq.dataset}.scores"
    run(turing_job(bq, pick_model))
    with pytest.raises(BatchError, match="exists: choose save_mode"):
        run(turing_job(bq, pick_model))
    assert run(turing_job(bq, pick_model, "IGNORE")).skipped
    run(turing_job(bq, pick_model, "APPEND"))
    assert len(bq.rows(scores)) == 16
    with pytest.raises(EnsembleFailed, match=r"row 7 \(id=7\)"):
        run(turing_job(bq, failing_model, "OVERWRITE"))
    assert len(bq.rows(scores)) == 16  # the failed overwrite left the table as it was
    run(turing_job(bq, pick_model, "OVERWRITE"))
    assert bq.rows(scores) == [{"id": i, "score": i * 10} for i in range(8)]
    assert bq.tables() == ["features", "predictions_a", "scores"]


def test_filters_and_what_the_emulator_cannot_do(bq: BigQueryPlace, pick_model: str) -> None:
    fill(bq, range(6))
    document = turing_document(bq.dataset, pick_model, "OVERWRITE")
    document["spec"]["source"]["dataset"]["bq_config"]["options"] = {"filter": "id >= 4"}
    run(parse_job(document))
    assert [r["id"] for r in bq.rows(f"{bq.dataset}.scores")] == [4, 5]
    # Without materializationDataset the query's own result table is read: BigQuery has
    # one, the emulator does not keep it, and the error says what to give.
    del document["spec"]["predictions"]["model_a"]["dataset"]["bq_config"]["options"]
    with pytest.raises(BatchError, match="materializationDataset"):
        run(parse_job(document))


def test_options_the_local_engine_cannot_honour_are_refused(pick_model: str) -> None:
    document = turing_document("proj.dset", pick_model, "APPEND")
    document["spec"]["sink"]["bq_config"]["options"]["partitionField"] = "day"
    options = document["spec"]["predictions"]["model_a"]["dataset"]["bq_config"]["options"]
    options["materializationExpirationTimeInMinutes"] = "a day"
    with pytest.raises(InvalidJob) as caught:
        run(parse_job(document))
    assert [p for p, _ in caught.value.problems] == [
        "spec.predictions.model_a.dataset.bq_config.options.materializationExpirationTimeInMinutes",
        "spec.sink.bq_config.options.partitionField",
    ]
    assert "--engine spark gives every option" in caught.value.message


@pytest.mark.parametrize("where", ["source", "sink"])
def test_without_the_bigquery_extra_a_job_says_which_to_install(
    pick_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # As if google-cloud-bigquery (and the google-api-core it brings) were not installed:
    # Python refuses an import whose sys.modules entry is None with the
    # ModuleNotFoundError an absent package gives (and `from google.cloud import
    # bigquery` must not find an earlier import's attribute).
    import google.cloud

    for module in ("google.cloud.bigquery", "google.api_core", "google.api_core.exceptions"):
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.delattr(google.cloud, "bigquery", raising=False)
    document = turing_document("proj.dset", pick_model, "APPEND")
    if where == "sink":  # a file source: the sink is the first to need the extra
        pq.write_table(pa.table({"id": [1], "route": ["a"]}), tmp_path / "in.parquet")
        document["spec"]["source"] = {"dataset": str(tmp_path / "in.parquet")}
        del document["spec"]["predictions"]
    with pytest.raises(MissingExtra) as caught:
        run(parse_job(document))
    assert "needs the 'bigquery' extra" in caught.value.message
    assert "pip install 'pyfunc-ensembler[bigquery]'" in caught.value.message
    assert "\n" not in caught.value.message


@pytest.mark.parametrize("kind", ["VIEW", "MATERIALIZED VIEW"])
def test_a_view_is_materialized_then_read_and_dropped(
    bq: BigQueryPlace, pick_model: str, kind: str
) -> None:
    fill(bq, range(6))
    view = f"{bq.dataset}.features_view"
    query = f"SELECT * FROM `{bq.dataset}.features` WHERE id < 5"
    bq.client.query(f"CREATE {kind} `{view}` AS {query}").result()
    document = turing_document(bq.dataset, pick_model, "OVERWRITE")
    source = document["spec"]["source"]["dataset"]["bq_config"]
    source["table"] = view
    source["options"] = {"viewsEnabled": "true", "filter": "id >= 1"}
    report = run(parse_job(document))
    assert report.rows == 4
    assert bq.rows(f"{bq.dataset}.scores") == [{"id": i, "score": i * 10} for i in range(1, 5)]
    # BigQuery's Storage Read API refuses a view; the emulator's reads one as a table,
    # so what proves the materialization is the query job: the features and the filter
    # in it, into the view's own dataset; the table it made is dropped.
    (made,) = materializations(bq, view)
    assert made.startswith(f"CREATE TABLE `{bq.dataset}._pyfunc_ensembler_")
    assert made.endswith(f"SELECT `id`, `route`\nFROM `{view}`\nWHERE id >= 1")
    assert bq.tables() == ["features", "features_view", "predictions_a", "scores"]
    # Or where materializationDataset says.
    scratch = f"{bq.dataset}_scratch"
    bq.client.create_dataset(scratch)
    try:
        source["options"]["materializationDataset"] = scratch.split(".")[1]
        assert run(parse_job(document)).rows == 4
        assert materializations(bq, view)[0].startswith(f"CREATE TABLE `{scratch}._pyfunc")
        assert list(bq.client.list_tables(scratch)) == []
    finally:
        bq.client.delete_dataset(scratch, delete_contents=True)


def materializations(bq: BigQueryPlace, view: str) -> list[str]:
    """The queries that materialized `view`, newest first."""
    queries = [getattr(job, "query", "") for job in bq.client.list_jobs()]
    return [q for q in queries if q.startswith("CREATE TABLE") and f"FROM `{view}`" in q]


def sink_document(source: Path, model: str, table: str, save_mode: str) -> Any:
    """A job from a Parquet file to the BigQuery `table`, ensembled by `model`.

    The sink keeps all but the struct prediction column, which the emulator cannot write.
    """
    return {
        "kind": "BatchEnsemblingJob",
        "spec": {
            "source": {"dataset": str(source)},
            "ensembler": {"uri": model, "result": {"column_name": "score", "type": "LONG"}},
            "sink": {
                "type": "BQ",
                "save_mode": save_mode,
                "columns": ["id", "route", "at", "wall", "ats", "score"],
                "bq_config": {"table": table},
            },
        },
    }


def test_nanosecond_timestamps_are_written_as_microseconds(
    bq: BigQueryPlace, pick_model: str, tmp_path: Path
) -> None:
    import datetime

    utc = datetime.timezone.utc
    nanos = [1_704_164_645_123_456_789, -1, None]  # sub-microsecond digits, before 1970
    table = pa.table(
        {
            "id": [0, 1, 2],
            "route": ["a"] * 3,
            "__predictions__a": [{"data": i} for i in range(3)],
            "at": pa.array(nanos, pa.int64()).cast(pa.timestamp("ns", "Asia/Jakarta")),
            "wall": pa.array(nanos, pa.int64()).cast(pa.timestamp("ns")),
            "ats": pa.array(
                [nanos[:2], nanos[1:2], []], pa.list_(pa.timestamp("ns", "UTC"))
            ),  # nested: floored too
        }
    )
    pq.write_table(table, tmp_path / "in.parquet")
    scores = f"{bq.dataset}.scores"
    run(parse_job(sink_document(tmp_path / "in.parquet", pick_model, scores, "OVERWRITE")))
    at = [
        datetime.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=utc),
        datetime.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=utc),  # floored, not rounded
        None,
    ]
    wall = [None if t is None else t.replace(tzinfo=None) for t in at]
    expected = [
        {"id": i, "route": "a", "at": a, "wall": w, "ats": s, "score": i}
        for i, a, w, s in zip(range(3), at, wall, [at[:2], at[1:2], []], strict=True)
    ]
    assert bq.rows(scores) == expected
    kinds = {f.name: f.field_type for f in bq.client.get_table(scores).schema}
    assert (kinds["at"], kinds["wall"], kinds["ats"]) == ("TIMESTAMP", "DATETIME", "TIMESTAMP")
    # And back through the Storage Read API: an instant with its zone, a wall-clock time.
    reader = BigQueryTable(Dataset(scores, "bigquery", None, BigQuery(table=scores)), [])
    read = pa.Table.from_batches(list(reader.batches(None, 1024)), schema=reader.schema)
    assert read.schema.field("at").type == pa.timestamp("us", "UTC")
    assert read.schema.field("wall").type == pa.timestamp("us")
    assert sorted(read.to_pylist(), key=lambda r: r["id"]) == expected
    # Appended into that table, a zone-less timestamp takes the column's kind (UTC).
    table = table.set_column(4, "wall", table.column("at").cast(pa.timestamp("ns", "UTC")))
    table = table.set_column(3, "at", table.column("wall").cast(pa.timestamp("ns")))
    pq.write_table(table.slice(0, 1), tmp_path / "more.parquet")
    run(parse_job(sink_document(tmp_path / "more.parquet", pick_model, scores, "APPEND")))
    assert bq.rows(scores)[0:2] == [expected[0], expected[0]]
