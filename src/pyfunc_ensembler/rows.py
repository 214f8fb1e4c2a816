"""Batch ensembling of a table, row by row, with plain dicts.

Turing applies `ensemble` to a pandas Series per row (``DataFrame.apply(axis=1)``),
about 1,400 rows/s; building plain dicts from columns is hundreds of times faster
and gives `ensemble` the same keys. A row's `input` is its non-prediction columns,
its `predictions` the ``__predictions__<route>`` columns with the prefix stripped,
and `treatment_config` is ``None``, as in Turing's batch jobs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import repeat
from typing import Any

from pyfunc_ensembler.contract import PREDICTION_COLUMN_PREFIX, Headers
from pyfunc_ensembler.errors import EnsembleRowFailed
from pyfunc_ensembler.signature import EnsembleCall


def ensemble_rows(
    call: EnsembleCall, columns: Mapping[str, Sequence[Any]], n_rows: int
) -> list[Any]:
    """Call `call` once per row of the columnar table `columns`; return the answers.

    If `call` raises, `EnsembleRowFailed` says which row (its `row`), with the cause.
    """
    inputs = {k: v for k, v in columns.items() if not k.startswith(PREDICTION_COLUMN_PREFIX)}
    predictions = {
        k[len(PREDICTION_COLUMN_PREFIX) :]: v
        for k, v in columns.items()
        if k.startswith(PREDICTION_COLUMN_PREFIX)
    }
    headers = Headers()
    answers: list[Any] = []
    append = answers.append
    try:
        for row, routes in zip(
            _dict_rows(inputs, n_rows), _dict_rows(predictions, n_rows), strict=False
        ):
            append(call(row, routes, None, None, headers))
    except Exception as exc:
        # The answers so far count the rows done, so the failing row costs nothing to find.
        raise EnsembleRowFailed(len(answers), exc) from exc
    return answers


def _dict_rows(columns: Mapping[str, Sequence[Any]], n_rows: int) -> Iterator[dict[str, Any]]:
    if not columns:
        return (dict() for _ in repeat(None, n_rows))
    names = tuple(columns)
    return (dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True))
