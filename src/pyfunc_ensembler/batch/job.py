"""The batch job spec: Turing's ``BatchEnsemblingJob``, with BigQuery or files for datasets.

Turing's own job files run unchanged: a dataset ``{type: BQ, bq_config: {table,
features} | {query, options}}``, a sink ``{type: BQ, bq_config: {table,
staging_bucket, options}, save_mode, columns}`` (`bigquery`). Beside them, file
datasets (ours). A job file is YAML (or JSON)::

    version: v1
    kind: BatchEnsemblingJob
    metadata:
      name: backfill
      annotations: {spark/spark.executor.memory: 2g}   # spark/<key>: Spark conf
    spec:
      source:
        dataset: {type: file, path: features/*.parquet, columns: [id, country]}
        join_on: [id]
      predictions:
        model_a:
          dataset: {type: file, path: model_a/}          # a directory of part files
          join_on: [id]
          columns: [data, is_default]                    # several -> a struct column
      ensembler:
        uri: ./my-ensembler
        result: {column_name: score, type: DOUBLE}       # ARRAY needs item_type
      sink:
        type: file
        path: out/
        columns: [id, score]
        save_mode: ERRORIFEXISTS

`parse_job` checks everything it can before any data is read and reports every
problem at once, each with the path to its field (`InvalidJob`).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from pyfunc_ensembler.contract import PREDICTION_COLUMN_PREFIX
from pyfunc_ensembler.errors import InvalidJob

KIND = "BatchEnsemblingJob"
SPARK_ANNOTATION_PREFIX = "spark/"
FORMATS = ("parquet", "csv", "jsonl")
BIGQUERY = "bigquery"
"""The `Dataset.format` / `Sink.format` of a BigQuery table (``type: BQ``)."""
_TABLE_ID = re.compile(r"^[a-z][a-z0-9-]+[.:][\w-]+\.[\w$-]+$")
_SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
}


class ResultType(enum.Enum):
    """Turing's result types, plus JSON: the answer's JSON text, as real time sends it."""

    DOUBLE = "DOUBLE"
    FLOAT = "FLOAT"
    INTEGER = "INTEGER"
    LONG = "LONG"
    STRING = "STRING"
    BOOLEAN = "BOOLEAN"
    ARRAY = "ARRAY"
    JSON = "JSON"


ITEM_TYPES = tuple(t for t in ResultType if t not in (ResultType.ARRAY, ResultType.JSON))


class SaveMode(enum.Enum):
    """What to do when the sink already exists (Spark's names, as Turing's)."""

    ERRORIFEXISTS = "errorifexists"
    OVERWRITE = "overwrite"
    APPEND = "append"
    IGNORE = "ignore"


class OnInvalid(enum.Enum):
    """An answer that does not fit the result type: fail naming the row, or null and count."""

    FAIL = "fail"
    NULL = "null"


@dataclasses.dataclass(frozen=True)
class BigQuery:
    """Turing's ``bq_config``: of a dataset (table and features, or query) or of the sink."""

    table: str | None = None
    """``project.dataset.table``."""
    features: tuple[str, ...] | None = None
    query: str | None = None
    """Standard SQL; when given, it is the dataset (``table`` and ``features`` unused)."""
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """spark-bigquery connector options (the local engine honours the ones it knows)."""
    staging_bucket: str | None = None
    """The sink's: the connector's ``temporaryGcsBucket`` (Spark's indirect write)."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    path: str
    """A local path, a glob (``parts/*.parquet``), a directory, or a URI the engine reads;
    a BigQuery table's id (or ``(query)``)."""
    format: str
    columns: tuple[str, ...] | None = None
    """Columns to read (all when ``None``)."""
    bigquery: BigQuery | None = None


@dataclasses.dataclass(frozen=True)
class PredictionSource:
    name: str
    dataset: Dataset
    join_on: tuple[str, ...]
    columns: tuple[str, ...]

    @property
    def column_name(self) -> str:
        return PREDICTION_COLUMN_PREFIX + self.name


@dataclasses.dataclass(frozen=True)
class Result:
    column_name: str
    type: ResultType
    item_type: ResultType | None = None
    on_invalid: OnInvalid = OnInvalid.FAIL

    def describe(self) -> str:
        return f"ARRAY<{self.item_type.value}>" if self.item_type else self.type.value


@dataclasses.dataclass(frozen=True)
class Sink:
    path: str
    format: str
    save_mode: SaveMode = SaveMode.ERRORIFEXISTS
    columns: tuple[str, ...] | None = None
    bigquery: BigQuery | None = None


@dataclasses.dataclass(frozen=True)
class Job:
    name: str
    source: Dataset
    join_on: tuple[str, ...]
    predictions: tuple[PredictionSource, ...]
    ensembler_uri: str
    result: Result
    sink: Sink
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def spark_conf(self) -> dict[str, str]:
        """The ``spark/<key>`` annotations as Spark configuration ``{key: value}``."""
        return {
            key[len(SPARK_ANNOTATION_PREFIX) :]: value
            for key, value in self.annotations.items()
            if key.startswith(SPARK_ANNOTATION_PREFIX)
        }


def load_job(path: str | Path) -> Job:
    """Read and validate a job file."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise InvalidJob([("", f"{path} is not valid YAML: {exc}")]) from None
    return parse_job(data)


def short_job(
    ensembler_uri: str,
    input: str,
    output: str,
    *,
    result_column: str = "result",
    result_type: str = "JSON",
    item_type: str | None = None,
    save_mode: str = "errorifexists",
    on_invalid: str = "fail",
) -> Job:
    """The job of the short form: one table that already has its prediction columns."""
    result: dict[str, Any] = {"column_name": result_column, "type": result_type}
    if item_type:
        result["item_type"] = item_type
    result["on_invalid"] = on_invalid
    return parse_job(
        {
            "kind": KIND,
            "metadata": {"name": Path(input).stem or "batch"},
            "spec": {
                "source": {"dataset": {"path": input}},
                "ensembler": {"uri": ensembler_uri, "result": result},
                "sink": {"path": output, "save_mode": save_mode},
            },
        }
    )


def parse_job(data: object) -> Job:
    """Validate a decoded job document; raise `InvalidJob` listing every problem."""
    check = _Checker()
    job = check.job(data)
    if check.problems or job is None:
        raise InvalidJob(check.problems or [("", "the job is empty")])
    return job


class _Checker:
    """Reads the document field by field, noting each problem instead of stopping at it."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def fail(self, path: str, what: str) -> None:
        self.problems.append((path, what))

    def mapping(self, value: object, path: str, keys: Sequence[str] | None) -> Mapping[str, Any]:
        """`value` as a mapping; `keys` are the fields allowed (``None``: any)."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping, not {_kind(value)}")
            return {}
        for key in value:
            if keys is not None and key not in keys:
                self.fail(
                    f"{path}.{key}" if path else str(key),
                    f"unknown field (expected one of: {', '.join(keys)})",
                )
        return value

    def text(self, value: object, path: str, *, required: bool = True) -> str | None:
        if value is None:
            if required:
                self.fail(path, "is required")
            return None
        if not isinstance(value, str) or not value:
            self.fail(path, f"must be a non-empty string, not {_kind(value)}")
            return None
        return value

    def names(self, value: object, path: str, *, required: bool) -> tuple[str, ...] | None:
        if value is None:
            if required:
                self.fail(path, "is required")
            return None
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(path, "must be a list of column names")
            return None
        if len(set(value)) != len(value):
            self.fail(path, "names a column twice")
        if required and not value:
            self.fail(path, "must name at least one column")
        return tuple(value)

    def choice(self, value: object, path: str, kind: type[enum.Enum], default: Any) -> Any:
        if value is None:
            return default
        try:
            return kind(str(value).lower() if kind is not ResultType else str(value).upper())
        except ValueError:
            names = ", ".join(m.value.upper() for m in kind)  # type: ignore[attr-defined]
            self.fail(path, f"{value!r} is not one of {names}")
            return default

    def job(self, data: object) -> Job | None:
        top = self.mapping(data, "", ("version", "kind", "metadata", "spec"))
        if not top:
            if not self.problems:
                self.fail("", "the job is empty")
            return None
        if top.get("kind", KIND) != KIND:
            self.fail("kind", f"must be {KIND}, not {top.get('kind')!r}")
        meta = self.mapping(top.get("metadata"), "metadata", ("name", "annotations"))
        annotations = self.mapping(meta.get("annotations"), "metadata.annotations", None)
        for key, value in annotations.items():
            if not isinstance(value, (str, int, float, bool)):
                self.fail(f"metadata.annotations.{key}", "must be a string")
        spec = self.mapping(top.get("spec"), "spec", ("source", "predictions", "ensembler", "sink"))
        if "spec" not in top:
            self.fail("spec", "is required")
        source, join_on = self.source(spec.get("source"))
        predictions = self.predictions(spec.get("predictions"), join_on)
        uri, result = self.ensembler(spec.get("ensembler"))
        sink = self.sink(spec.get("sink"))
        if self.problems or None in (source, uri, result, sink):
            return None
        return Job(
            name=str(meta.get("name") or "batch"),
            source=source,  # type: ignore[arg-type]
            join_on=join_on or (),
            predictions=predictions,
            ensembler_uri=uri,  # type: ignore[arg-type]
            result=result,  # type: ignore[arg-type]
            sink=sink,  # type: ignore[arg-type]
            annotations={str(k): str(v) for k, v in annotations.items()},
        )

    def dataset(self, value: object, path: str) -> Dataset | None:
        if isinstance(value, str):
            value = {"path": value}
        if value is None:
            self.fail(path, "is required")
            return None
        data = self.mapping(value, path, ("type", "path", "format", "columns", "bq_config"))
        kind = self.kind(data.get("type"), f"{path}.type")
        if kind == "BQ":
            for key in ("path", "format", "columns"):
                if key in data:
                    self.fail(f"{path}.{key}", "is for file datasets: a BQ one has bq_config")
            config = self.bq_config(data.get("bq_config"), f"{path}.bq_config", sink=False)
            if config is None:
                return None
            if config.query is None:
                return Dataset(config.table or "", BIGQUERY, config.features, config)
            return Dataset("(query)", BIGQUERY, None, config)  # Turing: a query wins
        if "bq_config" in data:
            self.fail(f"{path}.bq_config", "is for type BQ")
        location = self.text(data.get("path"), f"{path}.path")
        fmt = self.format(data.get("format"), location, f"{path}.format")
        columns = self.names(data.get("columns"), f"{path}.columns", required=False)
        if location is None or fmt is None:
            return None
        return Dataset(location, fmt, columns)

    def kind(self, value: object, path: str) -> str | None:
        """``file`` (the default) or Turing's ``BQ``."""
        if value is None or value == "file":
            return "file"
        if str(value).upper() == "BQ":
            return "BQ"
        self.fail(path, f"must be BQ or file, not {value!r}")
        return None

    def bq_config(self, value: object, path: str, *, sink: bool) -> BigQuery | None:
        fields = (
            ("table", "staging_bucket", "options")
            if sink
            else ("table", "features", "query", "options")
        )
        data = self.mapping(value, path, fields)
        if value is None:
            self.fail(path, "is required for type BQ")
            return None
        table = self.text(data.get("table"), f"{path}.table", required=sink)
        query = None if sink else self.text(data.get("query"), f"{path}.query", required=False)
        if table and not _TABLE_ID.match(table):
            self.fail(f"{path}.table", f"{table!r} is not a table id project.dataset.table")
        if not sink and "table" not in data and "query" not in data:
            self.fail(path, 'needs "table" (and "features") or "query"')
        features = self.names(data.get("features"), f"{path}.features", required=False)
        staging = self.text(data.get("staging_bucket"), f"{path}.staging_bucket", required=False)
        options = self.mapping(data.get("options"), f"{path}.options", None)
        for key, option in options.items():
            if not isinstance(option, (str, int, float, bool)):
                self.fail(f"{path}.options.{key}", "must be a string")
        texts = {
            str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in options.items()
        }
        return BigQuery(table, features or None, query, texts, staging)

    def format(self, value: object, location: str | None, path: str) -> str | None:
        if value is not None:
            fmt = str(value).lower()
            if fmt in ("json", "ndjson", "json-lines", "jsonlines"):
                fmt = "jsonl"
            if fmt not in FORMATS:
                self.fail(path, f"{value!r} is not one of {', '.join(FORMATS)}")
                return None
            return fmt
        if location is None:
            return None
        found = format_of(location)
        if found is None and not Path(location.rstrip("/*")).suffix:
            return "parquet"  # a directory (of part files) without a format: Parquet
        if found is None:
            self.fail(
                path, f"cannot tell the format of '{location}': give one of {', '.join(FORMATS)}"
            )
        return found

    def source(self, value: object) -> tuple[Dataset | None, tuple[str, ...] | None]:
        data = self.mapping(value, "spec.source", ("dataset", "join_on"))
        if value is None:
            self.fail("spec.source", "is required")
        dataset = self.dataset(data.get("dataset"), "spec.source.dataset") if data else None
        join_on = self.names(data.get("join_on"), "spec.source.join_on", required=False)
        return dataset, join_on

    def predictions(
        self, value: object, join_on: tuple[str, ...] | None
    ) -> tuple[PredictionSource, ...]:
        data = self.mapping(value, "spec.predictions", None)
        if data and not join_on:
            self.fail("spec.source.join_on", "is required when there are predictions to join")
        sources = []
        for name, entry in data.items():
            path = f"spec.predictions.{name}"
            fields = self.mapping(entry, path, ("dataset", "join_on", "columns"))
            if entry is None:
                self.fail(path, "is empty")
            dataset = self.dataset(fields.get("dataset"), f"{path}.dataset") if fields else None
            keys = self.names(fields.get("join_on"), f"{path}.join_on", required=True)
            columns = self.names(fields.get("columns"), f"{path}.columns", required=True)
            if keys and join_on and len(keys) != len(join_on):
                self.fail(
                    f"{path}.join_on",
                    f"has {len(keys)} columns but spec.source.join_on "
                    f"has {len(join_on)}: they pair up in order",
                )
            if keys and columns and set(keys) & set(columns):
                self.fail(f"{path}.columns", "must not repeat a join_on column")
            if dataset and keys and columns:
                sources.append(PredictionSource(str(name), dataset, keys, columns))
        return tuple(sources)

    def ensembler(self, value: object) -> tuple[str | None, Result | None]:
        data = self.mapping(value, "spec.ensembler", ("uri", "result"))
        if value is None:
            self.fail("spec.ensembler", "is required")
            return None, None
        uri = self.text(data.get("uri"), "spec.ensembler.uri")
        path = "spec.ensembler.result"
        fields = self.mapping(
            data.get("result"), path, ("column_name", "type", "item_type", "on_invalid")
        )
        if data.get("result") is None:
            self.fail(path, "is required")
            return uri, None
        column = self.text(fields.get("column_name"), f"{path}.column_name")
        if column and column.startswith(PREDICTION_COLUMN_PREFIX):
            self.fail(f"{path}.column_name", f"must not start with {PREDICTION_COLUMN_PREFIX}")
        kind = self.choice(fields.get("type"), f"{path}.type", ResultType, None)
        if fields.get("type") is None:
            self.fail(f"{path}.type", "is required")
        item = self.choice(fields.get("item_type"), f"{path}.item_type", ResultType, None)
        if kind is ResultType.ARRAY and item is None and fields.get("item_type") is None:
            self.fail(f"{path}.item_type", "is required when type is ARRAY")
        if kind is not ResultType.ARRAY and fields.get("item_type") is not None:
            self.fail(f"{path}.item_type", "is only for type ARRAY")
        if item is not None and item not in ITEM_TYPES:
            self.fail(f"{path}.item_type", f"{item.value} cannot be an ARRAY item")
        on_invalid = self.choice(
            fields.get("on_invalid"), f"{path}.on_invalid", OnInvalid, OnInvalid.FAIL
        )
        if column is None or kind is None:
            return uri, None
        return uri, Result(column, kind, item if kind is ResultType.ARRAY else None, on_invalid)

    def sink(self, value: object) -> Sink | None:
        path = "spec.sink"
        data = self.mapping(
            value, path, ("type", "path", "format", "save_mode", "columns", "bq_config")
        )
        if value is None:
            self.fail(path, "is required")
            return None
        mode = self.choice(
            data.get("save_mode"), f"{path}.save_mode", SaveMode, SaveMode.ERRORIFEXISTS
        )
        columns = self.names(data.get("columns"), f"{path}.columns", required=False)
        if self.kind(data.get("type"), f"{path}.type") == "BQ":
            for key in ("path", "format"):
                if key in data:
                    self.fail(f"{path}.{key}", "is for file sinks: a BQ one has bq_config")
            config = self.bq_config(data.get("bq_config"), f"{path}.bq_config", sink=True)
            if config is None or config.table is None:
                return None
            return Sink(config.table, BIGQUERY, mode, columns, config)
        if "bq_config" in data:
            self.fail(f"{path}.bq_config", "is for type BQ")
        location = self.text(data.get("path"), f"{path}.path")
        fmt = self.format(
            data.get("format") or _default_sink_format(location), location, f"{path}.format"
        )
        if location is None or fmt is None:
            return None
        return Sink(location, fmt, mode, columns)


def format_of(location: str) -> str | None:
    """The format a path's extension names (``None`` for a directory or no extension)."""
    for suffix, fmt in _SUFFIXES.items():
        if location.rstrip("/").lower().endswith(suffix):
            return fmt
    return None


def _default_sink_format(location: str | None) -> str | None:
    # A sink directory without a format is written as Parquet.
    return None if location is None or format_of(location) else "parquet"


def _kind(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else f"{type(value).__name__} {value!r}"
