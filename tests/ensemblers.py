"""Ensemblers used by the tests, one per behaviour; saved by value with `save_model`."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import cloudpickle

from pyfunc_ensembler import PyFunc, save_ensembler


class Echo(PyFunc):
    """Answers with everything it was given, to check the argument mapping."""

    def ensemble(self, input, predictions, treatment_config, enricher_response=None, **kwargs):  # type: ignore[no-untyped-def]
        return {
            "input": input,
            "predictions": predictions,
            "treatment_config": treatment_config,
            "enricher_response": enricher_response,
            "request_id": kwargs["headers"].get("Turing-Req-Id"),
            "header_names": sorted(kwargs["headers"]),
        }


class NoKwargs(PyFunc):
    """The oldest signature: no enricher_response, no **kwargs."""

    def ensemble(self, input, predictions, treatment_config):  # type: ignore[no-untyped-def,override]
        return sorted(predictions)


class AsyncSum(PyFunc):
    async def ensemble(
        self, input, predictions, treatment_config, enricher_response=None, **kwargs
    ):  # type: ignore[no-untyped-def,override]
        await asyncio.sleep(0)
        return sum(p["data"] for p in predictions.values())


class Faulty(PyFunc):
    """Fails in the way the request's "fault" field asks for."""

    def ensemble(self, input, predictions, treatment_config, enricher_response=None, **kwargs):  # type: ignore[no-untyped-def]
        fault = input.get("fault") if isinstance(input, dict) else None
        if fault == "raise":
            raise ValueError("bad route data")
        if fault == "unserializable":
            return object()
        if fault == "exit":
            os._exit(3)
        if fault == "sleep":
            if "started" in input:  # tells a test the call has begun: a file appears
                Path(input["started"]).touch()
            if "until" in input:  # a test ends the call by creating this file
                deadline = time.monotonic() + float(input.get("seconds", 60))
                while not Path(input["until"]).exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
            else:
                time.sleep(float(input.get("seconds", 1)))
        return "ok"


class Numpyish(PyFunc):
    def ensemble(self, input, predictions, treatment_config, enricher_response=None, **kwargs):  # type: ignore[no-untyped-def]
        import numpy
        import pandas

        kind = input["kind"]
        if kind == "array":
            return numpy.arange(3, dtype=numpy.float32) / 2
        if kind == "scalar":
            return numpy.int64(7)
        if kind == "series":
            return pandas.Series([1, 2], index=["a", "b"])
        if kind == "frame":
            return pandas.DataFrame({"a": [1, 2], "b": ["x", "y"]})
        return float("nan")


class Hazard(PyFunc):
    """The reliability suite's misbehaving ensembler: the request's "hazard" field says how.

    Anything else answers "ok", so one model serves both the poisoned and the normal traffic.
    """

    leaked: list[bytes] = []  # noqa: RUF012 - deliberately shared: the leak must outlive a call

    def ensemble(self, input, predictions, treatment_config, enricher_response=None, **kwargs):  # type: ignore[no-untyped-def]
        hazard = input.get("hazard") if isinstance(input, dict) else None
        if hazard == "nan":
            return {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"), "x": 1.5}
        if hazard == "exit":
            os._exit(int(input.get("code", 3)))
        if hazard == "segv":
            import ctypes

            ctypes.string_at(0)  # reads address 0: SIGSEGV
        if hazard == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if hazard in ("block", "block-then-exit"):
            time.sleep(float(input.get("seconds", 10)))
        if hazard == "block-then-exit":
            os._exit(3)
        if hazard == "leak":
            # Touched pages, so that the memory is really resident, not just reserved.
            Hazard.leaked.append(b"x" * int(input.get("bytes", 1 << 20)))
            return len(Hazard.leaked)
        if hazard == "pid":
            return os.getpid()
        return "ok"


class AsyncWait(PyFunc):
    """Waits like an ensembler that calls another service, then answers: overload tests."""

    async def ensemble(
        self, input, predictions, treatment_config, enricher_response=None, **kwargs
    ):  # type: ignore[no-untyped-def,override]
        await asyncio.sleep(float(input.get("seconds", 0.02)) if isinstance(input, dict) else 0.02)
        if isinstance(input, dict) and input.get("exit"):
            os._exit(3)  # the isolation tests: a crash with other requests in flight
        return "ok"


class Versioned(PyFunc):
    """Answers the version it was saved with: which model a worker loaded."""

    def __init__(self, version: str) -> None:
        self.version = version

    def ensemble(self, input, predictions, treatment_config, enricher_response=None, **kwargs):  # type: ignore[no-untyped-def]
        return self.version


def save_model(ensembler: PyFunc, target: Path, **kwargs: Any) -> Path:
    cloudpickle.register_pickle_by_value(__import__(__name__, fromlist=["_"]))
    save_ensembler(str(target), ensembler, **kwargs)
    return target
