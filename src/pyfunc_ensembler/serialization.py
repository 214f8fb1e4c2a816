"""Request bytes -> Python, and an ensembler's answer -> JSON bytes, with orjson.

What an answer may be, and the JSON it becomes:
- ``None``, bool, int, float, str, list, tuple, dict (non-string keys become strings),
  dataclasses, datetimes, UUIDs: as orjson writes them;
- numpy scalars and arrays: numbers and (nested) lists;
- pandas ``Series``: the list of its values (the index is dropped);
- pandas ``DataFrame``: a list with one object per row, ``{column: value}``
  (``DataFrame.to_dict(orient="records")``);
- sets: lists; ``decimal.Decimal``: a number;
- NaN and ±Infinity: ``null`` (JSON has no such numbers; the same as Turing's server).
Anything else is a serialization error (HTTP 500) naming the type.
"""

from __future__ import annotations

import decimal
from typing import Any

import orjson

from pyfunc_ensembler.errors import InvalidJSON, InvalidUTF8, SerializationFailed

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "UTF-8" in exc.msg:
            raise InvalidUTF8(f"the body is not valid UTF-8: {exc}") from None
        if not body:
            raise InvalidJSON("the body is empty; a JSON object is required") from None
        raise InvalidJSON(f"the body is not valid JSON: {exc}") from None


def dumps(answer: Any) -> bytes:
    try:
        return orjson.dumps(answer, default=_default, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise SerializationFailed(
            f"the ensembler's answer cannot be written as JSON: {exc}"
        ) from exc


def _default(value: Any) -> Any:
    """Convert what orjson does not know natively; called only for such values."""
    kind = type(value)
    module = kind.__module__
    if module.startswith("pandas"):
        if kind.__name__ == "DataFrame":
            return value.to_dict(orient="records")
        if hasattr(value, "tolist"):
            return value.tolist()
    if module.startswith("numpy") and hasattr(value, "tolist"):
        # Object arrays and numpy types orjson leaves to us (float16, str_, …).
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"type {kind.__module__}.{kind.__qualname__} is not JSON serializable")
