"""The CPUs a local job may use, and each ensembling process's share of them.

Imports nothing heavy (no pyarrow, hence no numpy): the command sizes numeric
libraries' thread pools here before it imports the engine, which they read at import.
"""

from __future__ import annotations

import os

MATH_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""What sizes the thread pools of numeric libraries (numpy's OpenBLAS or MKL, OpenMP)."""


def default_processes() -> int:
    """The CPUs this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def share_math_threads(processes: int | None) -> None:
    """Size numeric libraries' thread pools to each process's share of the CPUs, for a
    local job of `processes` (default: one per CPU), where the user has not.

    As Spark does for its Python workers and joblib for its own: N processes that each
    start a pool as large as the machine compete for its cores; and numpy's OpenBLAS,
    which pyarrow imports, spins its threads at start (0.05-0.1 s of CPU a job). To
    take effect it must run before numpy is imported.
    """
    cpus = default_processes()
    count = cpus if processes is None else max(processes, 1)
    if count > 1:
        for name in MATH_THREADS:
            os.environ.setdefault(name, str(max(cpus // count, 1)))
