"""BigQuery datasets and sinks for the local engine: the Storage Read API in, the Write API out.

Reading (`BigQueryTable`): a table is read through one Storage Read API session
straight into Arrow record batches, page after page (memory holds a page, whatever
the table's size), with only the columns the job needs (``features`` and the join
keys) and ``options.filter`` as its row restriction. The Storage Read API cannot
read a view, so a view is first materialized, as the spark-bigquery connector does
with ``viewsEnabled``: ``CREATE TABLE … AS SELECT <those columns> FROM <view> WHERE
<filter>`` into ``options.materializationDataset`` (else the view's own dataset),
read, then dropped. A ``query`` is materialized the same way: with
``options.materializationDataset`` (as the connector asks) into a table there;
without it, into the query job's own result table. Either table expires after
``options.materializationExpirationTimeInMinutes`` (1440, the connector's default),
so a process killed before it drops one leaves nothing for long.

Writing (`TableSink`): batches go through the Storage Write API, in one *pending*
stream, into a staging table beside the sink (``_<table>_staging_<id>``, expiring in
a day); at the end the stream is committed and one copy job moves the rows into the
sink with the save mode's write disposition (``WRITE_TRUNCATE`` for overwrite,
``WRITE_APPEND``, ``WRITE_EMPTY``), then the staging table is dropped. Until that copy
the sink is untouched, so a failed job leaves it as it was, and the copy itself is
atomic in BigQuery.

Types: BigQuery's integers and floats are 64-bit, and its TIMESTAMP (an instant:
an Arrow timestamp with a time zone) and DATETIME (a wall-clock time: one without)
hold microseconds. Finer timestamps (pandas' and Arrow's default is nanoseconds) are
floored to the microsecond (``…56.123456789`` is stored as ``…56.123456``, and
``-1 ns`` as ``-1 µs``), not rounded, not refused. Into an existing table, a
timestamp column takes the kind the table's column has (a time-zone-less timestamp
appended to a TIMESTAMP column is read as UTC, as BigQuery reads it).

Where: ``BIGQUERY_EMULATOR_HOST`` (``host:port``, REST) and
``BIGQUERY_STORAGE_EMULATOR_HOST`` (``host:port``, the Storage APIs' gRPC, plain
text) point the clients at an emulator or a private endpoint, with anonymous
credentials, as Google's storage client does with ``STORAGE_EMULATOR_HOST``;
otherwise Google's default credentials (or ``options.credentialsFile``). Jobs run in
``options.parentProject``, else the table's project, else the default project
(``GOOGLE_CLOUD_PROJECT`` or the credentials').
"""

from __future__ import annotations

import datetime
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pyfunc_ensembler.batch.io import sink_columns
from pyfunc_ensembler.batch.job import BigQuery, Dataset, SaveMode, Sink
from pyfunc_ensembler.errors import BatchError, InvalidJob, MissingExtra

REST_ENV = "BIGQUERY_EMULATOR_HOST"
STORAGE_ENV = "BIGQUERY_STORAGE_EMULATOR_HOST"

# The spark-bigquery connector's options that the local engine honours; any other is
# refused with its path (the Spark engine hands every option to the connector).
READ_OPTIONS = {
    "parentProject": "the project jobs and read sessions run in (billing)",
    "credentialsFile": "a service account key file",
    "filter": "a row restriction, in BigQuery SQL",
    "materializationDataset": "where a query's result is written before it is read",
    "materializationProject": "the project of materializationDataset",
    "materializationExpirationTimeInMinutes": "how long a materialized table lives (1440)",
    "viewsEnabled": "accepted: the local engine materializes views and queries without it",
}
WRITE_OPTIONS = {
    "parentProject": READ_OPTIONS["parentProject"],
    "credentialsFile": READ_OPTIONS["credentialsFile"],
    "createDisposition": "CREATE_IF_NEEDED (default) or CREATE_NEVER",
    "writeMethod": "accepted: the local engine always writes with the Storage Write API",
    "temporaryGcsBucket": "accepted: the local engine stages in a table, not in GCS",
}
_DISPOSITIONS = {
    SaveMode.OVERWRITE: "WRITE_TRUNCATE",
    SaveMode.APPEND: "WRITE_APPEND",
    SaveMode.ERRORIFEXISTS: "WRITE_EMPTY",
    SaveMode.IGNORE: "WRITE_EMPTY",
}
_APPEND_BYTES = 8 * 1024 * 1024
"""Rows per AppendRows request are kept under this (BigQuery refuses requests over 10 MB)."""


