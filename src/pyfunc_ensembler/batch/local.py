"""The local engine: stream the source in Arrow record batches, join, ensemble, write.

Memory holds the prediction sources and a few batches of the source (a few more per
process), whatever the source's size. The model is loaded, and the sink checked
against its save mode, before any data is read, so a job that cannot finish fails at
once. With ``processes`` > 1 (the default: every CPU this process may use) forked
workers ensemble the batches (`parallel`); the output is the same, in the same order.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from typing import TextIO

import pyarrow as pa

from pyfunc_ensembler.batch.apply import Applied, TableEnsembler
from pyfunc_ensembler.batch.io import Destination, Output, Predictions, Source, join, open_files
from pyfunc_ensembler.batch.job import BIGQUERY, Dataset, Job, Sink
from pyfunc_ensembler.batch.parallel import Workers
from pyfunc_ensembler.batch.progress import Progress
from pyfunc_ensembler.batch.results import Report, arrow_type
from pyfunc_ensembler.batch.startup import default_processes
from pyfunc_ensembler.errors import BatchError

DEFAULT_BATCH_SIZE = 64 * 1024
STAGES = ("read", "join", "ensemble", "result", "write")


def run(
    job: Job,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: TextIO | None = None,
    force_mlflow: bool = False,
    processes: int | None = None,
) -> Report:
    """Run `job` on this machine; `progress` is where a terminal bar goes (stderr).

    `processes`: how many processes ensemble (default: the CPUs this one may use).
    """
    started = time.perf_counter()
    report = Report("local", output=job.sink.path, timings=dict.fromkeys(STAGES, 0.0))
    _check_bigquery(job)
    ensembler = TableEnsembler(
        job.ensembler_uri, job.result, job.join_on, force_mlflow=force_mlflow
    ).load()
    count = default_processes() if processes is None else max(processes, 1)
    # Forked before any storage client starts its threads (gRPC, AWS's SDK).
    workers = Workers(ensembler, count) if count > 1 else None
    try:
        return _run(job, ensembler, workers, report, batch_size, progress, started)
    finally:
        if workers is not None:
            workers.close()


def _run(
    job: Job,
    ensembler: TableEnsembler,
    workers: Workers | None,
    report: Report,
    batch_size: int,
    progress: TextIO | None,
    started: float,
) -> Report:
    output = open_destination(job.sink)
    if output.skip:
        report.skipped = True
        return report
    source = open_source(job.source, job.join_on)
    columns = _source_columns(job, source.schema.names)
    predictions = [
        Predictions(p, job.join_on, open_source(p.dataset, (*p.join_on, *p.columns)))
        for p in job.predictions
    ]
    bar = Progress(source.count(), progress or sys.stderr)
    timings = report.timings
    schema = None
    try:
        joined = _joined(source.batches(columns, batch_size), predictions, timings)
        answers: Iterator[Applied] = (
            workers.apply(joined)
            if workers
            else (ensembler.apply(batch, offset=offset) for batch, offset in joined)
        )
        for applied in answers:
            for stage, seconds in applied.seconds.items():
                timings[stage] += seconds
            tick = time.perf_counter()
            output.write(applied.batch)
            timings["write"] += time.perf_counter() - tick
            schema = applied.batch.schema
            report.rows += applied.batch.num_rows
            report.nulled += applied.nulled
            bar.advance(applied.batch.num_rows)
        tick = time.perf_counter()
        output.commit(schema or _empty_schema(source.schema, columns, predictions, job))
        timings["write"] += time.perf_counter() - tick
    except BaseException:
        output.abort()
        raise
    finally:
        bar.close()
    report.seconds = time.perf_counter() - started
    return report


def _joined(
    batches: Iterator[pa.RecordBatch], predictions: Sequence[Predictions], timings: dict[str, float]
) -> Iterator[tuple[pa.RecordBatch, int]]:
    """Each source batch with its predictions joined, and the number of rows before it."""
    offset = 0
    for batch in _timed(batches, timings):
        tick = time.perf_counter()
        joined = join(batch, predictions)
        timings["join"] += time.perf_counter() - tick
        yield joined, offset
        offset += batch.num_rows


def open_source(spec: Dataset, needed: Sequence[str] = ()) -> Source:
    """The dataset `spec` names; `needed` are columns read beside its selection (join keys)."""
    if spec.format == BIGQUERY:
        from pyfunc_ensembler.batch.bigquery import BigQueryTable

        return BigQueryTable(spec, needed)
    return open_files(spec)


def open_destination(sink: Sink) -> Destination:
    if sink.format == BIGQUERY:
        from pyfunc_ensembler.batch.bigquery import TableSink

        return TableSink(sink)
    return Output(sink)


def _source_columns(job: Job, names: list[str]) -> list[str] | None:
    """The columns to read: the dataset's selection plus the join keys (all when no selection)."""
    missing = [k for k in job.join_on if k not in names]
    if missing:
        raise BatchError(
            f"spec.source.join_on: '{job.source.path}' has no column "
            f"{', '.join(map(repr, missing))} (it has: {', '.join(names)})"
        )
    columns = job.source.columns
    if columns is not None:
        columns = (*columns, *(k for k in job.join_on if k not in columns))
    if job.result.column_name in (names if columns is None else columns):
        raise BatchError(
            f"spec.ensembler.result.column_name: '{job.source.path}' already has a column "
            f"'{job.result.column_name}': name the result otherwise (--result-column), or "
            f"leave that column out of the source's columns"
        )
    return None if columns is None else list(columns)


def _check_bigquery(job: Job) -> None:
    """Refuse at once the BigQuery options this engine cannot honour (each with its path)."""
    datasets = {"spec.source.dataset": job.source}
    datasets.update({f"spec.predictions.{p.name}.dataset": p.dataset for p in job.predictions})
    if any(d.bigquery for d in datasets.values()) or job.sink.bigquery:
        from pyfunc_ensembler.batch.bigquery import check_options

        check_options(datasets, job.sink)


def _timed(
    batches: Iterator[pa.RecordBatch], timings: dict[str, float]
) -> Iterator[pa.RecordBatch]:
    """`batches`, adding the time spent producing each one (reading) to ``timings["read"]``."""
    while True:
        tick = time.perf_counter()
        batch = next(batches, None)
        timings["read"] += time.perf_counter() - tick
        if batch is None:
            return
        yield batch


def _empty_schema(
    schema: pa.Schema, columns: list[str] | None, predictions: list[Predictions], job: Job
) -> pa.Schema:
    """The output schema of a job whose source has no rows."""
    fields = [schema.field(c) for c in columns or schema.names]
    fields += [pa.field(p.name, p.values.type) for p in predictions]
    return pa.schema([*fields, pa.field(job.result.column_name, arrow_type(job.result))])
