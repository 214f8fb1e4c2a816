from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest

from pyfunc_ensembler import PyFunc, save_ensembler
from tests.batch import emulators, models
from tests.helpers import free_port


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


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gcp-storage-emulator on loopback, for the whole run."""
    port = free_port()
    server = emulators.gcs(port, tmp_path_factory.mktemp("gcs")).start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto in server mode on loopback, for the whole run."""
    port = free_port()
    server = emulators.s3(port, tmp_path_factory.mktemp("s3")).start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(params=["gs", "s3"])
def bucket(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket in one of the object stores, as a URI prefix (``gs://name``)."""
    import pyarrow.fs as pafs

    scheme = request.param
    name = f"bucket-{uuid.uuid4().hex[:12]}"
    if scheme == "gs":
        endpoint = request.getfixturevalue("gcs_endpoint")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
        pafs.GcsFileSystem(
            anonymous=True, endpoint_override=endpoint[7:], scheme="http", project_id="test"
        ).create_dir(name)
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        pafs.S3FileSystem(
            endpoint_override=endpoint, region="us-east-1", allow_bucket_creation=True
        ).create_dir(name)
    return f"{scheme}://{name}"
