"""Datasets in, prediction sources joined on, result files out: the local engine's I/O, in Arrow.

- A dataset is a file, a glob (``parts/*.parquet``), or a directory of part files
  (files starting with ``_`` or ``.``, like Spark's ``_SUCCESS``, are skipped), on
  this machine or in ``gs://`` or ``s3://`` (`storage`); Parquet, CSV (with a header)
  or JSON lines. The source is streamed in record batches.
- Prediction sources are read whole (they hold only keys and predictions) and
  left-joined onto each source batch by key, keeping the source's row order; a key
  that appears twice in a prediction source is an error, as it would repeat rows.
- A sink path with the format's extension (``out.parquet``) is one file; any other
  path is a directory of ``part-*`` files, as Spark writes; local, ``gs://`` or
  ``s3://``. Output is written to a hidden temporary name beside the sink first and
  put in place only when the job succeeds (`storage.replace`, `storage.add`).
"""

from __future__ import annotations

import fnmatch
import glob
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.fs as pafs

from pyfunc_ensembler.batch import storage
from pyfunc_ensembler.batch.job import (
    Dataset,
    PredictionSource,
    Sink,
    format_of,
)
from pyfunc_ensembler.errors import BatchError

_ARROW_FORMATS = {"parquet": "parquet", "csv": "csv", "jsonl": "json"}
PART_BYTES = 1 << 30
"""A directory sink starts a new part file once its current one holds this many bytes:
object stores put each file in place with one copy, and S3 copies at most 5 GB at once."""
_READ_BUFFER = 1 << 20
"""How much of a local Parquet column chunk is read at a time (`ParquetFiles`)."""
_EXTENSIONS = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl"}


class Source(Protocol):
    """Where rows come from: files (`Files`) or a BigQuery table or query (`bigquery`)."""

    schema: pa.Schema

    def batches(self, columns: Sequence[str] | None, batch_size: int) -> Iterator[pa.RecordBatch]:
        """The rows, batch after batch, with `columns` only (all when ``None``)."""
        ...

    def count(self) -> int | None:
        """How many rows, when known without reading them (for the progress bar)."""
        ...


class Destination(Protocol):
    """Where results go: files (`Output`) or a BigQuery table (`bigquery.TableSink`)."""

    skip: bool

    def write(self, batch: pa.RecordBatch) -> None: ...

    def commit(self, empty_schema: pa.Schema) -> None: ...

    def abort(self) -> None: ...


class Files:
    """A file dataset (`open_dataset`) as a `Source`."""

    def __init__(self, spec: Dataset) -> None:
        self.spec = spec
        self.dataset = open_dataset(spec)
        self.schema = self.dataset.schema

    def batches(self, columns: Sequence[str] | None, batch_size: int) -> Iterator[pa.RecordBatch]:
        return iter(self.dataset.to_batches(columns=columns, batch_size=batch_size))

    def count(self) -> int | None:
        # Parquet knows its row count from metadata; counting CSV or JSON would read it all.
        return int(self.dataset.count_rows()) if self.spec.format == "parquet" else None


class ParquetFiles:
    """Parquet files read straight with `pyarrow.parquet`, row group after row group.

    Not through `pyarrow.dataset`: importing it imports pandas (0.4-0.8 s of every
    job's start), and a job reads its files whole and in order, which needs no scanner.
    """

    def __init__(self, spec: Dataset, fs: pafs.FileSystem, paths: list[str]) -> None:
        import pyarrow.parquet as pq

        self.spec = spec
        # Buffering a row group's column chunks up front suits object stores (fewer, larger
        # reads); on a local disk it only costs: 10M rows read in 1.1-1.8 s instead of
        # 2.4-4.4 s, peak RSS 240 MB instead of 380 MB (bench/batch.py's table). There a
        # column chunk is read a MiB at a time rather than whole: as fast, and 20 MB less
        # peak RSS (10M rows, 2 processes).
        local = isinstance(fs, pafs.LocalFileSystem)
        buffered = {"pre_buffer": not local, "buffer_size": _READ_BUFFER if local else 0}
        try:
            self.files = [pq.ParquetFile(fs.open_input_file(p), **buffered) for p in paths]
        except (pa.ArrowException, OSError) as exc:
            raise BatchError(f"cannot read '{spec.path}' as parquet: {exc}") from exc
        self.schema = self.files[0].schema_arrow if self.files else pa.schema([])

    def batches(self, columns: Sequence[str] | None, batch_size: int) -> Iterator[pa.RecordBatch]:
        names = list(columns) if columns is not None else self.schema.names
        for file in self.files:
            # pyarrow's threads would decode columns beside the ensembling processes, for
            # the same cores.
            yield from file.iter_batches(batch_size, columns=names, use_threads=False)

    def count(self) -> int | None:
        return sum(int(f.metadata.num_rows) for f in self.files)


