"""Run ``pyfunc-ensembler`` with the set-up for an ensembler's own metrics left out.

The baseline of ``bench.run``'s ``ensembler_metrics`` step. ``TheirMetrics.prepare``
(which makes ``prometheus_client``'s multiprocess directory and sets
``PROMETHEUS_MULTIPROC_DIR`` before the model loads) is replaced by the state the server
takes when it has no directory for them (a read-only root): nothing is made or set, and
a scrape has nothing of theirs to read. All else is the server as shipped. Run with our
Python and the command line's own arguments.
"""

import os
import sys
from collections.abc import MutableMapping

from pyfunc_ensembler.cli import main
from pyfunc_ensembler.metrics import TheirMetrics


def _left_out(
    cls: type[TheirMetrics], environ: MutableMapping[str, str] = os.environ
) -> TheirMetrics:
    return cls("", owned=False)


TheirMetrics.prepare = classmethod(_left_out)  # type: ignore[method-assign, assignment]
sys.exit(main())
