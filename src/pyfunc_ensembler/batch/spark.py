"""The Spark engine: the same job on any Spark master, ``local[*]`` by default.

Datasets are read and written by Spark (so any path or URI Spark reads works), the
prediction sources are left-joined on their keys, and each Arrow batch is ensembled
on the executors by the very `TableEnsembler` the local engine uses, through
``mapInArrow`` (a vectorized UDF like MLflow's ``spark_udf``, without the pandas
round trip). Executors load the model from the job's URI themselves, so on a cluster
it must be a URI they can reach (``gs://``, ``s3://``, ``models:/`` …).

A file sink (local, ``gs://``, ``s3://``) is written by Spark to a new hidden directory
beside it and put in place by `storage.Placement`, as the local engine's output is: a
failed job leaves the sink as it was, which Spark's own ``overwrite`` (it deletes the old
output first) would not.

The job's ``spark/<key>`` annotations are Spark configuration, e.g.
``spark/spark.executor.memory: 4g``; ``spark/spark.master`` or ``--master`` picks
the master.

BigQuery datasets and sinks go through the spark-bigquery connector
(``format("bigquery")``), with the job's ``options`` as the connector's options, as
Turing's engine does: a table is read with ``table`` (its ``features`` selected), a
query with ``query``; the sink gets ``table`` and ``temporaryGcsBucket`` (its
``staging_bucket``, with ``writeMethod: indirect`` unless the job says otherwise: one
load job at the end, none if the job fails) and the save mode. The connector is the
user's to supply, as on Turing: ``spark/spark.jars.packages:
com.google.cloud.spark:spark-bigquery-with-dependencies_2.13:<version>``.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from pyfunc_ensembler import errors
from pyfunc_ensembler.batch.apply import TableEnsembler
from pyfunc_ensembler.batch.job import BIGQUERY, Dataset, Job, PredictionSource, Sink
from pyfunc_ensembler.batch.results import Report, arrow_type
from pyfunc_ensembler.batch.storage import Placement, can_stage
from pyfunc_ensembler.errors import BatchError, EnsemblerError, InvalidJob

DEFAULT_MASTER = "local[*]"
CONNECTOR_HINT = (
    "the spark-bigquery connector is not on Spark's classpath: add the annotation "
    "spark/spark.jars.packages: com.google.cloud.spark:spark-bigquery-with-dependencies_2.13:"
    "<version> to the job (or its jar to spark.jars)"
)

AT_LEAST_ONCE = (
    "the connector then commits rows as it writes them, so a failed job would leave some "
    "in the table; leave it out (its direct writes commit every stream at once at the end)"
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
    report = Report("spark", output=job.sink.path)
    writer_options(job.sink)  # refuses, before Spark starts, what would break the promise
    placement = staged(job.sink)
    if placement is not None and placement.skip:
        report.skipped = True
        return report
    spark = session or build_session(job, master, conf)
    # In a thread of its own, so that a signal interrupts this thread's wait for it, and
    # not one of the job's py4j calls: py4j would log a traceback, and the JVM, whose
    # call it drops, would abort the job and log its own stack before `stop_quietly`.
    failures: list[BaseException] = []
    thread = threading.Thread(
        target=_catching(failures, _run, spark, job, placement, report, force_mlflow),
        name="spark-job",
        daemon=True,
    )
    thread.start()
    try:
        thread.join()
        if failures:
            raise failures[0]
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):  # SIGINT, or SIGTERM (`raise_on_signals`)
            if session is None:
                stop_quietly(spark)
            else:  # the caller's to stop
                spark.sparkContext.cancelAllJobs()
            thread.join()  # its job cancelled, it fails at once
        if placement is not None:
            placement.abort()  # after the tasks that wrote there have ended
        if isinstance(exc, Exception):
            _explain(exc)
        raise
    report.seconds = time.perf_counter() - started
    return report


def _catching(
    failures: list[BaseException], function: Callable[..., object], *args: Any
) -> Callable[[], None]:
    """`function(*args)`, its exception appended to `failures` rather than raised."""

    def call() -> None:
        try:
            function(*args)
        except BaseException as exc:
            failures.append(exc)

    return call


def _run(
    spark: Any, job: Job, placement: Placement | None, report: Report, force_mlflow: bool
) -> None:
    frame = _read(spark, job.source, job.source.columns, job.join_on)
    for source in job.predictions:
        frame = _join(spark, frame, source, job.join_on)
    ensembler = TableEnsembler(
        job.ensembler_uri, job.result, job.join_on, force_mlflow=force_mlflow
    )
    rows = spark.sparkContext.accumulator(0)
    nulled = spark.sparkContext.accumulator(0)
    schema = _with_result(frame.schema, job)
    ensembled = frame.mapInArrow(_ensemble_partition(ensembler, rows, nulled), schema)
    if job.sink.columns:
        ensembled = ensembled.select(*job.sink.columns)
    _write(ensembled, job, placement.staging_uri if placement else None)
    if placement is not None:
        placement.commit()
    report.rows, report.nulled = int(rows.value), int(nulled.value)


def build_session(job: Job, master: str | None = None, conf: dict[str, str] | None = None) -> Any:
    """A SparkSession for `job`: its annotations, then `conf`, then `master` win."""
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession

    settings = {**job.spark_conf(), **(conf or {})}
    settings["spark.master"] = master or settings.get("spark.master", DEFAULT_MASTER)
    settings.setdefault("spark.app.name", job.name)
    if settings["spark.master"].startswith("local"):
        # Local Python workers must be this interpreter (its packages, this package), and
        # PySpark takes the workers' interpreter from this variable only.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark_conf = SparkConf(loadDefaults=False).setAll(list(settings.items()))
    gateway = None
    if SparkContext._gateway is None:  # no JVM yet: start it here, as PySpark would, but
        # in a session of its own, so that a Ctrl-C at the terminal reaches this process
        # only (`stop_quietly`), not the JVM's Python workers, whose KeyboardInterrupt
        # Spark would log as crashes, stack after stack.
        gateway = launch_gateway(spark_conf, popen_kwargs={"start_new_session": True})  # type: ignore[no-untyped-call]
    interrupt = signal.getsignal(signal.SIGINT)
    context = SparkContext(conf=spark_conf, gateway=gateway)
    if threading.current_thread() is threading.main_thread():
        # PySpark's own SIGINT handler cancels the jobs before it raises, so the JVM logs
        # every cancelled task: keep ours, and `stop_quietly` quiets the JVM first.
        signal.signal(signal.SIGINT, interrupt)
    return SparkSession(context)


def stop_quietly(spark: Any) -> None:
    """Stop Spark without a word: a stopped job's tasks fail, and Spark logs each failure
    with its stack, so the JVM is silenced before its jobs are cancelled and it stops."""
    context = spark.sparkContext
    context.setLogLevel("OFF")
    context.cancelAllJobs()
    spark.stop()


def staged(sink: Sink) -> Placement | None:
    """Where Spark writes a file sink first, to put it in place once the job succeeded
    (as the local engine does); ``None`` for a BigQuery sink (the connector stages) or a
    file system the local engine does not know (``hdfs://``, ``s3a://``…), where Spark's
    own save mode applies, and with it Spark's own ``overwrite``: the old output is
    deleted before the new is written."""
    if sink.format == BIGQUERY or not can_stage(sink.path):
        return None
    # Spark writes a directory of part files, whatever the sink's name ends with.
    return Placement(sink.path, sink.save_mode, single_file=False)


def _explain(exc: Exception) -> None:
    """Say in one line what Spark says in a Java stack: a missing connector, or an error of
    ours raised on an executor (a row that failed, a value Python cannot hold), which
    reaches the driver as the text of the executor's traceback."""
    if isinstance(exc, EnsemblerError):
        return
    text = str(exc)
    if "bigquery" in text.lower() and ("DATA_SOURCE_NOT_FOUND" in text or "ClassNotFound" in text):
        raise BatchError(CONNECTOR_HINT) from None
    ours = re.search(r"^pyfunc_ensembler\.errors\.(\w+): (.+)$", text, re.MULTILINE)
    if ours:
        kind = getattr(errors, ours[1], BatchError)
        try:
            error = kind(ours[2])
        except TypeError:  # one whose arguments are not its message
            error = BatchError(ours[2])
        raise error from None


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
        if str(options.get("writeAtLeastOnce", "false")).lower() != "false":
            raise InvalidJob([("spec.sink.bq_config.options.writeAtLeastOnce", AT_LEAST_ONCE)])
        if sink.bigquery.staging_bucket:
            options["temporaryGcsBucket"] = sink.bigquery.staging_bucket
            # Turing's meaning of a staging bucket, whatever a connector's default: files
            # in GCS, then one load job, which leaves the table as it was if it never runs.
            options.setdefault("writeMethod", "indirect")
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


def _write(frame: Any, job: Job, staging: str | None) -> None:
    """Write `frame` to the job's sink, or to `staging` (new) for `Placement.commit`."""
    from pyspark.sql import functions as F

    sink = job.sink
    if sink.format == "csv":
        # CSV holds no nested values: they are written as JSON text, as the local engine does.
        nested = {f.name for f in frame.schema.fields if f.dataType.typeName() in _NESTED}
        frame = frame.select(
            *(F.to_json(c).alias(c) if c in nested else F.col(c) for c in frame.columns)
        )
    fmt, mode, options, path = writer_options(sink)
    if staging is not None:
        mode, path = "errorifexists", staging  # `Placement` applies the save mode
    writer = frame.write.mode(mode).format(fmt).options(**options)
    if path:
        writer.save(path)
    else:
        writer.save()


_NESTED = ("struct", "array", "map")
