"""``pyfunc-ensembler check``: load a model and, optionally, answer one request with it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from pyfunc_ensembler.core import Core, describe
from pyfunc_ensembler.errors import EnsemblerError, UsageError
from pyfunc_ensembler.loader import load
from pyfunc_ensembler.settings import Settings


def check(settings: Settings, request: Path | None, headers: Sequence[str]) -> int:
    ensembler = load(settings.model_uri, force_mlflow=settings.force_mlflow)
    print(orjson.dumps(describe(ensembler)).decode(), file=sys.stderr)
    if request is None:
        return 0
    raw_headers = [_header(h) for h in headers]
    core = Core(ensembler, debug=True)
    status, answer = asyncio.run(core.handle_async(request.read_bytes(), raw_headers))
    sys.stdout.write(answer.decode() + "\n")
    if status != 200:
        # The answer (the error's JSON) is on stdout; the CLI says why it failed.
        raise EnsemblerError(f"the request was answered with status {status}")
    return 0


def _header(text: str) -> tuple[bytes, bytes]:
    name, sep, value = text.partition("=")
    if not sep:
        raise UsageError(f"--header {text!r}: write it as NAME=VALUE")
    return name.strip().lower().encode("latin-1"), value.strip().encode("latin-1")
