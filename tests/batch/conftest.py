from __future__ import annotations

import functools
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from pyfunc_ensembler import PyFunc, save_ensembler
from tests.batch import emulators, models
from tests.helpers import CLI, free_port, wait_for


def save(ensembler: PyFunc, target: Path) -> str:
    cloudpickle.register_pickle_by_value(models)
    save_ensembler(str(target), ensembler)
    return str(target)


def slow_job(tmp_path: Path, *options: str, **popen: Any) -> subprocess.Popen[str]:
    """``pyfunc-ensembler batch`` of 10,000 rows at 10 ms a row (`models.Slow`) into
    ``tmp_path/out``, a directory already holding ``scores.csv``, in a process group of
    its own, as a shell's job is; each process that ensembles makes ``tmp_path/started.<pid>``
    once it has begun a row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    model = save(models.Slow(), tmp_path / "model")
    pq.write_table(pa.table({"id": list(range(10000))}), tmp_path / "in.parquet")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "scores.csv").write_text("the last run's\n")
    return subprocess.Popen(
        [*CLI, "batch", "--ensembler", model, "--input", str(tmp_path / "in.parquet"), *options],
        env={**os.environ, "SLOW_STARTED": str(tmp_path / "started")},
        text=True,
        start_new_session=True,
        **popen,
    )


def interrupt(
    job: subprocess.Popen[str], signum: int, to_group: bool, begun: Callable[[], bool]
) -> str:
    """Once `begun()`, send `signum` to `job` (to its whole process group with `to_group`,
    as a terminal's Ctrl-C does), and wait for it to end: its stderr."""
    try:
        wait_for(lambda: begun() or job.poll() is not None, every=0.02)
        assert job.poll() is None, job.communicate()[1]
        if to_group:
            os.killpg(job.pid, signum)
        else:
            job.send_signal(signum)
        return job.communicate(timeout=120)[1]
    finally:
        job.kill()


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


# Each object store's emulator (tests/batch/emulators.py) by the scheme of its URIs;
# moto records what it is asked (the tests read it back: `Emulator.requests`).
STORES = {"gs": emulators.gcs, "s3": functools.partial(emulators.s3, record=True)}


@pytest.fixture(scope="session", params=sorted(STORES))
def store_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, emulators.Emulator]]:
    """An object store on loopback (gcp-storage-emulator, moto in server mode), kept
    while tests use it: its scheme and its server."""
    scheme = request.param
    server = STORES[scheme](free_port(), tmp_path_factory.mktemp(scheme)).start()
    yield scheme, server
    server.stop()


@pytest.fixture(scope="session")
def store_endpoint(store_server: tuple[str, emulators.Emulator]) -> tuple[str, str]:
    """The object store's scheme and its URL."""
    scheme, server = store_server
    return scheme, f"http://127.0.0.1:{server.ports[0]}"


@pytest.fixture
def store(store_server: tuple[str, emulators.Emulator]) -> emulators.Emulator:
    """The server holding `bucket`: what it was asked is in its `requests`."""
    return store_server[1]


@pytest.fixture
def bucket(store_endpoint: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket in one of the object stores, as a URI prefix (``gs://name``)."""
    import pyarrow.fs as pafs

    scheme, endpoint = store_endpoint
    name = f"bucket-{uuid.uuid4().hex[:12]}"
    if scheme == "gs":
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
        pafs.GcsFileSystem(
            anonymous=True, endpoint_override=endpoint[7:], scheme="http", project_id="test"
        ).create_dir(name)
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        pafs.S3FileSystem(
            endpoint_override=endpoint, region="us-east-1", allow_bucket_creation=True
        ).create_dir(name)
    return f"{scheme}://{name}"


BQ_PROJECT = "test-project"


@pytest.fixture(scope="session")
def bigquery_ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """bqemulator (REST + gRPC Storage Read/Write APIs) on loopback, for the whole run."""
    rest, grpc = free_port(), free_port()
    server = emulators.bigquery(rest, grpc, BQ_PROJECT, tmp_path_factory.mktemp("bq")).start()
    yield rest, grpc
    server.stop()


class BigQueryPlace:
    """A dataset of its own in the emulator, and what the tests do there."""

    def __init__(self, client: Any, dataset: str) -> None:
        self.client, self.dataset = client, dataset

    def table(self, name: str, schema: dict[str, str], rows: list[dict[str, Any]]) -> str:
        from google.cloud import bigquery

        table = f"{self.dataset}.{name}"
        fields = [bigquery.SchemaField(k, v) for k, v in schema.items()]
        self.client.create_table(bigquery.Table(table, schema=fields))
        if rows:
            assert self.client.insert_rows_json(table, rows) == []
        return table

    def rows(self, table: str, order_by: str = "id") -> list[dict[str, Any]]:
        query = f"SELECT * FROM `{table}` ORDER BY {order_by}"
        return [dict(row.items()) for row in self.client.query(query).result()]

    def tables(self) -> list[str]:
        return sorted(t.table_id for t in self.client.list_tables(self.dataset))


@pytest.fixture
def bq(bigquery_ports: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> Iterator[BigQueryPlace]:
    """The emulator's variables set, and a fresh dataset in it."""
    from pyfunc_ensembler.batch.bigquery import Clients

    rest, grpc = bigquery_ports
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", f"127.0.0.1:{rest}")
    monkeypatch.setenv("BIGQUERY_STORAGE_EMULATOR_HOST", f"127.0.0.1:{grpc}")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", BQ_PROJECT)
    client = Clients(BQ_PROJECT, {}).rest
    place = BigQueryPlace(client, f"{BQ_PROJECT}.d{uuid.uuid4().hex[:10]}")
    client.create_dataset(place.dataset)
    yield place
    client.delete_dataset(place.dataset, delete_contents=True, not_found_ok=True)
