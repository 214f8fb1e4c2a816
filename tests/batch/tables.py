"""Tables for the batch tests: one prediction route per result type, as real time sends it."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from pyfunc_ensembler.batch.job import ITEM_TYPES, ResultType
from pyfunc_ensembler.batch.results import ARROW_TYPES

# Values exact in every type's width, so the JSON of real time and the column compare equal.
SAMPLES: dict[ResultType, list[Any]] = {
    ResultType.DOUBLE: [0.1, -2.5, None, 1e300],
    ResultType.FLOAT: [0.5, -1.25, None, 3.0],
    ResultType.INTEGER: [1, -2, None, 2**31 - 1],
    ResultType.LONG: [2**40, -1, None, 0],
    ResultType.STRING: ["a", "é", None, ""],
    ResultType.BOOLEAN: [True, False, None, True],
}

# (result type, item type, route name) for every result type of Turing's, and ARRAY of each.
CASES = [(t, None, t.value.lower()) for t in ITEM_TYPES] + [
    (ResultType.ARRAY, t, f"array_{t.value.lower()}") for t in ITEM_TYPES
]


def values(kind: ResultType, item: ResultType | None) -> list[Any]:
    if item is None:
        return SAMPLES[kind]
    items = SAMPLES[item]
    return [items[:2], [], None, [items[3], None]]


def typed_table(route: str) -> pa.Table:
    """4 rows; ``route`` says which prediction the `Pick` ensembler answers with."""
    columns: dict[str, Any] = {"id": pa.array([0, 1, 2, 3]), "route": pa.array([route] * 4)}
    for kind, item, name in CASES:
        data_type = ARROW_TYPES[kind] if item is None else pa.list_(ARROW_TYPES[item])
        data = pa.array(values(kind, item), type=data_type)
        flags = pa.array([name == "double", False, True, False])
        columns[f"__predictions__{name}"] = pa.StructArray.from_arrays(
            [data, flags], names=["data", "is_default"]
        )
    return pa.table(columns)


def router_body(row: dict[str, Any]) -> dict[str, Any]:
    """The real-time request carrying the same row: input columns and one entry per route."""
    prefix = "__predictions__"
    return {
        "request": {k: v for k, v in row.items() if not k.startswith(prefix)},
        "response": {
            "route_responses": [
                {"route": k[len(prefix) :], **v} for k, v in row.items() if k.startswith(prefix)
            ]
        },
    }
