"""Nothing in a request makes the server import, load or run anything; no traceback or
server file path reaches a client unless --debug; the bind address is configurable."""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pyfunc_ensembler.core import Core
from pyfunc_ensembler.metrics import Metrics
from tests.helpers import CLI, Server, free_port
from tests.reliability.net import body

MARKER = Path("/tmp/pyfunc-ensembler-pwned")


class _Echo:
    is_async = False

    @staticmethod
    def call(request: Any, headers: Any) -> Any:
        from pyfunc_ensembler.contract import ensemble_args

        return ensemble_args(request).input


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(MARKER), "w"))


PAYLOADS: list[bytes] = [
    pickle.dumps(_Evil()),
    json.dumps(body({"__import__": "os", "__class__": "subprocess.Popen"})).encode(),
    json.dumps(body("__import__('os').system('touch /tmp/pyfunc-ensembler-pwned')")).encode(),
    json.dumps(
        body("!!python/object/apply:os.system ['touch /tmp/pyfunc-ensembler-pwned']")
    ).encode(),
    json.dumps(
        body({"py/object": "os.system", "py/reduce": [{"py/function": "os.system"}]})
    ).encode(),
    json.dumps(
        body({"$type": "System.IO.File", "model_uri": "runs:/x/y", "artifacts": "/etc"})
    ).encode(),
    json.dumps(body("{{7*7}} ${jndi:ldap://127.0.0.1/a} %s%n")).encode(),
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_payloads_are_only_data(payload: bytes) -> None:
    MARKER.unlink(missing_ok=True)
    core = Core(_Echo(), metrics=Metrics())  # type: ignore[arg-type]
    modules = set(sys.modules)
    status, answer = core.handle(payload, [(b"content-type", b"application/x-python-pickle")])
    assert status in (200, 400)
    if status == 200:  # handed to the ensembler as plain JSON data, nothing else
        assert json.loads(answer) == json.loads(payload)["request"]
    assert set(sys.modules) == modules
    assert not MARKER.exists()


def test_errors_carry_no_traceback_or_server_path(
    servers: Callable[..., Server], test_models: dict[str, Path], front_end: str
) -> None:
    server = servers(str(test_models["faulty"]), "--server", front_end)
    answers = [
        server.request("POST", "/ensemble", json.dumps(body({"fault": fault})).encode())[2]
        for fault in ("raise", "unserializable")
    ]
    answers.append(server.request("POST", "/ensemble", b"{")[2])
    answers.append(server.request("PUT", "/ensemble", b"{}")[2])
    for answer in answers:
        text = answer.decode()
        assert "Traceback" not in text and '"traceback"' not in text
        assert "site-packages" not in text and "pyfunc_ensembler/" not in text
        assert str(test_models["faulty"]) not in text and ".py" not in text


def test_the_bind_address_is_configurable(test_models: dict[str, Path]) -> None:
    """Bound to 127.0.0.2 (set by ENSEMBLER_HOST): answers there, refuses 127.0.0.1."""
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "serve", str(test_models["echo"]), "--port", str(port)],
        env={**os.environ, "ENSEMBLER_HOST": "127.0.0.2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):  # up to about 60 s for the start
            try:
                with socket.create_connection(("127.0.0.2", port), timeout=1):
                    break
            except OSError:
                assert process.poll() is None
                time.sleep(0.1)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
    finally:
        process.terminate()
        process.wait(30)
