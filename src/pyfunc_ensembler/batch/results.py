"""Ensemblers' answers -> one typed Arrow column, and the report of a finished job.

What each result type accepts (``None`` is always a null):

=========  ==========================================================  ============
type       accepts                                                     column type
=========  ==========================================================  ============
DOUBLE     int, float (numpy's too; not bool)                          float64
FLOAT      the same, within float32's range                            float32
INTEGER    int (numpy's too; not bool, not float) within 32 bits        int32
LONG       the same, within 64 bits                                    int64
STRING     str                                                         string
BOOLEAN    bool (numpy's too)                                          bool
ARRAY      list, tuple or numpy array of items of `item_type`          list<item>
JSON       anything the real-time server can answer with: its JSON     string
=========  ==========================================================  ============

Nothing is coerced silently (no 1.5 -> 1, no True -> 1.0): a value that does not fit
is an `InvalidResult` naming the row, or, with ``on_invalid: null``, a null that
is counted. Both engines build their result column here, so they agree.
"""

from __future__ import annotations

import array
import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from pyfunc_ensembler.batch.job import OnInvalid, Result, ResultType
from pyfunc_ensembler.errors import InvalidResult, SerializationFailed
from pyfunc_ensembler.serialization import dumps

_FLOAT32_MAX = 3.4028234663852886e38
_INT_RANGE = {ResultType.INTEGER: (-(2**31), 2**31 - 1), ResultType.LONG: (-(2**63), 2**63 - 1)}

ARROW_TYPES: dict[ResultType, pa.DataType] = {
    ResultType.DOUBLE: pa.float64(),
    ResultType.FLOAT: pa.float32(),
    ResultType.INTEGER: pa.int32(),
    ResultType.LONG: pa.int64(),
    ResultType.STRING: pa.string(),
    ResultType.BOOLEAN: pa.bool_(),
    ResultType.JSON: pa.string(),
}

RowName = Callable[[int], str]
"""``row_name(index in the batch) -> "row 12 (id=7)"``, for error messages."""


def arrow_type(result: Result) -> pa.DataType:
    if result.type is ResultType.ARRAY:
        assert result.item_type is not None
        return pa.list_(ARROW_TYPES[result.item_type])
    return ARROW_TYPES[result.type]


def to_arrow(values: list[Any], result: Result, row_name: RowName) -> tuple[pa.Array, int]:
    """The result column for `values`, and how many values were nulled for not fitting."""
    nulled = 0
    if result.type is ResultType.JSON:
        values, nulled = _json_texts(values, result, row_name)
    elif not _kinds_fit(values, result):
        values, nulled = _checked(values, result, row_name)
    kind = arrow_type(result)
    try:
        array = _packed(values, result.type) or pa.array(values, type=kind)
        _check_range(array, result)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        # Types were checked, so a value is out of range: find it, value by value.
        values, more = _checked(values, result, row_name)
        nulled += more
        array = pa.array(values, type=kind)
    return array, nulled


_PACKED_CODES = {
    ResultType.DOUBLE: "d",
    ResultType.FLOAT: "f",
    ResultType.INTEGER: "i",
    ResultType.LONG: "q",
}


def _packed(values: list[Any], result_type: ResultType) -> pa.Array | None:
    """Numbers without nulls as a column through the standard library's `array.array`,
    whose C buffer becomes the column's as it is; ``None`` when a value is a null.

    Three times faster than `pyarrow.array`, which also imports pandas (0.3-0.8 s of a
    job's start) to ask whether a list is one of its arrays. An integer out of range
    raises `OverflowError` as `pyarrow.array` would; a FLOAT out of range becomes an
    infinity, which `_check_range` refuses.
    """
    code = _PACKED_CODES.get(result_type)
    if code is None:
        return None
    try:
        packed = array.array(code, values)
    except TypeError:  # a None (types were checked)
        return None
    return pa.Array.from_buffers(
        ARROW_TYPES[result_type], len(packed), [None, pa.py_buffer(packed)]
    )


def _checked(values: list[Any], result: Result, row_name: RowName) -> tuple[list[Any], int]:
    """`values` with each checked: the first bad one fails, or every bad one becomes null."""
    checked, nulled = list(values), 0
    for index, value in enumerate(values):
        problem = problem_with(value, result.type, result.item_type)
        if problem is None:
            continue
        if result.on_invalid is OnInvalid.FAIL:
            raise InvalidResult(
                f"{row_name(index)}: the ensembler answered {_show(value)}, {problem} "
                f"(result type {result.describe()}; on_invalid: null writes a null instead)"
            )
        checked[index] = None
        nulled += 1
    return checked, nulled


