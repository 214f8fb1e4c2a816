"""The one settings object: checked when it is built, from flags, variables or Python."""

from __future__ import annotations

import dataclasses

import pytest

from pyfunc_ensembler.settings import Settings


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"isolate": True, "sync_threads": 2}, "exclude each other"),
        ({"max_ensembler_rss": 100}, "needs --isolate"),
        ({"busy_poll": 100, "server": "asgi"}, "needs the native front end"),
        ({"busy_poll": -1}, "between 0 and"),
    ],
)
def test_settings_that_contradict_each_other_are_refused(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "value", "choices"),
    [
        ("server", "foo", "'native', 'asgi'"),
        ("tracing", "zipkin", "'off', 'console', 'otlp'"),
        ("log_format", "xml", "'text', 'json'"),
        ("log_level", "WARNING", "'critical', 'error', 'warning', 'info', 'debug'"),
    ],
)
def test_a_word_outside_its_choices_is_refused_at_construction(
    name: str, value: str, choices: str
) -> None:
    with pytest.raises(ValueError) as refused:
        Settings(**{name: value})  # type: ignore[arg-type]
    assert str(refused.value) == f"{name}={value!r}: choose one of {choices}"


def test_every_choice_is_accepted_and_the_defaults_are_valid() -> None:
    defaults = Settings()
    for field in dataclasses.fields(Settings):
        for choice in field.metadata.get("choices", ()):
            assert getattr(Settings(**{field.name: choice}), field.name) == choice
    assert (defaults.server, defaults.tracing, defaults.log_format) == ("native", "off", "text")


def test_variables_are_checked_as_they_are_read() -> None:
    environ = {"ENSEMBLER_SERVER": "asgi", "ENSEMBLER_WORKERS": "3", "LOG_LEVEL": "INFO"}
    settings = Settings.from_environ(environ)
    assert (settings.server, settings.workers, settings.log_level) == ("asgi", 3, "info")
    with pytest.raises(ValueError, match="ENSEMBLER_TRACING='zipkin': choose one of"):
        Settings.from_environ({"ENSEMBLER_TRACING": "zipkin"})
    with pytest.raises(ValueError, match="ENSEMBLER_WORKERS='many' is not a valid int"):
        Settings.from_environ({"ENSEMBLER_WORKERS": "many"})