def open_files(spec: Dataset) -> Source:
    """The file dataset `spec` names, ready to read (nothing is read yet)."""
    if spec.format != "parquet":
        return Files(spec)
    fs, path = storage.locate(spec.path)
    found = storage.kind(fs, path)
    if glob.has_magic(path):
        paths = _matching(fs, path)
    elif found is pafs.FileType.Directory:
        paths = [f for f in storage.files_under(fs, path) if not storage.hidden(f[len(path) :])]
    elif found is pafs.FileType.NotFound:
        raise BatchError(f"no such file or directory: '{spec.path}'")
    else:
        paths = [path]
    if not paths:
        raise BatchError(f"no file matches '{spec.path}'")
    files = ParquetFiles(spec, fs, paths)
    names = files.schema.names
    missing = [c for c in spec.columns or () if c not in names]
    if missing:
        raise BatchError(_missing(missing, spec.path, names))
    return files


def open_dataset(spec: Dataset) -> Any:
    """The CSV or JSON lines dataset `spec` names, ready to scan (nothing is read yet)."""
    import pyarrow.dataset as ds

    fs, path = storage.locate(spec.path)
    paths: str | list[str] = path
    if glob.has_magic(path):
        paths = _matching(fs, path)
        if not paths:
            raise BatchError(f"no file matches '{spec.path}'")
    elif storage.kind(fs, path) is pafs.FileType.NotFound:
        raise BatchError(f"no such file or directory: '{spec.path}'")
    try:
        dataset = ds.dataset(paths, format=_ARROW_FORMATS[spec.format], filesystem=fs)
    except (pa.ArrowException, OSError) as exc:
        raise BatchError(f"cannot read '{spec.path}' as {spec.format}: {exc}") from exc
    missing = [c for c in spec.columns or () if c not in dataset.schema.names]
    if missing:
        raise BatchError(_missing(missing, spec.path, dataset.schema.names))
    return dataset


def _matching(fs: pafs.FileSystem, pattern: str) -> list[str]:
    """The files a glob matches: the directory before its first wildcard, listed and filtered."""
    if isinstance(fs, pafs.LocalFileSystem):
        return sorted(glob.glob(pattern, recursive=True))
    base = pattern[: min(pattern.find(c) for c in "*?[" if c in pattern)].rpartition("/")[0]
    return [f for f in storage.files_under(fs, base) if fnmatch.fnmatch(f, pattern)]


def _missing(columns: Sequence[str], where: str, names: Sequence[str]) -> str:
    return (
        f"'{where}' has no column {', '.join(repr(c) for c in columns)} "
        f"(it has: {', '.join(names)})"
    )


class Predictions:
    """One prediction source, held in memory, joined onto source batches by its keys."""

    def __init__(self, source: PredictionSource, source_keys: Sequence[str], data: Source) -> None:
        self.name = source.column_name
        self.source_keys = tuple(source_keys)
        wanted = [*source.join_on, *source.columns]
        missing = [c for c in wanted if c not in data.schema.names]
        if missing:
            raise BatchError(_missing(missing, source.dataset.path, data.schema.names))
        schema = pa.schema([data.schema.field(c) for c in wanted])
        table = pa.Table.from_batches(list(data.batches(wanted, 1 << 20)), schema=schema)
        if len(source.columns) == 1:
            self.values: pa.Array = table.column(source.columns[0]).combine_chunks()
        else:
            self.values = pa.StructArray.from_arrays(
                [table.column(c).combine_chunks() for c in source.columns],
                names=list(source.columns),
            )
        self._keys = [table.column(k).combine_chunks() for k in source.join_on]
        self._index: dict[tuple[Any, ...], int] | None = None
        if len(self._keys) > 1:
            keys = zip(*(k.to_pylist() for k in self._keys), strict=True)
            self._index = {key: i for i, key in enumerate(keys)}
            duplicates = table.num_rows - len(self._index)
        else:
            import pyarrow.compute as pc  # here: its import costs a job without predictions 80 ms

            duplicates = table.num_rows - pc.count_distinct(self._keys[0], mode="all").as_py()
        if duplicates:
            raise BatchError(
                f"prediction source '{source.name}' has {duplicates} duplicate keys on "
                f"{list(source.join_on)}: a left join would repeat source rows (Turing's SQL "
                f"join does, silently); keep one row per key in that source"
            )

    def column_for(self, batch: pa.RecordBatch) -> pa.Array:
        """This source's value for each row of `batch` (null where its key is absent)."""
        if self._index is None:
            keys = batch.column(self.source_keys[0])
            if keys.type != self._keys[0].type:
                keys = keys.cast(self._keys[0].type)
            import pyarrow.compute as pc

            positions = pc.index_in(keys, value_set=self._keys[0], skip_nulls=True)
        else:
            index = self._index
            rows = zip(*(batch.column(k).to_pylist() for k in self.source_keys), strict=True)
            positions = pa.array([index.get(key) for key in rows], type=pa.int64())
        return self.values.take(positions)


