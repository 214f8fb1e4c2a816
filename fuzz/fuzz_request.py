"""atheris fuzz target for the request parser: body bytes -> JSON -> ensembler arguments,
and the native front end's HTTP/1.1 parsing, in process.

    make fuzz                                   # FUZZ_SECONDS (60) per target
    python fuzz/fuzz_request.py -max_total_time=60 [corpus dir]
    FUZZ_TARGET=http python fuzz/fuzz_request.py -max_total_time=60

Any exception other than the package's own request errors is a finding: libFuzzer then
stops and writes the input that caused it (crash-*).
"""

from __future__ import annotations

import os
import sys

import atheris

with atheris.instrument_imports():
    from pyfunc_ensembler.contract import ensemble_args, headers_from_raw
    from pyfunc_ensembler.errors import RequestError
    from pyfunc_ensembler.serialization import loads


def body(data: bytes) -> None:
    """What `Core.handle` does with a body before calling the ensembler."""
    try:
        request = loads(data)
        args = ensemble_args(request)
    except RequestError:
        return
    # A mapped request names every route once, with its entry minus "route".
    routes = request["response"]["route_responses"]
    assert len(args.predictions) == len(routes)


def http(data: bytes) -> None:
    """Raw bytes fed to one native connection, as a client could send them."""
    transport = _FakeTransport()
    connection = Connection(_STATE)
    connection.connection_made(transport)  # type: ignore[arg-type]
    fdp = atheris.FuzzedDataProvider(data)
    # In pieces of random sizes, as TCP may deliver them.
    while fdp.remaining_bytes():
        connection.data_received(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 4096)))
    connection.connection_lost(None)
    for answer in transport.written:
        if answer.startswith(b"HTTP/1.1 5"):
            raise AssertionError(f"a 5xx from parsing alone: {answer[:200]!r}")
    headers_from_raw([(b"x", data[:64])])


class _FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _native_state() -> object:
    """A native server state over a core whose ensembler answers "ok" (sync, inline)."""
    from pyfunc_ensembler.core import Core
    from pyfunc_ensembler.http11 import Limits, ServerState
    from pyfunc_ensembler.metrics import Metrics

    class _Ok:
        is_async = False

        @staticmethod
        def call(request: object, headers: object) -> str:
            ensemble_args(request)
            return "ok"

    core = Core(_Ok(), metrics=Metrics())  # type: ignore[arg-type]
    limits = Limits(
        max_body_size=1 << 16, max_header_size=1 << 14, receive_timeout=0, keepalive_timeout=0
    )
    return ServerState(core, limits)


TARGETS = {"body": body, "http": http}

if __name__ == "__main__":
    target = os.environ.get("FUZZ_TARGET", "body")
    if target == "http":
        with atheris.instrument_imports():
            from pyfunc_ensembler.http11 import Connection
        _STATE = _native_state()
    atheris.Setup(sys.argv, TARGETS[target])
    atheris.Fuzz()
