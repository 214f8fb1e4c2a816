"""The CPUs a local job may use, and each process's share of them for numeric libraries."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pyfunc_ensembler.batch.cpus import MATH_THREADS, default_processes
from tests.batch import models
from tests.batch.conftest import save
from tests.helpers import run_cli


def test_the_default_is_the_cpus_this_process_may_use() -> None:
    assert default_processes() == len(os.sched_getaffinity(0))


def test_each_process_gets_its_share_of_the_cpus_for_numeric_threads(tmp_path: Path) -> None:
    """As Spark gives its Python workers: N processes on C CPUs, C // N threads each for
    OpenBLAS, MKL and OpenMP, unless the user sized them; one process keeps the defaults."""
    model = save(models.MathThreads(), tmp_path / "model")
    pq.write_table(pa.table({"id": [1]}), tmp_path / "in.parquet")
    share = str(max(default_processes() // 2, 1))
    cases = [
        ("2", {}, f"{share},{share},{share}"),
        ("2", {"MKL_NUM_THREADS": "3"}, f"{share},{share},3"),
        ("1", {}, "unset,unset,unset"),
    ]
    for processes, environment, expected in cases:
        env = {k: v for k, v in os.environ.items() if k not in MATH_THREADS} | environment
        done = run_cli("batch", "--ensembler", model, "--input", str(tmp_path / "in.parquet"),
                       "--output", str(tmp_path / "o.parquet"), "--result-type", "STRING",
                       "--save-mode", "overwrite", "--processes", processes, env=env)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert pq.read_table(tmp_path / "o.parquet").column("result").to_pylist() == [expected]
