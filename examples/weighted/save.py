"""Save the example ensembler as an MLflow model: ``python examples/weighted/save.py DIR``."""

from __future__ import annotations

import sys
from pathlib import Path

import cloudpickle

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ensembler  # noqa: E402

from pyfunc_ensembler import save_ensembler  # noqa: E402


def main(target: str) -> None:
    # By value: the saved model then needs no copy of ensembler.py to load.
    cloudpickle.register_pickle_by_value(ensembler)
    save_ensembler(
        target,
        ensembler.WeightedEnsembler(),
        artifacts={"weights": str(HERE / "weights.yaml")},
        pip_requirements=["pyyaml"],
    )
    print(f"saved the example ensembler to {target}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(HERE.parent / "model"))
