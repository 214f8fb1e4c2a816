"""What a local job sets in its process before pyarrow is imported, unless the user has."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pyfunc_ensembler.batch.startup import ARROW_HUGE_PAGES, MATH_THREADS, default_processes
from tests.batch import models
from tests.batch.conftest import save
from tests.helpers import run_cli


def test_the_default_is_the_cpus_this_process_may_use() -> None:
    assert default_processes() == len(os.sched_getaffinity(0))


def test_numeric_threads_share_the_cpus_and_arrow_takes_no_huge_pages(tmp_path: Path) -> None:
    """As Spark gives its Python workers: N processes on C CPUs, C // N threads each for
    OpenBLAS, MKL and OpenMP; one process keeps the libraries' defaults. What the user
    set stays, and the workers see what their parent set."""
    model = save(models.Environment(), tmp_path / "model")
    names = ",".join((*MATH_THREADS, ARROW_HUGE_PAGES))
    pq.write_table(pa.table({"names": [names] * 3}), tmp_path / "in.parquet")
    share = str(max(default_processes() // 2, 1))
    cases = [
        ("2", {}, f"{share},{share},{share},0"),
        ("2", {"MKL_NUM_THREADS": "3", ARROW_HUGE_PAGES: "1"}, f"{share},{share},3,1"),
        ("1", {}, "unset,unset,unset,0"),
    ]
    for processes, environment, expected in cases:
        env = {k: v for k, v in os.environ.items() if k not in names.split(",")} | environment
        done = run_cli("batch", "--ensembler", model, "--input", str(tmp_path / "in.parquet"),
                       "--output", str(tmp_path / "o.parquet"), "--result-type", "STRING",
                       "--save-mode", "overwrite", "--processes", processes,
                       "--batch-size", "1", env=env)  # fmt: skip
        assert done.returncode == 0, done.stderr
        column = pq.read_table(tmp_path / "o.parquet").column("result").to_pylist()
        assert column == [expected] * 3
