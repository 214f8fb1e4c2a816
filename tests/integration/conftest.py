from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import ensemblers
from tests.helpers import Server

FRONT_ENDS = ["asgi"]


@pytest.fixture(scope="session")
def test_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    kinds = {
        "echo": ensemblers.Echo(),
        "faulty": ensemblers.Faulty(),
        "async": ensemblers.AsyncSum(),
    }
    kinds["numpy"] = ensemblers.Numpyish()
    return {name: ensemblers.save_model(model, root / name) for name, model in kinds.items()}


@pytest.fixture(scope="session")
def servers() -> Iterator[Callable[..., Server]]:
    """Start servers on demand, once per distinct command line, and stop them all at the end."""
    started: dict[tuple[str, ...], Server] = {}

    def get(*args: str) -> Server:
        key = tuple(args)
        if key not in started:
            started[key] = Server(args).start()
        return started[key]

    yield get
    for server in started.values():
        server.stop()


@pytest.fixture(params=FRONT_ENDS)
def front_end(request: pytest.FixtureRequest) -> str:
    return str(request.param)