def check_options(datasets: Mapping[str, Dataset], sink: Sink) -> None:
    """Refuse, with their paths, the options the local engine cannot honour."""
    problems: list[tuple[str, str]] = []
    places = [
        (path, d.bigquery.options, READ_OPTIONS) for path, d in datasets.items() if d.bigquery
    ]
    if sink.bigquery:
        places.append(("spec.sink", sink.bigquery.options, WRITE_OPTIONS))
    for path, options, known in places:
        for key in options:
            if key not in known:
                problems.append(
                    (
                        f"{path}.bq_config.options.{key}",
                        f"the local engine cannot honour this option (it knows: "
                        f"{', '.join(known)}); --engine spark gives every option to the "
                        f"spark-bigquery connector",
                    )
                )
        minutes = options.get("materializationExpirationTimeInMinutes", "1440")
        if known is READ_OPTIONS and not (minutes.isdigit() and int(minutes) > 0):
            problems.append(
                (
                    f"{path}.bq_config.options.materializationExpirationTimeInMinutes",
                    f"{minutes!r} is not a positive whole number of minutes",
                )
            )
    if sink.bigquery:
        create = sink.bigquery.options.get("createDisposition", "CREATE_IF_NEEDED")
        if create not in ("CREATE_IF_NEEDED", "CREATE_NEVER"):
            problems.append(
                (
                    "spec.sink.bq_config.options.createDisposition",
                    f"{create!r} is not one of CREATE_IF_NEEDED, CREATE_NEVER",
                )
            )
    if problems:
        raise InvalidJob(problems)


class Clients:
    """The REST client (jobs, tables) and the Storage Read/Write clients, for one project."""

    def __init__(self, project: str, options: Mapping[str, str]) -> None:
        try:
            from google.cloud import bigquery, bigquery_storage_v1
        except ImportError as exc:
            missing = exc.name or "google-cloud-bigquery"
            raise MissingExtra("a BigQuery dataset or sink", "bigquery", missing) from None
        credentials = _credentials(options)
        rest = os.environ.get(REST_ENV)
        client_options = None
        if rest:
            from google.api_core.client_options import ClientOptions

            client_options = ClientOptions(api_endpoint=_url(rest))
        # No project named: the client finds one (GOOGLE_CLOUD_PROJECT, the credentials').
        self.rest = bigquery.Client(
            project=options.get("parentProject") or project or None,
            credentials=credentials,
            client_options=client_options,
        )
        self.project: str = self.rest.project
        storage = os.environ.get(STORAGE_ENV)
        if storage:
            import grpc
            from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
                BigQueryReadGrpcTransport,
            )
            from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
                BigQueryWriteGrpcTransport,
            )

            channel = grpc.insecure_channel(storage.removeprefix("http://"))
            self.read = bigquery_storage_v1.BigQueryReadClient(
                transport=BigQueryReadGrpcTransport(channel=channel)
            )
            self.write = bigquery_storage_v1.BigQueryWriteClient(
                transport=BigQueryWriteGrpcTransport(channel=channel)
            )
        else:
            self.read = bigquery_storage_v1.BigQueryReadClient(credentials=credentials)
            self.write = bigquery_storage_v1.BigQueryWriteClient(credentials=credentials)


def _url(host: str) -> str:
    return host if "://" in host else f"http://{host}"


def _credentials(options: Mapping[str, str]) -> Any:
    if os.environ.get(REST_ENV) or os.environ.get(STORAGE_ENV):
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    if options.get("credentialsFile"):
        from google.oauth2 import service_account

        return service_account.Credentials.from_service_account_file(
            options["credentialsFile"],
            scopes=["https://www.googleapis.com/auth/cloud-platform"],
        )
    return None


def _split(table: str) -> tuple[str, str, str]:
    project, dataset, name = table.replace(":", ".").split(".")
    return project, dataset, name


def _path(table: str) -> str:
    project, dataset, name = _split(table)
    return f"projects/{project}/datasets/{dataset}/tables/{name}"


def _failed(what: str, exc: Exception) -> BatchError:
    message = getattr(exc, "message", None) or str(exc)
    return BatchError(f"BigQuery: {what}: {message}")


