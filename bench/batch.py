"""Batch ensembling speed: Turing's way, `pyfunc-ensembler batch` end to end, Spark, BigQuery.

    .venv/bin/python -m bench.batch                       # 1M and 10M rows, 1 and N processes
    .venv/bin/python -m bench.batch --rows 1000000 --bigquery --spark
    .venv/bin/python -m bench.batch --rows 1000 --turing-rows 100  # a smoke run

Every way runs the same trivial ensembler (the mean of two scalar routes) over the same
Parquet table (an id, a feature, two routes):

- *turing*: its SDK's ``_ensemble_batch`` reproduced (turing-sdk cannot be installed
  beside MLflow 3): rename the prediction columns, then ``DataFrame.apply(axis=1,
  result_type="expand")`` calling ``ensemble`` with ``row.drop(routes)`` and
  ``row[routes]``. Timed on `--turing-rows` rows (it runs at about a thousand rows a
  second), in process, so it is spared the start-up and the I/O ours pays.
- *local*: the command ``pyfunc-ensembler batch --ensembler … --input in.parquet
  --output out/ --result-type DOUBLE --processes P`` as a process, timed from its start
  to its exit (interpreter start, imports, model load, read, ensemble, write), and the
  CPU seconds it and its workers used (on a busy machine wall time moves with others'
  load, CPU time much less); then run again for its peak memory: RSS and PSS summed
  over it and its workers, sampled every 20 ms from /proc (PSS counts the pages the
  workers share with it once), which would slow the timed run.
- *bigquery* (``--bigquery``): bqemulator on loopback (`make install` makes its venv);
  Parquet -> BigQuery (the Storage Write API and the copy job), then BigQuery ->
  BigQuery (the Storage Read API in as well), same command.
- *spark* (``--spark``): the Spark engine on ``--master``.

Numbers are from whatever machine runs this, and other processes move them: compare
within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pyarrow as pa
import pyarrow.parquet as pq

from bench import procstats
from pyfunc_ensembler import PyFunc, save_ensembler
from pyfunc_ensembler.batch import run, short_job
from pyfunc_ensembler.batch.startup import default_processes
from pyfunc_ensembler.contract import PREDICTION_COLUMN_PREFIX
from pyfunc_ensembler.loader import load
from pyfunc_ensembler.rows import ensemble_rows

CLI = [sys.executable, "-m", "pyfunc_ensembler", "batch"]
BQ_PROJECT = "bench-project"


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


class PeakMemory:
    """The largest RSS and PSS (kB) a process tree reached, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.rss, self.pss = pid, 0, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            rss = pss = 0
            for pid in procstats.tree(self.pid):
                try:
                    memory = procstats.memory_kb(pid)
                except OSError:
                    continue  # exited meanwhile
                rss += memory.get("rss", 0)
                pss += memory.get("pss", 0)
            self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def bench_cli(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """One ``pyfunc-ensembler batch`` command: its report, wall and CPU time, peak memory.

    It runs twice: timed alone, then again with its memory sampled. Sampling /proc
    every 20 ms (a scan of every process, page tables walked for PSS) takes a core's
    share that a 1M-row job on two cores misses: 0.2-0.3 s of its ~1 s, measured.
    """
    timed = _run_cli(args, env, sample=False)
    sampled = _run_cli(args, env, sample=True)
    return {**timed, "peak_rss_mb": sampled["peak_rss_mb"], "peak_pss_mb": sampled["peak_pss_mb"]}


def _run_cli(args: list[str], env: dict[str, str] | None, *, sample: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as work:
        report_path = Path(work) / "report.json"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        process = subprocess.Popen(
            [*CLI, *args, "--report", str(report_path)],
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        memory = PeakMemory(process.pid) if sample else None
        _, err = process.communicate()
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if memory is not None:
            memory.stop()
        if process.returncode:
            raise RuntimeError(f"batch failed: {err.decode()[-2000:]}")
        report = json.loads(report_path.read_text())
    return {
        "rows": report["rows"],
        "seconds": seconds,
        "rows_per_second": report["rows"] / seconds,
        "job_seconds": report["seconds"],
        "timings": report["timings"],
        # Its CPU time and its reaped workers': what others' load moves least.
        "cpu_seconds": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "peak_rss_mb": memory.rss / 1024 if memory else None,
        "peak_pss_mb": memory.pss / 1024 if memory else None,
    }


def bench_local(model_dir: str, source: Path, out: Path, processes: int) -> dict[str, Any]:
    args = ["--ensembler", model_dir, "--input", str(source), "--output", str(out)]
    args += ["--result-type", "DOUBLE", "--save-mode", "overwrite", "--processes", str(processes)]
    return {**bench_cli(args), "processes": processes}


def split_ensemble(model_dir: str, source: Path) -> dict[str, float]:
    """The ensemble stage cut in two: building dict rows (and a call that does nothing),
    and what calling ``ensemble`` adds (in process, one batch of the whole table)."""
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


def bench_bigquery(model_dir: str, source: Path, work: Path, processes: int) -> dict[str, Any]:
    """Parquet -> BigQuery, then BigQuery -> BigQuery, against bqemulator on loopback."""
    from tests.batch import emulators
    from tests.helpers import free_port

    rest, grpc = free_port(), free_port()
    work.mkdir(parents=True, exist_ok=True)
    server = emulators.bigquery(rest, grpc, BQ_PROJECT, work).start()
    env = {
        "BIGQUERY_EMULATOR_HOST": f"127.0.0.1:{rest}",
        "BIGQUERY_STORAGE_EMULATOR_HOST": f"127.0.0.1:{grpc}",
        "GOOGLE_CLOUD_PROJECT": BQ_PROJECT,
    }
    try:
        os.environ.update(env)
        from pyfunc_ensembler.batch.bigquery import Clients

        Clients(BQ_PROJECT, {}).rest.create_dataset(f"{BQ_PROJECT}.bench")
        scores = f"{BQ_PROJECT}.bench.scores"
        job = {
            "kind": "BatchEnsemblingJob",
            "metadata": {"name": "bench"},
            "spec": {
                "source": {"dataset": str(source)},
                "ensembler": {
                    "uri": model_dir,
                    "result": {"column_name": "result", "type": "DOUBLE"},
                },
                "sink": {"type": "BQ", "save_mode": "OVERWRITE", "bq_config": {"table": scores}},
            },
        }
        to_bq = work / "to-bq.yaml"
        to_bq.write_text(json.dumps(job))
        job["spec"]["ensembler"]["result"]["column_name"] = "again"  # type: ignore[index]
        job["spec"]["sink"]["columns"] = ["id", "feature", "again"]  # type: ignore[index]
        job["spec"]["source"] = {  # the table the first job wrote, as Turing names one
            "dataset": {"type": "BQ", "bq_config": {"table": scores}}
        }
        job["spec"]["sink"]["bq_config"]["table"] = f"{BQ_PROJECT}.bench.again"  # type: ignore[index]
        bq_to_bq = work / "bq-to-bq.yaml"
        bq_to_bq.write_text(json.dumps(job))
        flags = ["--processes", str(processes)]
        return {
            "parquet_to_bigquery": bench_cli([str(to_bq), *flags], env),
            "bigquery_to_bigquery": bench_cli([str(bq_to_bq), *flags], env),
            "processes": processes,
        }
    finally:
        for key in env:
            os.environ.pop(key, None)
        server.stop()


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
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, default_processes()])
    parser.add_argument("--turing-rows", type=int, default=20_000)
    parser.add_argument("--bigquery", action="store_true", help="Also BigQuery (bqemulator).")
    parser.add_argument("--bq-rows", type=int, default=200_000)
    parser.add_argument("--spark", action="store_true", help="Also the Spark engine.")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    results: dict[str, Any] = {"cpus": default_processes(), "local": [], "load": os.getloadavg()}
    try:
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        model_dir = str(work / "model")
        save_ensembler(model_dir, Trivial())
        for rows in sorted(set(args.rows)):
            source = work / f"source-{rows}.parquet"
            pq.write_table(make_table(rows), source)
            if "turing" not in results:
                results["turing"] = bench_turing(model_dir, source, min(args.turing_rows, rows))
                results["split"] = split_ensemble(model_dir, source)
            for processes in args.processes:
                result = bench_local(model_dir, source, work / "local-out", processes)
                result["vs_turing"] = (
                    result["rows_per_second"] / results["turing"]["rows_per_second"]
                )
                results["local"].append(result)
                print(json.dumps(result), file=sys.stderr)
            if args.spark and rows == min(args.rows):
                results["spark"] = bench_spark(model_dir, source, work / "spark-out", args.master)
            source.unlink()
        if args.bigquery:
            source = work / "bq-source.parquet"
            pq.write_table(make_table(args.bq_rows), source)
            results["bigquery"] = [
                bench_bigquery(model_dir, source, work / f"bq-{p}", p) for p in args.processes
            ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
