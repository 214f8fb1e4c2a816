from __future__ import annotations

import pytest

from pyfunc_ensembler.batch.job import OnInvalid, ResultType, SaveMode, parse_job
from pyfunc_ensembler.errors import InvalidJob

GOOD = {
    "kind": "BatchEnsemblingJob",
    "metadata": {"name": "j", "annotations": {"spark/spark.master": "local[1]", "team": "x"}},
    "spec": {
        "source": {"dataset": {"path": "in/*.csv"}, "join_on": ["id"]},
        "predictions": {"a": {"dataset": "a.jsonl", "join_on": ["key"], "columns": ["p"]}},
        "ensembler": {
            "uri": "m",
            "result": {"column_name": "r", "type": "array", "item_type": "long"},
        },
        "sink": {"path": "out", "save_mode": "OVERWRITE"},
    },
}


def test_a_good_job() -> None:
    job = parse_job(GOOD)
    assert job.source.format == "csv" and job.predictions[0].dataset.format == "jsonl"
    assert job.result.type is ResultType.ARRAY and job.result.item_type is ResultType.LONG
    assert job.result.on_invalid is OnInvalid.FAIL
    assert job.sink.format == "parquet" and job.sink.save_mode is SaveMode.OVERWRITE
    assert job.spark_conf() == {"spark.master": "local[1]"}


def test_every_problem_is_listed_with_its_path() -> None:
    bad = {
        "kind": "Other",
        "spec": {
            "source": {"dataset": {"path": "a.txt"}, "join_on": ["id"]},
            "predictions": {"m": {"join_on": ["x", "y"], "columns": "p"}},
            "ensembler": {"result": {"type": "ARAY", "column_name": "__predictions__r"}},
            "sink": {"path": "o", "save_mode": "sometimes", "extra": 1},
        },
    }
    with pytest.raises(InvalidJob) as caught:
        parse_job(bad)
    assert {path for path, _ in caught.value.problems} == {
        "kind",
        "spec.source.dataset.format",
        "spec.predictions.m.dataset",
        "spec.predictions.m.join_on",
        "spec.ensembler.uri",
        "spec.ensembler.result.column_name",
        "spec.ensembler.result.type",
        "spec.sink.extra",
        "spec.sink.save_mode",
    }
    assert "spec.sink.save_mode: 'sometimes' is not one of" in caught.value.message


def test_turings_bigquery_datasets_and_sink() -> None:
    from pyfunc_ensembler.batch.job import BIGQUERY

    job = parse_job(
        {
            "spec": {
                "source": {
                    "dataset": {
                        "type": "BQ",
                        "bq_config": {"table": "my-proj.ds.t", "features": ["id", "x"]},
                    },
                    "join_on": ["id"],
                },
                "predictions": {
                    "a": {
                        "dataset": {
                            "type": "BQ",
                            "bq_config": {"query": "SELECT 1", "options": {"viewsEnabled": True}},
                        },
                        "join_on": ["id"],
                        "columns": ["p"],
                    }
                },
                "ensembler": {"uri": "m", "result": {"column_name": "r", "type": "DOUBLE"}},
                "sink": {
                    "type": "BQ",
                    "save_mode": "APPEND",
                    "bq_config": {"table": "my-proj.ds.out", "staging_bucket": "b"},
                },
            }
        }
    )
    assert job.source.format == BIGQUERY and job.source.columns == ("id", "x")
    assert job.predictions[0].dataset.path == "(query)"
    assert job.predictions[0].dataset.bigquery.options == {"viewsEnabled": "true"}  # type: ignore[union-attr]
    assert job.sink.path == "my-proj.ds.out" and job.sink.bigquery.staging_bucket == "b"  # type: ignore[union-attr]


def test_bigquery_problems_are_listed_with_their_paths() -> None:
    bad = {
        "spec": {
            "source": {"dataset": {"type": "BQ", "bq_config": {"options": {"a": [1]}}}},
            "predictions": {},
            "ensembler": {"uri": "m", "result": {"column_name": "r", "type": "DOUBLE"}},
            "sink": {"type": "GCS", "bq_config": {"table": "not a table"}, "path": "x"},
        }
    }
    with pytest.raises(InvalidJob) as caught:
        parse_job(bad)
    assert {path for path, _ in caught.value.problems} == {
        "spec.source.dataset.bq_config",
        "spec.source.dataset.bq_config.options.a",
        "spec.sink.type",
        "spec.sink.bq_config",
    }
    bad["spec"]["sink"] = {"type": "BQ", "path": "x", "bq_config": {"table": "not a table"}}
    with pytest.raises(InvalidJob) as caught:
        parse_job(bad)
    assert "spec.sink.bq_config.table: 'not a table' is not a table id" in caught.value.message
    assert "spec.sink.path: is for file sinks" in caught.value.message