class BigQueryTable:
    """A BigQuery dataset as a stream of record batches (`io.Source`)."""

    def __init__(self, spec: Dataset, needed: Sequence[str]) -> None:
        assert spec.bigquery is not None
        self.spec = spec
        self.config: BigQuery = spec.bigquery
        options = self.config.options
        project = _split(self.config.table)[0] if self.config.table else ""
        self.clients = Clients(project or options.get("materializationProject", ""), options)
        self._dropped: str | None = None
        columns: list[str] | None = None
        restriction = options.get("filter")
        if self.config.query:
            table = self._materialize(self.config.query)
        else:
            table = self.config.table or ""
            if self.config.features:
                features = self.config.features
                columns = [*features, *(c for c in needed if c not in features)]
            if self._is_view(table):
                table = self._materialize(_select(table, columns, restriction), view=table)
                columns = restriction = None  # both are in the materializing query
        self.table = table
        self._session = self._open(table, columns, restriction)
        self._wire_schema = pa.ipc.read_schema(pa.py_buffer(self._arrow_schema()))
        self.schema = _plain(self._wire_schema)

    def _is_view(self, table: str) -> bool:
        try:
            kind = self.clients.rest.get_table(table).table_type
        except Exception as exc:
            raise _failed(f"cannot read {self.spec.path}", exc) from exc
        return kind in ("VIEW", "MATERIALIZED_VIEW")

    def _materialize(self, query: str, view: str | None = None) -> str:
        """A table holding `query`'s rows: in materializationDataset, or the view's dataset."""
        options = self.config.options
        client = self.clients.rest
        dataset = options.get("materializationDataset")
        project = options.get("materializationProject")
        if view and dataset is None:
            project, dataset = project or _split(view)[0], _split(view)[1]
        what = f"materializing the view {view}" if view else "the query"
        try:
            if dataset is None:
                job = client.query(query)
                job.result()
                destination = job.destination
                return f"{destination.project}.{destination.dataset_id}.{destination.table_id}"
            table = f"{project or self.clients.project}.{dataset}._pyfunc_ensembler_{_unique()}"
            minutes = int(options.get("materializationExpirationTimeInMinutes", "1440"))
            expiry = f"TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL {minutes} MINUTE)"
            client.query(
                f"CREATE TABLE `{table}` OPTIONS (expiration_timestamp = {expiry}) AS\n{query}"
            ).result()
        except Exception as exc:
            raise _failed(f"{what} failed", exc) from exc
        self._dropped = table
        return table

    def _open(self, table: str, columns: list[str] | None, restriction: str | None) -> Any:
        from google.cloud.bigquery_storage_v1 import types

        options = types.ReadSession.TableReadOptions(
            selected_fields=columns or [], row_restriction=restriction or ""
        )
        session = types.ReadSession(
            table=_path(table), data_format=types.DataFormat.ARROW, read_options=options
        )
        try:
            # One stream: the rows in the order one reader gets them, as a file is read.
            return self.clients.read.create_read_session(
                parent=f"projects/{self.clients.project}", read_session=session, max_stream_count=1
            )
        except Exception as exc:
            hint = ""
            if self.config.query and "materializationDataset" not in self.config.options:
                hint = " (options.materializationDataset writes the query's result there first)"
            raise _failed(f"cannot read {self.spec.path}{hint}", exc) from exc

    def _arrow_schema(self) -> bytes:
        return bytes(self._session.arrow_schema.serialized_schema)

    def count(self) -> int | None:
        return int(self._session.estimated_row_count) or None

    def batches(self, columns: Sequence[str] | None, batch_size: int) -> Iterator[pa.RecordBatch]:
        """The table's rows, page by page; the materialized query's table dropped at the end."""
        try:
            for stream in self._session.streams:
                # Each response's Arrow record batch, decoded here: the client's own
                # page.to_arrow() is deprecated. The stream resumes where it broke off.
                for response in self.clients.read.read_rows(stream.name):
                    data = pa.py_buffer(response.arrow_record_batch.serialized_record_batch)
                    if not data.size:
                        continue
                    decoded = pa.ipc.read_record_batch(data, self._wire_schema)
                    batch = _with_schema(decoded, self.schema)
                    yield batch.select(list(columns)) if columns else batch
        finally:
            self.close()

    def close(self) -> None:
        if self._dropped:
            self.clients.rest.delete_table(self._dropped, not_found_ok=True)
            self._dropped = None


def _select(table: str, columns: Sequence[str] | None, restriction: str | None) -> str:
    """The query that reads `columns` (all when ``None``) of `table` under `restriction`."""
    selected = ", ".join(f"`{c}`" for c in columns) if columns else "*"
    where = f"\nWHERE {restriction}" if restriction else ""
    return f"SELECT {selected}\nFROM `{table}`{where}"


