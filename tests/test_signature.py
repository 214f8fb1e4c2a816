from __future__ import annotations

from typing import Any

import pytest

from pyfunc_ensembler.errors import LoadError
from pyfunc_ensembler.signature import bind_ensemble, is_async

ARGS = ("in", {"r": 1}, {"t": 1}, {"e": 1}, {"H": "v"})


class Signatures:
    def newest(self, input, predictions, treatment_config, enricher_response=None, **kwargs):  # type: ignore[no-untyped-def]
        return ("newest", input, predictions, treatment_config, enricher_response, kwargs)

    def kwargs_only(self, input, predictions, treatment_config, **kwargs):  # type: ignore[no-untyped-def]
        return ("kwargs", input, kwargs)

    def oldest(self, input, predictions, treatment_config):  # type: ignore[no-untyped-def]
        return ("oldest", input, predictions, treatment_config)

    def named_headers(self, input, predictions, treatment_config, headers=None):  # type: ignore[no-untyped-def]
        return ("headers", headers)

    def legacy_names(self, features, predictions, treatment_config):  # type: ignore[no-untyped-def]
        return ("legacy", features)

    def reordered(self, predictions, input, treatment_config):  # type: ignore[no-untyped-def]
        return ("reordered", input, predictions)

    def too_few(self, input):  # type: ignore[no-untyped-def]
        return input

    async def coroutine(self, input, predictions, treatment_config, **kwargs):  # type: ignore[no-untyped-def]
        return input


s = Signatures()


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        (s.newest, ("newest", "in", {"r": 1}, {"t": 1}, {"e": 1}, {"headers": {"H": "v"}})),
        (s.kwargs_only, ("kwargs", "in", {"enricher_response": {"e": 1}, "headers": {"H": "v"}})),
        (s.oldest, ("oldest", "in", {"r": 1}, {"t": 1})),
        (s.named_headers, ("headers", {"H": "v"})),
        (s.legacy_names, ("legacy", "in")),
        (s.reordered, ("reordered", "in", {"r": 1})),
    ],
)
def test_each_generation_gets_what_it_accepts(method: Any, expected: tuple[Any, ...]) -> None:
    assert bind_ensemble(method)(*ARGS) == expected


def test_a_signature_that_cannot_take_the_arguments_fails_at_load() -> None:
    with pytest.raises(LoadError, match="must accept"):
        bind_ensemble(s.too_few)


def test_async_is_detected() -> None:
    assert is_async(s.coroutine)
    assert not is_async(s.newest)
