"""Ensemblers for the batch tests, written for real time (``predictions[route]["data"]``)."""

from __future__ import annotations

from pyfunc_ensembler import PyFunc


class Pick(PyFunc):
    """The data of the route the row's ``route`` column names: any type passes through."""

    def ensemble(self, input, predictions, treatment_config, enricher_response=None, **kwargs):  # type: ignore[no-untyped-def]
        return predictions[input["route"]]["data"]


class Trivial(PyFunc):
    """The benchmark's ensembler: a little arithmetic on two scalar routes."""

    def ensemble(self, input, predictions, treatment_config, enricher_response=None, **kwargs):  # type: ignore[no-untyped-def]
        return predictions["model_a"] * 0.5 + predictions["model_b"] * 0.5


class FailsOnSeven(PyFunc):
    def ensemble(self, input, predictions, treatment_config, enricher_response=None, **kwargs):  # type: ignore[no-untyped-def]
        if input["id"] == 7:
            raise ValueError("seven is unlucky")
        return float(input["id"])


class RequiresEnricher(PyFunc):
    """Turing's newest SDK signature: ``enricher_response`` without a default."""

    def ensemble(self, input, predictions, treatment_config, enricher_response, **kwargs):  # type: ignore[no-untyped-def]
        return enricher_response is None and treatment_config is None


class DiesOnSeven(PyFunc):
    """Kills its own process at id 7: a worker that dies mid-job."""

    def ensemble(self, input, predictions, treatment_config, enricher_response=None, **kwargs):  # type: ignore[no-untyped-def]
        if input["id"] == 7:
            import os

            os._exit(3)
        return float(input["id"])


class Slow(PyFunc):
    """10 ms a row, after saying it has begun: a file named by ``$SLOW_STARTED`` and its pid."""

    def ensemble(self, input, predictions, treatment_config, enricher_response=None, **kwargs):  # type: ignore[no-untyped-def]
        import os
        import time

        started = f"{os.environ['SLOW_STARTED']}.{os.getpid()}"
        if not os.path.exists(started):
            open(started, "w").close()
        time.sleep(0.01)
        return float(input["id"])


class Environment(PyFunc):
    """The environment variables the row's ``names`` column lists, as this process has them."""

    def ensemble(self, input, predictions, treatment_config, enricher_response=None, **kwargs):  # type: ignore[no-untyped-def]
        import os

        return ",".join(os.environ.get(name, "unset") for name in input["names"].split(","))
