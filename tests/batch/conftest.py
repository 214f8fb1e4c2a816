from __future__ import annotations

from pathlib import Path

import cloudpickle
import pytest

from pyfunc_ensembler import PyFunc, save_ensembler
from tests.batch import models


def save(ensembler: PyFunc, target: Path) -> str:
    cloudpickle.register_pickle_by_value(models)
    save_ensembler(str(target), ensembler)
    return str(target)


@pytest.fixture(scope="session")
def pick_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save(models.Pick(), tmp_path_factory.mktemp("pick") / "model")


@pytest.fixture(scope="session")
def failing_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save(models.FailsOnSeven(), tmp_path_factory.mktemp("fails") / "model")


@pytest.fixture(scope="session")
def spark_session():  # type: ignore[no-untyped-def]
    """One local Spark for the whole run: starting it takes seconds."""
    pyspark = pytest.importorskip("pyspark.sql")
    from pyfunc_ensembler.batch.job import parse_job
    from pyfunc_ensembler.batch.spark import build_session

    job = parse_job(
        {
            "spec": {
                "source": {"dataset": "x.parquet"},
                "ensembler": {"uri": "x", "result": {"column_name": "r", "type": "JSON"}},
                "sink": {"path": "out"},
            }
        }
    )
    session = build_session(
        job,
        "local[2]",
        {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"},
    )
    assert isinstance(session, pyspark.SparkSession)
    yield session
    session.stop()
