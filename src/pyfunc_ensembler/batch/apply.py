"""One Arrow record batch in, the same batch with the result column out: what both engines run.

The local engine calls `TableEnsembler.apply` on each batch it streams; the Spark
engine ships the same object to its executors and calls it from ``mapInArrow``. So
the rows an ensembler sees, and the typed column its answers become, are the same
whichever engine runs the job.

For a `PyFunc` ensembler (ours or Turing's) each row is a plain dict, built column-wise
by `rows.ensemble_rows`: ``input`` = the non-prediction columns, ``predictions`` =
``{route: value of __predictions__<route>}``, ``treatment_config`` = ``None``. Arrow
structs arrive as dicts and lists as lists, so a prediction column that is a struct
``{data, is_default}`` gives ``ensemble`` exactly what real time gives it. Any other
pyfunc model gets each batch as a pandas DataFrame through MLflow's ``predict``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from pyfunc_ensembler.batch.job import Result
from pyfunc_ensembler.batch.results import RowName, to_arrow
from pyfunc_ensembler.errors import EnsembleFailed, EnsembleRowFailed, UnreadableValue
from pyfunc_ensembler.rows import ensemble_rows
from pyfunc_ensembler.signature import EnsembleCall

Answers = Callable[[pa.RecordBatch], list[Any]]


class TableEnsembler:
    """Ensemble record batches with the model at `uri`, loaded once per process, lazily.

    Picklable before and after loading (only the URI and the result spec travel), so
    Spark can ship it to executors that load the model themselves.
    """

    def __init__(
        self, uri: str, result: Result, keys: Sequence[str] = (), *, force_mlflow: bool = False
    ) -> None:
        self.uri = uri
        self.result = result
        self.keys = tuple(keys)
        self.force_mlflow = force_mlflow
        self._answers: Answers | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_answers": None}

    def load(self) -> TableEnsembler:
        """Load the model now (the local engine does, to fail before reading any data)."""
        if self._answers is None:
            self._answers = _answers_of(self.uri, self.force_mlflow)
        return self

    def answers(self, batch: pa.RecordBatch) -> list[Any]:
        """The ensembler's answer for each row of `batch`, as Python values."""
        return self.load()._answers(batch)  # type: ignore[misc]

    def apply(self, batch: pa.RecordBatch, where: str = "row {}", offset: int = 0) -> Applied:
        """`batch` with the result column appended; `where` names a row in errors."""
        row_name = self.row_namer(batch, where, offset)
        started = time.perf_counter()
        try:
            answers = self.answers(batch)
        except EnsembleRowFailed as exc:
            raise EnsembleFailed(f"{row_name(exc.row)}: ensemble() raised {exc.message}") from (
                exc.__cause__
            )
        except UnreadableValue as exc:
            raise UnreadableValue(f"{row_name(exc.row)}: {exc.message}") from exc.__cause__
        answered = time.perf_counter()
        column, nulled = to_arrow(answers, self.result, row_name)
        applied = Applied(batch.append_column(self.result.column_name, column), nulled)
        applied.seconds = {"ensemble": answered - started, "result": time.perf_counter() - answered}
        return applied

    def row_namer(self, batch: pa.RecordBatch, where: str, offset: int) -> RowName:
        """``row_name(i)``: the row's place (and its join keys) for people reading errors."""
        keys = [k for k in self.keys if k in batch.schema.names]

        def row_name(index: int) -> str:
            name = where.format(offset + index)
            if keys:
                values = ", ".join(f"{k}={batch.column(k)[index].as_py()!r}" for k in keys)
                name += f" ({values})"
            return name

        return row_name


class Applied:
    """An ensembled batch, the answers nulled in it, and the seconds each step took."""

    __slots__ = ("batch", "nulled", "seconds")

    def __init__(self, batch: pa.RecordBatch, nulled: int) -> None:
        self.batch = batch
        self.nulled = nulled
        self.seconds: dict[str, float] = {}


def _answers_of(uri: str, force_mlflow: bool) -> Answers:
    from pyfunc_ensembler.loader import load

    ensembler = load(uri, force_mlflow=force_mlflow)
    if ensembler.ensemble is None:
        return _through_mlflow(uri)
    call = _synchronous(ensembler.ensemble) if ensembler.is_async else ensembler.ensemble

    def answers(batch: pa.RecordBatch) -> list[Any]:
        columns = {name: _column_values(batch, name) for name in batch.schema.names}
        return ensemble_rows(call, columns, batch.num_rows)

    return answers


