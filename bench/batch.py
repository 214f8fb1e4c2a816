"""Batch ensembling speed: Turing's way, our local engine end to end, our Spark engine.

    .venv/bin/python bench/batch.py --rows 1000000            # all three, 1M rows
    .venv/bin/python bench/batch.py --rows 1000 --turing-rows 100 --no-spark   # a smoke run

Every way runs the same trivial ensembler over the same Parquet table (an id, a
feature, two scalar routes). Turing's way is its SDK's ``_ensemble_batch`` reproduced
(turing-sdk cannot be installed beside MLflow 3): rename the prediction columns, then
``DataFrame.apply(axis=1, result_type="expand")`` calling ``ensemble`` with
``row.drop(routes)`` and ``row[routes]``. It is timed on `--turing-rows` rows (it runs
at about a thousand rows a second) and reported as rows/s. Numbers are from whatever
machine runs this: treat them as relative.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pyarrow as pa
import pyarrow.parquet as pq

from pyfunc_ensembler import PyFunc, save_ensembler
from pyfunc_ensembler.batch import run, short_job
from pyfunc_ensembler.contract import PREDICTION_COLUMN_PREFIX
from pyfunc_ensembler.loader import load
from pyfunc_ensembler.rows import ensemble_rows


class Trivial(PyFunc):
    def ensemble(self, input, predictions, treatment_config, enricher_response=None, **kwargs):  # type: ignore[no-untyped-def]
        return predictions["model_a"] * 0.5 + predictions["model_b"] * 0.5


def make_table(rows: int) -> pa.Table:
    ids = pa.array(range(rows), type=pa.int64())
    halves = pa.array([i * 0.5 for i in range(rows)])
    return pa.table(
        {
            "id": ids,
            "feature": halves,
            f"{PREDICTION_COLUMN_PREFIX}model_a": halves,
            f"{PREDICTION_COLUMN_PREFIX}model_b": pa.array([i * 0.25 for i in range(rows)]),
        }
    )


def turing_ensemble_batch(model: Any, frame: Any) -> Any:
    """What turing-sdk 0.16's ``PyFunc._ensemble_batch`` does, step for step."""
    routes = {
        c: c[len(PREDICTION_COLUMN_PREFIX) :]
        for c in frame.columns
        if c.startswith(PREDICTION_COLUMN_PREFIX)
    }
    return frame.rename(columns=routes).apply(
        lambda row: model.ensemble(
            input=row.drop(routes.values()),
            predictions=row[routes.values()],
            treatment_config=None,
        ),
        axis=1,
        result_type="expand",
    )


def bench_turing(model_dir: str, source: Path, rows: int) -> dict[str, Any]:
    model = load(model_dir).python_model
    frame = pq.read_table(source).slice(0, rows).to_pandas()
    started = time.perf_counter()
    turing_ensemble_batch(model, frame)
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "rows_per_second": rows / seconds}


def bench_local(model_dir: str, source: Path, out: Path) -> dict[str, Any]:
    job = short_job(model_dir, str(source), str(out), result_type="DOUBLE", save_mode="overwrite")
    report = run(job)
    return {**report.as_dict(), "split": split_ensemble(model_dir, source)}


def split_ensemble(model_dir: str, source: Path) -> dict[str, float]:
    """The ensemble stage cut in two: building dict rows (and a call that does nothing),
    and what calling ``ensemble`` adds."""
    columns = pq.read_table(source).to_pydict()
    rows = len(columns["id"])
    started = time.perf_counter()
    ensemble_rows(lambda *_: None, columns, rows)
    building = time.perf_counter() - started
    call = load(model_dir).ensemble
    assert call is not None
    started = time.perf_counter()
    ensemble_rows(call, columns, rows)
    total = time.perf_counter() - started
    return {"build_rows": building, "call_ensemble": max(total - building, 0.0)}


def bench_spark(model_dir: str, source: Path, out: Path, master: str) -> dict[str, Any]:
    from pyfunc_ensembler.batch.spark import build_session

    job = short_job(model_dir, str(source), str(out), result_type="DOUBLE", save_mode="overwrite")
    started = time.perf_counter()
    session = build_session(job, master, {"spark.ui.enabled": "false"})
    startup = time.perf_counter() - started
    try:
        report = run(job, "spark", session=session)
    finally:
        session.stop()
    return {**report.as_dict(), "master": master, "session_start_seconds": startup}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--turing-rows", type=int, default=20_000)
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        model_dir = str(work / "model")
        save_ensembler(model_dir, Trivial())
        source = work / "source.parquet"
        pq.write_table(make_table(args.rows), source)
        results: dict[str, Any] = {"rows": args.rows}
        results["turing"] = bench_turing(model_dir, source, min(args.turing_rows, args.rows))
        results["local"] = bench_local(model_dir, source, work / "local-out")
        if not args.no_spark:
            results["spark"] = bench_spark(model_dir, source, work / "spark-out", args.master)
        results["local_vs_turing"] = (
            results["local"]["rows_per_second"] / results["turing"]["rows_per_second"]
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
