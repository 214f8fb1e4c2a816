"""Batch ensembling: the ensembler served in real time, applied to whole tables.

A job (`job.Job`, Turing's ``BatchEnsemblingJob`` shape with files for datasets) runs
on an engine: ``local`` (`local`, Arrow streaming on this machine, the default) or
``spark`` (`spark`, any Spark master). Both ensemble each Arrow batch with
`apply.TableEnsembler`, so they give the same answers as each other and as real time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyfunc_ensembler.batch.job import Job, load_job, parse_job, short_job

if TYPE_CHECKING:
    from pyfunc_ensembler.batch.results import Report

ENGINES = ("local", "spark")

__all__ = ["ENGINES", "Job", "Report", "load_job", "parse_job", "run", "short_job"]


def __getattr__(name: str) -> Any:
    # Report lives beside pyarrow and numpy: importing them only when needed keeps
    # `pyfunc-ensembler serve`, whose CLI also builds the batch command, lean.
    if name == "Report":
        from pyfunc_ensembler.batch.results import Report

        return Report
    raise AttributeError(f"module 'pyfunc_ensembler.batch' has no attribute '{name}'")


def run(job: Job, engine: str = "local", **options: Any) -> Report:
    """Run `job` on `engine`; `options` go to that engine's ``run``."""
    if engine == "spark":
        from pyfunc_ensembler.batch import spark

        return spark.run(job, **options)
    from pyfunc_ensembler.batch import local

    return local.run(job, **options)
