"""Save the instrumented example: ``python examples/instrumented/save.py DIR``."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import instrumented  # noqa: E402

from pyfunc_ensembler import save_ensembler  # noqa: E402


def main(target: str) -> None:
    # By reference, with the module as a code path: loading imports it, which makes
    # its metrics (an object holding a metric cannot be pickled).
    save_ensembler(
        target,
        instrumented.InstrumentedEnsembler(),
        code_paths=[str(HERE / "instrumented.py")],
        pip_requirements=["prometheus-client", "opentelemetry-api"],
    )
    print(f"saved the instrumented example to {target}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(HERE.parent / "instrumented-model"))