def _unique() -> str:
    return uuid.uuid4().hex[:12]


def _plain(schema: pa.Schema) -> pa.Schema:
    """`schema` without the field metadata a server may add (it would follow into the sink)."""
    return pa.schema([field.remove_metadata() for field in schema])


def _with_schema(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(batch.columns, schema=schema)


class TableSink:
    """A BigQuery table written under a save mode (`io.Output`'s interface)."""

    def __init__(self, sink: Sink) -> None:
        assert sink.bigquery is not None
        self.sink = sink
        self.table = sink.path
        options = sink.bigquery.options
        self.clients = Clients(_split(self.table)[0], options)  # first: it says what is missing
        from google.api_core.exceptions import NotFound

        self._kinds: dict[str, str] = {}
        """The existing table's column types, by name (timestamps take theirs)."""
        try:
            existing = self.clients.rest.get_table(self.table)
            self.exists = True
            self._kinds = {f.name: f.field_type for f in existing.schema}
        except NotFound:
            self.exists = False
        except Exception as exc:
            raise _failed(f"cannot look up {self.table}", exc) from exc
        if self.exists and sink.save_mode is SaveMode.ERRORIFEXISTS:
            raise BatchError(
                f"BigQuery table {self.table} exists: choose save_mode overwrite, append or "
                f"ignore (--save-mode), or another table"
            )
        self.create = options.get("createDisposition", "CREATE_IF_NEEDED")
        if not self.exists and self.create == "CREATE_NEVER":
            raise BatchError(f"BigQuery table {self.table} does not exist (CREATE_NEVER)")
        self.skip = self.exists and sink.save_mode is SaveMode.IGNORE
        project, dataset, name = _split(self.table)
        self.staging = f"{project}.{dataset}._{name}_staging_{_unique()}"
        self._stream: str | None = None
        self._schema: pa.Schema | None = None
        self._created = False

    def write(self, batch: pa.RecordBatch) -> None:
        batch = sink_columns(batch, self.sink)
        if self._schema is None:
            self._start(batch.schema)
        assert self._schema is not None
        try:
            batch = _microseconds(batch).cast(self._schema)
        except pa.ArrowInvalid as exc:
            raise BatchError(f"cannot write to BigQuery table {self.table}: {exc}") from exc
        if batch.num_rows:
            self._append(batch)

    def _start(self, schema: pa.Schema) -> None:
        from google.cloud import bigquery
        from google.cloud.bigquery_storage_v1 import types

        self._schema = pa.schema(
            [pa.field(f.name, _storable(f.type, self._kinds.get(f.name))) for f in schema]
        )
        table = bigquery.Table(self.staging, schema=[_field(f) for f in self._schema])
        table.expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
        try:
            self.clients.rest.create_table(table)
            self._created = True
            stream = types.WriteStream(type_=types.WriteStream.Type.PENDING)
            self._stream = self.clients.write.create_write_stream(
                parent=_path(self.staging), write_stream=stream
            ).name
        except Exception as exc:
            raise _failed(f"cannot create the staging table {self.staging}", exc) from exc

    def _append(self, batch: pa.RecordBatch) -> None:
        from google.cloud.bigquery_storage_v1 import types

        assert self._schema is not None
        schema = types.ArrowSchema(serialized_schema=self._schema.serialize().to_pybytes())
        rows = max(1, batch.num_rows * _APPEND_BYTES // max(batch.nbytes, 1))
        requests = [
            types.AppendRowsRequest(
                write_stream=self._stream,
                arrow_rows=types.AppendRowsRequest.ArrowData(
                    writer_schema=schema,
                    rows=types.ArrowRecordBatch(
                        serialized_record_batch=batch.slice(start, rows).serialize().to_pybytes()
                    ),
                ),
            )
            for start in range(0, batch.num_rows, rows)
        ]
        try:
            for response in self.clients.write.append_rows(iter(requests)):
                if response.error.code or response.row_errors:
                    raise BatchError(f"{response.error.message} {list(response.row_errors)}")
        except Exception as exc:
            raise _failed(f"writing to {self.staging} failed", exc) from exc

    def commit(self, empty_schema: pa.Schema) -> None:
        """Commit the staged rows, then copy them into the sink in one job."""
        from google.cloud import bigquery

        if self._schema is None:  # no rows: the sink still gets the job's schema
            self.write(pa.RecordBatch.from_pylist([], schema=empty_schema))
        try:
            if self._stream:
                write = self.clients.write
                write.finalize_write_stream(name=self._stream)
                committed = write.batch_commit_write_streams(
                    request={"parent": _path(self.staging), "write_streams": [self._stream]}
                )
                if committed.stream_errors:
                    raise BatchError(str(list(committed.stream_errors)))
            config = bigquery.CopyJobConfig(
                write_disposition=_DISPOSITIONS[self.sink.save_mode],
                create_disposition=self.create,
            )
            self.clients.rest.copy_table(self.staging, self.table, job_config=config).result()
        except Exception as exc:
            raise _failed(f"cannot move the rows into {self.table}", exc) from exc
        self.abort()

    def abort(self) -> None:
        """Drop the staging table: a pending stream never committed is discarded with it."""
        if self._created:
            self.clients.rest.delete_table(self.staging, not_found_ok=True)
            self._created = False


def _microseconds(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` with its nanosecond timestamps floored to the microsecond, nested ones too.

    Finer digits are dropped rather than refused: nanoseconds are pandas' and Arrow's
    default, and BigQuery has nowhere to keep them (its Write API refuses a cast that
    loses them, failing the job).
    """
    for i, field in enumerate(batch.schema):
        if _has_nanoseconds(field.type):
            batch = batch.set_column(i, field, _floored(batch.column(i)))
    return batch


def _has_nanoseconds(kind: pa.DataType) -> bool:
    if pa.types.is_timestamp(kind):
        return bool(kind.unit == "ns")
    return any(_has_nanoseconds(kind.field(i).type) for i in range(kind.num_fields))


def _floored(array: pa.Array) -> pa.Array:
    kind = array.type
    if pa.types.is_timestamp(kind):
        return pc.floor_temporal(array, unit="microsecond") if kind.unit == "ns" else array
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        offsets = array.offsets  # of a slice: into the whole of `values`; made to start at 0
        first, last = offsets[0].as_py(), offsets[-1].as_py()
        values = _floored(array.values.slice(first, last - first))
        rebased = pc.subtract(offsets, pa.scalar(first, offsets.type))
        return type(array).from_arrays(rebased, values, mask=array.is_null())
    if pa.types.is_struct(kind):
        children = [_floored(child) for child in array.flatten()]
        return pa.StructArray.from_arrays(children, fields=list(kind), mask=array.is_null())
    return array


def _storable(kind: pa.DataType, existing: str | None = None) -> pa.DataType:
    """The Arrow type BigQuery stores `kind` as, in a column of type `existing` if any.

    Its integers and floats are 64-bit; its TIMESTAMP (with a time zone, kept as UTC)
    and DATETIME (without) hold microseconds.
    """
    if pa.types.is_timestamp(kind):
        zone = {"TIMESTAMP": "UTC", "DATETIME": None}.get(existing or "", kind.tz and "UTC")
        return pa.timestamp("us", zone)
    if pa.types.is_date(kind):
        return pa.date32()
    if pa.types.is_integer(kind):
        return pa.int64()
    if pa.types.is_floating(kind):
        return pa.float64()
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return pa.list_(_storable(kind.value_type))
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(f.name, _storable(f.type)) for f in kind])
    if pa.types.is_large_string(kind):
        return pa.string()
    return kind


_BQ_TYPES = [
    (pa.types.is_integer, "INT64"),
    (pa.types.is_floating, "FLOAT64"),
    (pa.types.is_boolean, "BOOL"),
    (pa.types.is_string, "STRING"),
    (pa.types.is_binary, "BYTES"),
    (lambda kind: pa.types.is_timestamp(kind) and kind.tz is not None, "TIMESTAMP"),
    (pa.types.is_timestamp, "DATETIME"),
    (pa.types.is_date, "DATE"),
    (pa.types.is_decimal, "NUMERIC"),
]


def _field(field: pa.Field) -> Any:
    from google.cloud import bigquery

    kind, mode = field.type, "NULLABLE"
    if pa.types.is_list(kind):
        kind, mode = kind.value_type, "REPEATED"
    if pa.types.is_struct(kind):
        return bigquery.SchemaField(field.name, "RECORD", mode, fields=[_field(f) for f in kind])
    for test, name in _BQ_TYPES:
        if test(kind):
            return bigquery.SchemaField(field.name, name, mode)
    raise BatchError(f"column {field.name!r} of type {kind} has no BigQuery type")
