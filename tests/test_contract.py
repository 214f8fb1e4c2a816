from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyfunc_ensembler.contract import Headers, ensemble_args, headers_from_raw
from pyfunc_ensembler.errors import InvalidRequest

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


def body(routes: list[object], **response: object) -> dict[str, object]:
    return {"request": {"x": 1}, "response": {"route_responses": routes, **response}}


def test_maps_routes_whatever_their_order() -> None:
    routes = [
        {"route": "b", "data": 2, "is_default": False},
        {"route": "a", "data": 1, "is_default": True},
    ]
    args = ensemble_args(body(routes, experiment={"configuration": {"n": 1}}))
    assert args.input == {"x": 1}
    assert args.predictions == {
        "a": {"data": 1, "is_default": True},
        "b": {"data": 2, "is_default": False},
    }
    assert args.treatment_config == {"configuration": {"n": 1}}
    assert args.enricher_response is None


def test_does_not_modify_the_request() -> None:
    routes = [{"route": "a", "data": 1}]
    ensemble_args(body(routes))
    assert routes == [{"route": "a", "data": 1}]


def test_missing_experiment_is_empty_and_enricher_is_passed() -> None:
    args = ensemble_args(body([], enricher_response={"user": 7}))
    assert args.treatment_config == {}
    assert args.enricher_response == {"user": 7}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "must be a JSON object, not a list"),
        (3, "not a number"),
        ("x", "not a string"),
        ({"response": {"route_responses": []}}, "no 'request' field"),
        ({"request": 1}, "'response' must be an object"),
        ({"request": 1, "response": {}}, "route_responses' must be a list"),
        ({"request": 1, "response": {"route_responses": {}}}, "must be a list, not an object"),
        (
            {"request": 1, "response": {"route_responses": [1]}},
            "route_responses[0] must be an object",
        ),
        ({"request": 1, "response": {"route_responses": [{"data": 1}]}}, "needs a string 'route'"),
        ({"request": 1, "response": {"route_responses": [{"route": 5}]}}, "needs a string 'route'"),
        (body([{"route": "a"}, {"route": "a"}]), "appears more than once"),
    ],
)
def test_rejects_malformed_bodies(doc: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("[", r"\[").replace("]", r"\]")):
        ensemble_args(doc)


@given(
    request=json_values,
    routes=st.dictionaries(st.text(), json_values, max_size=5),
    experiment=json_values,
)
def test_any_valid_body_maps_back_to_its_parts(
    request: object, routes: dict[str, object], experiment: object
) -> None:
    entries = [{"route": name, "data": data, "is_default": False} for name, data in routes.items()]
    args = ensemble_args(
        {"request": request, "response": {"route_responses": entries, "experiment": experiment}}
    )
    assert args.input == request
    assert args.predictions == {n: {"data": d, "is_default": False} for n, d in routes.items()}
    assert args.treatment_config == experiment


def test_headers_are_canonical_and_found_in_any_case() -> None:
    headers = headers_from_raw([(b"turing-req-id", b"r1"), (b"x-a", b"1"), (b"X-A", b"2")])
    assert dict(headers) == {"Turing-Req-Id": "r1", "X-A": "1,2"}
    assert headers["TURING-REQ-ID"] == "r1"
    assert headers.get("turing-req-id") == "r1"
    assert headers.get("missing", "d") == "d"
    with pytest.raises(KeyError):
        headers["Missing"]


def test_headers_from_a_plain_dict_keep_canonical_lookup() -> None:
    headers = Headers({"Turing-Req-Id": "r"})
    assert headers["turing-req-id"] == "r"


def test_headers_of_a_plain_mapping_are_canonicalised() -> None:
    headers = Headers.of({"turing-req-id": "r", "X-A": "1"})
    assert dict(headers) == {"Turing-Req-Id": "r", "X-A": "1"}
    assert Headers.of(headers) is headers
