from __future__ import annotations

import dataclasses
import decimal

import numpy
import orjson
import pandas
import pytest

from pyfunc_ensembler.errors import InvalidJSON, InvalidUTF8, SerializationFailed
from pyfunc_ensembler.serialization import dumps, loads


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (None, None),
        (1.5, 1.5),
        ("s", "s"),
        ([1, (2, 3)], [1, [2, 3]]),
        ({1: "a"}, {"1": "a"}),
        (numpy.float64(0.5), 0.5),
        (numpy.int32(3), 3),
        (numpy.array([[1, 2], [3, 4]]), [[1, 2], [3, 4]]),
        (numpy.array(["a", None], dtype=object), ["a", None]),
        (numpy.float16(1.5), 1.5),
        (pandas.Series([1.0, 2.0], index=["a", "b"]), [1.0, 2.0]),
        (
            pandas.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
            [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}],
        ),
        ({1, 2} - {2}, [1]),
        (decimal.Decimal("2.5"), 2.5),
        (Point(1), {"x": 1}),
        (float("nan"), None),
        (float("inf"), None),
    ],
)
def test_answers_become_json(answer: object, expected: object) -> None:
    assert orjson.loads(dumps(answer)) == expected


def test_unserializable_answer_names_its_type() -> None:
    with pytest.raises(SerializationFailed, match="object"):
        dumps({"x": object()})


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (b"", InvalidJSON, "empty"),
        (b"{", InvalidJSON, "not valid JSON"),
        (b'{"a": NaN}', InvalidJSON, "not valid JSON"),
        (b'"\xff"', InvalidUTF8, "UTF-8"),
    ],
)
def test_bad_bodies(body: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        loads(body)


def test_integers_beyond_64_bits_become_floats_as_in_turing() -> None:
    # orjson, which Turing's server uses too, reads them as the nearest double.
    assert loads(b'{"n": 123456789012345678901234567890}') == {"n": 1.2345678901234568e29}


def test_numbers_beyond_double_range_are_refused() -> None:
    with pytest.raises(InvalidJSON, match="infinity"):
        loads(b'{"n": 1e400}')