def join(batch: pa.RecordBatch, predictions: Sequence[Predictions]) -> pa.RecordBatch:
    """`batch` with each prediction source's ``__predictions__<name>`` column appended."""
    for source in predictions:
        batch = batch.append_column(source.name, source.column_for(batch))
    return batch


class Output:
    """Where a job writes, under its save mode; nothing is visible until `commit`."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.single_file = format_of(sink.path) is not None
        self._placement = storage.Placement(sink.path, sink.save_mode, self.single_file)
        self.skip = self._placement.skip
        self._writer: _Writer | None = None
        self._id = uuid.uuid4().hex
        self._parts = 0

    def write(self, batch: pa.RecordBatch) -> None:
        batch = sink_columns(batch, self.sink)
        if self._writer is None:
            self._writer = self._open(batch.schema)
        elif not self.single_file and self._writer.size() >= PART_BYTES:
            self._writer.close()
            self._writer = self._open(batch.schema)
        self._writer.write(batch)

    def _open(self, schema: pa.Schema) -> _Writer:
        fs, staging = self._placement.fs, self._placement.staging
        if self.single_file:
            fs.create_dir(self._placement.parent, recursive=True)
            return _writer(self.sink.format, fs.open_output_stream(staging), schema)
        fs.create_dir(staging, recursive=True)
        # part-00000-<id>, part-00001-<id>…: in name order, the rows' order.
        name = f"part-{self._parts:05d}-{self._id}{_EXTENSIONS[self.sink.format]}"
        self._parts += 1
        stream = fs.open_output_stream(f"{staging}/{name}")
        return _writer(self.sink.format, stream, schema)

    def commit(self, empty_schema: pa.Schema) -> None:
        """Close the file and move the output into place, replacing or adding as asked."""
        if self._writer is None:  # no rows: still write an empty table with the schema
            self.write(pa.RecordBatch.from_pylist([], schema=empty_schema))
        assert self._writer is not None
        self._writer.close()
        self._writer = None
        self._placement.commit()

    def abort(self) -> None:
        """Remove what was written: a failed job leaves the sink as it was."""
        if self._writer is not None:
            self._writer.close()
        self._placement.abort()


def sink_columns(batch: pa.RecordBatch, sink: Sink) -> pa.RecordBatch:
    """`batch` with the sink's ``columns`` only (all when it names none)."""
    if not sink.columns:
        return batch
    missing = [c for c in sink.columns if c not in batch.schema.names]
    if missing:
        raise BatchError(_missing(missing, "the ensembled table", batch.schema.names))
    return batch.select(list(sink.columns))


class _Writer:
    _stream: pa.NativeFile

    def write(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def size(self) -> int:
        """The bytes written to the file so far (what the format has flushed)."""
        return int(self._stream.tell())


def _writer(fmt: str, stream: pa.NativeFile, schema: pa.Schema) -> _Writer:
    if fmt == "parquet":
        return _ParquetWriter(stream, schema)
    if fmt == "csv":
        return _CsvWriter(stream, schema)
    return _JsonLinesWriter(stream)


class _ParquetWriter(_Writer):
    def __init__(self, stream: pa.NativeFile, schema: pa.Schema) -> None:
        import pyarrow.parquet as pq

        self._stream = stream
        # Dictionary encoding pays for text (few distinct values: country, route…); tried on
        # numbers it mostly falls back, and the try costs 3/4 of the write time.
        texts = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_binary(f.type)]
        self._writer = pq.ParquetWriter(stream, schema, use_dictionary=texts or False)

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()
        self._stream.close()


class _CsvWriter(_Writer):
    """CSV has no nested values: struct, list and map columns are written as JSON text."""

    def __init__(self, stream: pa.NativeFile, schema: pa.Schema) -> None:
        import pyarrow.csv as csv

        self._stream = stream
        self._nested = [i for i, f in enumerate(schema) if pa.types.is_nested(f.type)]
        for i in self._nested:
            schema = schema.set(i, pa.field(schema.field(i).name, pa.string()))
        self._writer = csv.CSVWriter(stream, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        for i in self._nested:
            values = batch.column(i).to_pylist()
            texts = [None if v is None else orjson.dumps(v).decode() for v in values]
            batch = batch.set_column(i, batch.schema.field(i).name, pa.array(texts, pa.string()))
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()
        self._stream.close()


class _JsonLinesWriter(_Writer):
    def __init__(self, stream: pa.NativeFile) -> None:
        self._stream = stream

    def write(self, batch: pa.RecordBatch) -> None:
        dumps = orjson.dumps
        self._stream.write(b"".join(dumps(row) + b"\n" for row in batch.to_pylist()))

    def close(self) -> None:
        self._stream.close()
