"""The Spark engine: the same job on any Spark master, ``local[*]`` by default.

Datasets are read and written by Spark (so any path or URI Spark reads works), the
prediction sources are left-joined on their keys, and each Arrow batch is ensembled
on the executors by the very `TableEnsembler` the local engine uses, through
``mapInArrow`` (a vectorized UDF like MLflow's ``spark_udf``, without the pandas
round trip). Executors load the model from the job's URI themselves, so on a cluster
it must be a URI they can reach (``gs://``, ``s3://``, ``models:/`` …).

The job's ``spark/<key>`` annotations are Spark configuration, e.g.
``spark/spark.executor.memory: 4g``; ``spark/spark.master`` or ``--master`` picks
the master.

BigQuery datasets and sinks go through the spark-bigquery connector
(``format("bigquery")``), with the job's ``options`` as the connector's options, as
Turing's engine does: a table is read with ``table`` (its ``features`` selected), a
query with ``query``; the sink gets ``table`` and ``temporaryGcsBucket`` (its
``staging_bucket``) and the save mode. The connector is the user's to supply, as on
Turing: ``spark/spark.jars.packages:
com.google.cloud.spark:spark-bigquery-with-dependencies_2.13:<version>``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from pyfunc_ensembler.batch.apply import TableEnsembler
from pyfunc_ensembler.batch.job import BIGQUERY, Dataset, Job, PredictionSource, Sink
from pyfunc_ensembler.batch.results import Report, arrow_type
from pyfunc_ensembler.errors import BatchError

DEFAULT_MASTER = "local[*]"
CONNECTOR_HINT = (
    "the spark-bigquery connector is not on Spark's classpath: add the annotation "
    "spark/spark.jars.packages: com.google.cloud.spark:spark-bigquery-with-dependencies_2.13:"
    "<version> to the job (or its jar to spark.jars)"
)


def run(
    job: Job,
    *,
    master: str | None = None,
    conf: dict[str, str] | None = None,
    session: Any = None,
    force_mlflow: bool = False,
    **_: Any,
) -> Report:
    """Run `job` with Spark: `session` if given, else one built from `master` and the job."""
    started = time.perf_counter()
    spark = session or build_session(job, master, conf)
    report = Report("spark", output=job.sink.path)
    try:
        frame = _read(spark, job.source, job.source.columns, job.join_on)
        for source in job.predictions:
            frame = _join(spark, frame, source, job.join_on)
    except Exception as exc:
        _explain(exc)
        raise
    ensembler = TableEnsembler(
        job.ensembler_uri, job.result, job.join_on, force_mlflow=force_mlflow
    )
    rows = spark.sparkContext.accumulator(0)
    nulled = spark.sparkContext.accumulator(0)
    schema = _with_result(frame.schema, job)
    ensembled = frame.mapInArrow(_ensemble_partition(ensembler, rows, nulled), schema)
    if job.sink.columns:
        ensembled = ensembled.select(*job.sink.columns)
    try:
        _write(ensembled, job)
    except Exception as exc:
        _explain(exc)
        raise
    report.rows, report.nulled = int(rows.value), int(nulled.value)
    report.seconds = time.perf_counter() - started
    return report


def build_session(job: Job, master: str | None = None, conf: dict[str, str] | None = None) -> Any:
    """A SparkSession for `job`: its annotations, then `conf`, then `master` win."""
    from pyspark.sql import SparkSession

    settings = {**job.spark_conf(), **(conf or {})}
    settings["spark.master"] = master or settings.get("spark.master", DEFAULT_MASTER)
    if settings["spark.master"].startswith("local"):
        # Local Python workers must be this interpreter (its packages, this package), and
        # PySpark takes the workers' interpreter from this variable only.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(job.name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _explain(exc: Exception) -> None:
    """A missing connector, said in one line (Spark's own message is a Java stack)."""
    text = str(exc)
    if "bigquery" in text.lower() and ("DATA_SOURCE_NOT_FOUND" in text or "ClassNotFound" in text):
        raise BatchError(CONNECTOR_HINT) from None


def reader_options(dataset: Dataset) -> tuple[str, dict[str, Any], str | None]:
    """``(format, options, path)`` of `dataset` for ``spark.read``."""
    if dataset.format == BIGQUERY:
        assert dataset.bigquery is not None
        config = dataset.bigquery
        options: dict[str, Any] = dict(config.options)
        if config.query:
            options["query"] = config.query
        else:
            options["table"] = config.table
        return "bigquery", options, None
    if dataset.format == "csv":
        return "csv", {"header": True, "inferSchema": True}, dataset.path
    return "json" if dataset.format == "jsonl" else dataset.format, {}, dataset.path


def writer_options(sink: Sink) -> tuple[str, str, dict[str, Any], str | None]:
    """``(format, mode, options, path)`` of `sink` for ``DataFrame.write``."""
    mode = sink.save_mode.value
    if sink.format == BIGQUERY:
        assert sink.bigquery is not None
        options: dict[str, Any] = dict(sink.bigquery.options)
        if sink.bigquery.staging_bucket:
            options["temporaryGcsBucket"] = sink.bigquery.staging_bucket
        options["table"] = sink.bigquery.table
        return "bigquery", mode, options, None
    if sink.format == "csv":
        return "csv", mode, {"header": True}, sink.path
    return "json" if sink.format == "jsonl" else sink.format, mode, {}, sink.path


def _read(spark: Any, dataset: Dataset, columns: Any, keys: tuple[str, ...]) -> Any:
    fmt, options, path = reader_options(dataset)
    reader = spark.read.format(fmt).options(**options)
    frame = reader.load(path) if path else reader.load()
    if columns:
        frame = frame.select(*columns, *(k for k in keys if k not in columns))
    return frame


def _join(spark: Any, frame: Any, source: PredictionSource, keys: tuple[str, ...]) -> Any:
    from pyspark.sql import functions as F

    predictions = _read(spark, source.dataset, None, ())
    value = (
        F.col(source.columns[0])
        if len(source.columns) == 1
        else F.struct(*(F.col(c) for c in source.columns))
    )
    renamed = [F.col(theirs).alias(ours) for theirs, ours in zip(source.join_on, keys, strict=True)]
    predictions = predictions.select(*renamed, value.alias(source.column_name))
    duplicated = predictions.groupBy(*keys).count().where("count > 1").limit(1).collect()
    if duplicated:
        raise BatchError(
            f"prediction source '{source.name}' has duplicate keys on {list(source.join_on)} "
            f"(e.g. {duplicated[0].asDict()}): a left join would repeat source rows"
        )
    return frame.join(predictions, on=list(keys), how="left")


def _with_result(schema: Any, job: Job) -> Any:
    from pyspark.sql.pandas.types import from_arrow_type
    from pyspark.sql.types import StructField, StructType

    kind = from_arrow_type(arrow_type(job.result))
    return StructType([*schema.fields, StructField(job.result.column_name, kind, True)])


def _ensemble_partition(ensembler: TableEnsembler, rows: Any, nulled: Any) -> Any:
    """The ``mapInArrow`` function: every batch of a partition through `ensembler`."""

    def ensemble(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        context = TaskContext.get()
        where = f"partition {context.partitionId() if context else 0}, row {{}}"
        done = 0
        for batch in batches:
            applied = ensembler.apply(batch, where, done)
            done += batch.num_rows
            rows.add(batch.num_rows)
            nulled.add(applied.nulled)
            yield applied.batch

    return ensemble


def _write(frame: Any, job: Job) -> None:
    from pyspark.sql import functions as F

    sink = job.sink
    if sink.format == "csv":
        # CSV holds no nested values: they are written as JSON text, as the local engine does.
        nested = {f.name for f in frame.schema.fields if f.dataType.typeName() in _NESTED}
        frame = frame.select(
            *(F.to_json(c).alias(c) if c in nested else F.col(c) for c in frame.columns)
        )
    fmt, mode, options, path = writer_options(sink)
    writer = frame.write.mode(mode).format(fmt).options(**options)
    if path:
        writer.save(path)
    else:
        writer.save()


_NESTED = ("struct", "array", "map")
