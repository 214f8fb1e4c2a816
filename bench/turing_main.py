"""Run Turing's ``python -m pyfunc_ensembler_runner`` unchanged, but on port ``$BENCH_PORT``.

Its entry point listens on 8083, hard-coded; the benchmark needs a free port instead,
so ``Application.listen`` is wrapped to swap the port and nothing else. Run it with the
reference venv's Python and Turing's own arguments.
"""

import os
import runpy

import tornado.web

_port = int(os.environ["BENCH_PORT"])
_listen = tornado.web.Application.listen


def _listen_on_bench_port(self, port, *args, **kwargs):  # type: ignore[no-untyped-def]
    return _listen(self, _port, *args, **kwargs)


tornado.web.Application.listen = _listen_on_bench_port  # type: ignore[method-assign]
runpy.run_module("pyfunc_ensembler_runner", run_name="__main__", alter_sys=True)