def _json_texts(values: list[Any], result: Result, row_name: RowName) -> tuple[list[Any], int]:
    texts: list[Any] = [None] * len(values)
    nulled = 0
    for index, value in enumerate(values):
        if value is None:
            continue
        try:
            texts[index] = dumps(value).decode()
        except SerializationFailed as exc:
            if result.on_invalid is OnInvalid.FAIL:
                raise InvalidResult(f"{row_name(index)}: {exc.message}") from exc
            nulled += 1
    return texts, nulled


def _kinds_fit(values: Sequence[Any], result: Result) -> bool:
    """Whether every value's type fits, checked per distinct type (fast for big batches)."""
    if result.type is ResultType.ARRAY:
        if not all(_fits(k, ResultType.ARRAY) for k in set(map(type, values))):
            return False
        items = (v for value in values if value is not None for v in value)
        return all(_fits(k, result.item_type) for k in set(map(type, items)))  # type: ignore[arg-type]
    return all(_fits(k, result.type) for k in set(map(type, values)))


@functools.lru_cache(maxsize=256)
def _fits(kind: type, result_type: ResultType) -> bool:
    if kind is type(None):
        return True
    name = f"{kind.__module__}.{kind.__name__}"
    if result_type in (ResultType.DOUBLE, ResultType.FLOAT):
        return (issubclass(kind, (int, float)) and not issubclass(kind, bool)) or _is_numpy(
            name, ("float", "int", "uint")
        )
    if result_type in (ResultType.INTEGER, ResultType.LONG):
        return (issubclass(kind, int) and not issubclass(kind, bool)) or _is_numpy(
            name, ("int", "uint")
        )
    if result_type is ResultType.STRING:
        return issubclass(kind, str)
    if result_type is ResultType.BOOLEAN:
        return issubclass(kind, bool) or name in ("numpy.bool", "numpy.bool_")
    if result_type is ResultType.ARRAY:
        return issubclass(kind, (list, tuple)) or name == "numpy.ndarray"
    return True


def _is_numpy(name: str, prefixes: tuple[str, ...]) -> bool:
    return name.startswith("numpy.") and name[len("numpy.") :].startswith(prefixes)


def problem_with(value: Any, result_type: ResultType, item_type: ResultType | None) -> str | None:
    """Why `value` does not fit the result type, or ``None`` when it does."""
    if value is None:
        return None
    if not _fits(type(value), result_type):  # type: ignore[arg-type]
        return f"which is not {_article(result_type)}"
    if result_type is ResultType.ARRAY:
        assert item_type is not None
        for position, item in enumerate(value):
            problem = problem_with(item, item_type, None)
            if problem is not None:
                return f"whose item {position} ({_show(item)}) is not {_article(item_type)}"
        return None
    if result_type in _INT_RANGE:
        low, high = _INT_RANGE[result_type]
        if not low <= int(value) <= high:
            return f"which is out of {result_type.value}'s range"
    if result_type is ResultType.FLOAT and math.isfinite(value) and abs(value) > _FLOAT32_MAX:
        return "which is out of FLOAT's range"
    return None


def _check_range(array: pa.Array, result: Result) -> None:
    """FLOAT overflows to infinity silently in Arrow: refuse it (the caller then finds it)."""
    kind = result.item_type if result.type is ResultType.ARRAY else result.type
    if kind is not ResultType.FLOAT:
        return
    import pyarrow.compute as pc

    flat = array.flatten() if result.type is ResultType.ARRAY else array
    if pc.any(pc.is_inf(flat)).as_py():
        raise ValueError("infinity in FLOAT: an overflow or a real infinity")


def _article(kind: ResultType) -> str:
    return f"an {kind.value}" if kind.value[0] in "AEIOU" else f"a {kind.value}"


def _show(value: Any) -> str:
    text = repr(value)
    return f"{text[:60]}… ({type(value).__name__})" if len(text) > 60 else text


@dataclasses.dataclass
class Report:
    """What a finished job did, for people and for scripts (``--report`` JSON)."""

    engine: str
    rows: int = 0
    nulled: int = 0
    """Answers written as null because they did not fit the result type."""
    seconds: float = 0.0
    output: str = ""
    skipped: bool = False
    """The sink existed and save_mode was ignore: nothing was done."""
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    """Seconds spent per stage (local engine): read, join, ensemble, result, write."""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        if self.skipped:
            return f"{self.output} exists and save_mode is ignore: nothing done"
        line = (
            f"ensembled {self.rows:,} rows in {self.seconds:.2f} s "
            f"({self.rows_per_second:,.0f} rows/s, {self.engine}) -> {self.output}"
        )
        if self.nulled:
            line += f"; {self.nulled:,} answers did not fit the result type and are null"
        return line

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "rows_per_second": round(self.rows_per_second, 1)}
