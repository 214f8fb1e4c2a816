"""Save the benchmark ensemblers: ``python bench/save.py {ours,turing,metered} DIR [MB]``.

Run with our ``.venv`` for ``ours`` and with ``bench/.venv-ref`` (Turing's SDK) for
``turing``; both save `logic.BenchLogic`, pickled by value, as two models in DIR:
``trivial`` (no artifacts) and ``ballast`` (holds an artifact of MB megabytes in memory,
default 200, for the memory measurements). ``metered`` saves, with our SDK, the logic
with ``prometheus_client`` metrics of its own: ``idle`` (`logic.MeteredLogic`, never
updated) and ``updating`` (`logic.CountingLogic`).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import cloudpickle

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import logic  # noqa: E402


def base_class(sdk: str) -> type:
    if sdk == "turing":
        from turing.ensembler import PyFunc
    else:
        from pyfunc_ensembler import PyFunc
    return PyFunc  # type: ignore[no-any-return]


def save(
    sdk: str, path: Path, artifacts: dict[str, str] | None, logic_class: type = logic.BenchLogic
) -> None:
    # Defined here, not in logic.py, so each SDK gets its own subclass; by value, so
    # neither server needs bench/ on its path.
    cloudpickle.register_pickle_by_value(logic)
    ensembler = type("BenchEnsembler", (logic_class, base_class(sdk)), {})()
    if path.exists():
        shutil.rmtree(path)
    if sdk == "turing":
        # What Turing's SDK does when it uploads a PyFunc ensembler.
        import mlflow.pyfunc

        mlflow.pyfunc.save_model(path=str(path), python_model=ensembler, artifacts=artifacts)
    else:
        from pyfunc_ensembler import save_ensembler

        save_ensembler(str(path), ensembler, artifacts=artifacts)


def write_ballast(path: Path, megabytes: float) -> None:
    size = int(megabytes * 1024 * 1024)
    if path.exists() and path.stat().st_size == size:
        return
    with open(path, "wb") as file:  # random, so no layer can compress or dedupe it
        for _ in range(size // (1 << 20)):
            file.write(os.urandom(1 << 20))
        file.write(os.urandom(size % (1 << 20)))


def main(sdk: str, target: str, megabytes: float = 200) -> None:
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    if sdk == "metered":
        save("ours", out / "idle", None, logic.MeteredLogic)
        save("ours", out / "updating", None, logic.CountingLogic)
        print(f"saved the metered benchmark ensemblers to {out}")
        return
    ballast = out.parent / f"ballast-{megabytes:g}mb.bin"
    write_ballast(ballast, megabytes)
    save(sdk, out / "trivial", None)
    save(sdk, out / "ballast", {"ballast": str(ballast)})
    print(f"saved the {sdk} benchmark ensemblers to {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(float(a) for a in sys.argv[3:4]))
