"""Start serving: load the model once, bind the port, run the front end in 1..N workers."""

from __future__ import annotations

import importlib
import logging
import socket

from pyfunc_ensembler import logging as ensembler_logging
from pyfunc_ensembler.core import Core, describe
from pyfunc_ensembler.lifecycle import bind, return_after_shutdown
from pyfunc_ensembler.loader import Ensembler, load
from pyfunc_ensembler.metrics import Metrics, TheirMetrics, model_info, serve_metrics
from pyfunc_ensembler.settings import Settings
from pyfunc_ensembler.supervisor import Ready, Serve, Supervisor

logger = logging.getLogger("pyfunc_ensembler.serve")

FRONT_ENDS = {"native": "pyfunc_ensembler.native", "asgi": "pyfunc_ensembler.asgi"}


def serve(settings: Settings) -> int:
    ensembler_logging.configure(settings)
    # Before the model loads: prometheus_client picks its mode when it is first imported.
    theirs = TheirMetrics.prepare()
    try:
        return _serve(settings, theirs)
    finally:
        theirs.close()


def _serve(settings: Settings, theirs: TheirMetrics) -> int:
    ensembler = load(settings.model_uri, force_mlflow=settings.force_mlflow)
    # Made before the fork, so that every worker writes its own slot of the same memory;
    # twice as many slots as workers, for the new ones of a SIGHUP.
    metrics = Metrics(settings.workers, model_info(ensembler.info), theirs, slots=2)
    front_end = importlib.import_module(FRONT_ENDS[settings.server])
    sock = bind(settings.host, settings.port)
    logger.info(
        "serving %s on %s:%d (%s front end, %d workers)",
        describe(ensembler),
        settings.host,
        settings.port,
        settings.server,
        settings.workers,
    )

    if settings.metrics_port:
        serve_metrics(metrics, settings.host, settings.metrics_port)

    def worker(ensembler: Ensembler) -> Serve:
        """What a worker forked now runs: `ensembler` behind a core of its own."""
        core = Core.from_settings(ensembler, settings, metrics)

        def run(listening: socket.socket, slot: int, ready: Ready) -> None:
            metrics.use_slot(slot)
            if settings.isolate:
                # Imported only when asked for, as tracing is. Forks the zygote: before
                # any thread of this worker's (tracing's exporter).
                from pyfunc_ensembler.isolation import EnsemblerProcess

                core.run_in(EnsemblerProcess.start(ensembler, settings, listening))
            if settings.tracing != "off":
                # In the worker: the exporter's threads would not survive the fork.
                from pyfunc_ensembler.tracing import instrument

                instrument(core, settings.tracing)
            # Connections arriving until its loop accepts wait in the shared queue.
            ready()
            front_end.serve(listening, core, settings)

        return run

    def reload() -> Serve:
        fresh = load(settings.model_uri, force_mlflow=settings.force_mlflow)
        metrics.set_info(model_info(fresh.info))
        logger.info("SIGHUP: loaded %s anew", describe(fresh))
        return worker(fresh)

    if settings.workers <= 1:
        return_after_shutdown()
        worker(ensembler)(sock, 0, lambda: None)
        return 0
    return Supervisor(sock, worker(ensembler), settings.workers, theirs.process_ended, reload).run()
