"""Our image beside Turing's, both built here with buildah and run with podman.

Both serve Turing's ``weighted_legacy`` fixture on the same base (the stand-in for
python:3.11-slim, tests/images/standin.sh): ours is docker/Dockerfile then
docker/app.Dockerfile, Turing's is bench/turing-image.Dockerfile (its server installed
as bench/reference.sh installs it, a shell as PID 1 as in Turing's own Dockerfile).
Measured, once per image (builds) or `--runs` times (starts, stops):

- image size, as ``podman image inspect`` reports it, and what it adds to the base;
- build time from the base (ours: base image + app image);
- start to first 200: ``podman run`` to the first 200 to a fixture's ``POST /ensemble``;
- SIGTERM: ``podman stop`` (SIGTERM, then SIGKILL after 10 s), its time and exit status.

    python -m bench.images                      # make bench-images; docs/images.md
    python -m bench.images --runs 5 --out bench/out/images.json

The image tests (tests/images/test_against_turing.py) run `measure` once and check
the behaviour it finds; timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.helpers import FIXTURES, ROOT, fixture_cases
from tests.images import engine

STOP_TIMEOUT = 10  # podman's default, and what Kubernetes' grace period plays
CASE = next(c for c in fixture_cases() if c["ensembler"] == "weighted_legacy")


@dataclasses.dataclass
class Measured:
    image: str
    size_mb: float
    above_base_mb: float
    build_s: float
    """From the stand-in: ours is the base image then the app image (`app_build_s`)."""
    app_build_s: float | None
    first_200_s: list[float] = dataclasses.field(default_factory=list)
    stop_s: list[float] = dataclasses.field(default_factory=list)
    exit_status: list[int] = dataclasses.field(default_factory=list)


def answers_the_fixture(one: engine.Container) -> bool:
    return one.post_json(CASE["body"], CASE["headers"])[0] == 200


def run_and_stop(measured: Measured, tag: str) -> None:
    one = engine.Container(tag, probe=answers_the_fixture)
    try:
        one.start()
        measured.first_200_s.append(one.ready_after)
        stopping = time.monotonic()
        engine.tool("podman", "stop", "-t", str(STOP_TIMEOUT), one.name)
        measured.stop_s.append(time.monotonic() - stopping)
        measured.exit_status.append(one.wait())
    finally:
        one.remove()


def size_mb(tag: str) -> float:
    return int(engine.inspect_image(tag)["Size"]) / 1e6


def build_ours(base: engine.Build | None) -> tuple[str, float, float | None]:
    if base is None:
        base = engine.build(engine.BASE_IMAGE, engine.DOCKER / "Dockerfile", ROOT)
    args = {"BASE_IMAGE": engine.BASE_IMAGE}
    tag = engine.tag("localhost/bench/ours-weighted-legacy")
    app = engine.build(tag, engine.DOCKER / "app.Dockerfile", FIXTURES / "weighted_legacy", args)
    return tag, base.seconds + app.seconds, app.seconds


def build_turings(work: Path) -> tuple[str, float, float | None]:
    context = work / "turing-image"
    context.mkdir()
    shutil.copy(ROOT / "bench" / "reference.sh", context)
    shutil.copytree(FIXTURES / "weighted_legacy", context / "model")
    tag = engine.tag("localhost/bench/turing-weighted-legacy")
    built = engine.build(tag, ROOT / "bench" / "turing-image.Dockerfile", context)
    return tag, built.seconds, None


def measure(runs: int = 3, ours: engine.Build | None = None) -> list[Measured]:
    """Build the stand-in (if missing) and both images (our base image too, unless `ours`
    is its build), then start and stop each `runs` times."""
    engine.tool(engine.HERE / "standin.sh")
    base = size_mb(engine.STANDIN)
    with tempfile.TemporaryDirectory() as work:
        built = [("pyfunc-ensembler", *build_ours(ours)), ("Turing", *build_turings(Path(work)))]
    results = []
    for name, tag, seconds, app_seconds in built:
        measured = Measured(name, size_mb(tag), size_mb(tag) - base, seconds, app_seconds)
        for _ in range(runs):
            run_and_stop(measured, tag)
        results.append(measured)
    return results


def table(results: list[Measured]) -> str:
    lines = [
        "| image | size (MB) | above the base (MB) | build (s) | start to first 200 (s, median)"
        " | `podman stop` (s, median) | exit status |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in results:
        statuses = ", ".join(str(s) for s in sorted(set(m.exit_status)))
        build = f"{m.build_s:.0f}" + (f" (app {m.app_build_s:.0f})" if m.app_build_s else "")
        lines.append(
            f"| {m.image} | {m.size_mb:.0f} | {m.above_base_mb:.0f} | {build} "
            f"| {statistics.median(m.first_200_s):.2f} | {statistics.median(m.stop_s):.2f} "
            f"| {statuses} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="starts and stops per image")
    parser.add_argument("--out", type=Path, help="also write the measurements as JSON here")
    args = parser.parse_args(argv)
    try:
        results = measure(args.runs)
    finally:
        engine.remove_built()  # the measured images: nothing needs them afterwards
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload: list[dict[str, Any]] = [dataclasses.asdict(m) for m in results]
        args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
