from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.helpers import Server

FRONT_ENDS = ["native", "asgi"]


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
