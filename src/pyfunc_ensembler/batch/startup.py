"""What a local job sets in its process before it imports pyarrow, which reads it then.

Imports nothing heavy (no pyarrow, hence no numpy): the command calls `prepare` before
it imports the engine. Each setting is left as the user set it, if they did.
"""

from __future__ import annotations

import os

MATH_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""What sizes the thread pools of numeric libraries (numpy's OpenBLAS or MKL, OpenMP)."""
ARROW_HUGE_PAGES = "MIMALLOC_ALLOW_THP"
"""Whether mimalloc, Arrow's allocator, backs its memory with transparent huge pages."""


def default_processes() -> int:
    """The CPUs this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def prepare(processes: int | None) -> None:
    """Set up this process for a local job of `processes` (default: one per CPU).

    - Numeric libraries' thread pools get each process's share of the CPUs, as Spark
      gives its Python workers and joblib its own: N processes that each start a pool
      as large as the machine compete for its cores; and numpy's OpenBLAS, which
      pyarrow imports, spins a thread per core at start (0.05-0.1 s of CPU a job).
    - Arrow's memory comes in 4 KiB pages, not 2 MiB huge ones: a streaming job keeps
      taking fresh memory, and zeroing 2 MiB at each first touch took up to 15 % of a
      1M-row job's CPU (0.06 s in the median), measured.
    """
    cpus = default_processes()
    count = cpus if processes is None else max(processes, 1)
    if count > 1:
        for name in MATH_THREADS:
            os.environ.setdefault(name, str(max(cpus // count, 1)))
    os.environ.setdefault(ARROW_HUGE_PAGES, "0")