def _column_values(batch: pa.RecordBatch, name: str) -> Sequence[Any]:
    """`python_values` of the column `name`; a value Python cannot hold is an
    `UnreadableValue` naming the column and its row, not a bare `OverflowError`."""
    array = batch.column(name)
    try:
        return python_values(array)
    except (OverflowError, ValueError) as exc:  # e.g. "date value out of range"
        row = _first_unreadable(array)
        detail = ""
        if pa.types.is_timestamp(array.type) or pa.types.is_date(array.type):
            stored = array.slice(row, 1).view(
                pa.int64() if array.type.bit_width == 64 else pa.int32()
            )
            detail = f" (stored as {stored[0].as_py()}; Python's dates hold the years 1 to 9999)"
        raise UnreadableValue(
            f"column {name!r} holds a {array.type} value that Python cannot hold{detail}: "
            f"{exc}; correct or filter it in the source",
            row,
        ) from exc


def _first_unreadable(array: pa.Array) -> int:
    for index in range(len(array)):
        try:
            array[index].as_py()
        except (OverflowError, ValueError):
            return index
    return 0


def python_values(array: pa.Array) -> Sequence[Any]:
    """The Python values ``array.to_pylist()`` gives, the same types, made faster.

    Numbers without nulls come from a `memoryview` of the column's buffer, which makes
    each value when the row loop takes it: no list of a batch's values, whose memory
    (megabytes a batch) Python hands back to the system after each batch and takes
    again, page by page, for the next one (a sixth of a worker's time went there).
    Structs (a prediction's ``{data, is_default}``) are built from their children's
    values with a dict literal compiled for the field names: Arrow builds each dict
    field by field in C++, six times slower.
    """
    kind = array.type
    code = _MEMORYVIEW_CODES.get(kind)
    if code is not None and not array.null_count and len(array):  # no rows: maybe no buffer
        width = kind.bit_width // 8
        values = memoryview(array.buffers()[1])[array.offset * width :][: len(array) * width]
        return values.cast(code)  # type: ignore[call-overload,no-any-return]
    names = [f.name for f in kind] if pa.types.is_struct(kind) else []
    if not names or len(set(names)) != len(names):
        return array.to_pylist()  # type: ignore[no-any-return]
    make = _struct_maker(tuple(names))
    # flatten() applies the array's offset and nulls to the children.
    structs: list[Any] = list(map(make, *(python_values(child) for child in array.flatten())))
    if array.null_count:
        import pyarrow.compute as pc

        for index in pc.indices_nonzero(array.is_null()).to_pylist():
            structs[index] = None
    return structs


_MEMORYVIEW_CODES = {
    pa.int8(): "b",
    pa.int16(): "h",
    pa.int32(): "i",
    pa.int64(): "q",
    pa.uint8(): "B",
    pa.uint16(): "H",
    pa.uint32(): "I",
    pa.uint64(): "Q",
    pa.float32(): "f",
    pa.float64(): "d",
}
"""Arrow's fixed-width numbers and the `struct` codes of the same C types, whose values
`memoryview` makes as the ints and floats that ``to_pylist`` makes."""


@functools.lru_cache(maxsize=64)
def _struct_maker(names: tuple[str, ...]) -> Callable[..., dict[str, Any]]:
    """``make(v0, v1, …) -> {names[0]: v0, …}``: a dict literal (names written with repr)."""
    values = [f"v{i}" for i in range(len(names))]
    fields = ", ".join(f"{name!r}: {v}" for name, v in zip(names, values, strict=True))
    return eval(f"lambda {', '.join(values)}: {{{fields}}}")  # type: ignore[no-any-return]


def _synchronous(ensemble: EnsembleCall) -> EnsembleCall:
    """An ``async def ensemble`` run to completion, row after row, on a private loop."""
    import asyncio  # here: a job of a synchronous ensembler (most) is spared its import

    loop = asyncio.new_event_loop()
    return lambda *args: loop.run_until_complete(ensemble(*args))


def _through_mlflow(uri: str) -> Answers:
    """A pyfunc model that is not a `PyFunc` ensembler: its ``predict`` takes a DataFrame."""
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(uri)

    def answers(batch: pa.RecordBatch) -> list[Any]:
        predicted = model.predict(batch.to_pandas())
        values = predicted.tolist() if hasattr(predicted, "tolist") else list(predicted)
        if len(values) != batch.num_rows:
            raise EnsembleFailed(
                f"predict() answered {len(values)} values for {batch.num_rows} rows"
            )
        return values

    return answers
