"""Fixtures for the reliability suite: the misbehaving models and raised open-file limits."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from tests import ensemblers
from tests.integration.conftest import FRONT_ENDS, front_end, servers

__all__ = ["FRONT_ENDS", "front_end", "servers"]


@pytest.fixture(scope="session")
def reliability_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reliability-models")
    kinds = {"hazard": ensemblers.Hazard(), "async_wait": ensemblers.AsyncWait()}
    return {name: ensemblers.save_model(model, root / name) for name, model in kinds.items()}


@pytest.fixture(scope="session", autouse=True)
def _open_files() -> None:
    """Room for a thousand connections in this process and the servers it starts (they
    inherit the limit): the soft limit is raised to the hard one, never beyond."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
