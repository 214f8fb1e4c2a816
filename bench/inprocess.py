"""In-process costs, without HTTP: ``python -m bench.inprocess MODEL_DIR [--quick]``.

Prints one JSON object with, per payload size, microseconds per call of
- ``direct``: the ensembler's own `ensemble`, arguments already built;
- ``core``: `Core.handle` on the raw body (parse + dispatch + ensemble + serialize);
- ``call``: the loaded ensembler's call on the decoded body (what the server calls);
- ``mlflow_predict``: MLflow's ``PyFuncModel.predict`` on the same decoded body, the
  per-call wrapper Turing's server goes through and ours skips.
- ``parse``: decoding the body alone (``orjson.loads``), part of ``core``.
The best of several repeats is reported (the machine may be busy).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from bench.payloads import HEADERS, SIZES, body
from pyfunc_ensembler.contract import ensemble_args, headers_from_raw
from pyfunc_ensembler.core import Core
from pyfunc_ensembler.loader import Ensembler, load
from pyfunc_ensembler.serialization import loads


def per_call_us(function: Callable[[], Any], seconds: float, repeats: int) -> float:
    """The best over `repeats` of the mean time of one call, in microseconds.

    The minimum, as `timeit` advises: other processes only ever add time, and this
    machine may be busy.
    """
    function()
    calls = 1
    while True:  # calibrate: enough calls to fill about `seconds` / `repeats`
        started = time.perf_counter()
        for _ in range(calls):
            function()
        elapsed = time.perf_counter() - started
        if elapsed >= seconds / repeats / 4 or calls >= 1 << 22:
            break
        calls *= 4
    calls = max(1, int(calls * (seconds / repeats) / max(elapsed, 1e-9)))
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            function()
        samples.append((time.perf_counter() - started) / calls * 1e6)
    return min(samples)


def measure(model_dir: str, seconds: float, repeats: int) -> dict[str, Any]:
    # Both through MLflow: cloudpickle rebuilds a by-value class only once per process,
    # so a lean load first would leave MLflow's model without MLflow's base class.
    import mlflow.pyfunc

    pyfunc_model = mlflow.pyfunc.load_model(model_dir)
    ensembler = load(model_dir, force_mlflow=True)
    core = Core(ensembler)
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
    return {
        label: costs(ensembler, core, pyfunc_model, body(size), raw_headers, seconds, repeats)
        for label, size in SIZES.items()
    }


def costs(
    ensembler: Ensembler,
    core: Core,
    pyfunc_model: Any,
    payload: bytes,
    raw_headers: list[tuple[bytes, bytes]],
    seconds: float,
    repeats: int,
) -> dict[str, float]:
    headers = headers_from_raw(raw_headers)
    decoded = loads(payload)
    args = ensemble_args(decoded)
    ensemble = ensembler.python_model.ensemble  # the user's method, as a user would call it

    def timed(function: Callable[[], Any]) -> float:
        return per_call_us(function, seconds, repeats)

    return {
        "direct": timed(lambda: ensemble(*args, headers=headers)),
        "parse": timed(lambda: loads(payload)),
        "core": timed(lambda: core.handle(payload, raw_headers)),
        "call": timed(lambda: ensembler.call(decoded, headers)),
        "mlflow_predict": timed(
            lambda: pyfunc_model.predict({"headers": headers, "body": decoded})
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(json.dumps(measure(args.model_dir, args.seconds, args.repeats)))


if __name__ == "__main__":
    main()
