"""Our image beside Turing's (bench/images.py, docs/images.md): what each does on SIGTERM.

The sizes and times are printed for the record (``-s``), never asserted; the exit
statuses are facts the docs state, checked here so that they stay true.
"""

from __future__ import annotations

from bench import images
from tests.images import engine


def test_ours_exits_0_on_sigterm_and_turings_is_killed_after_the_grace_period(
    base_image: engine.Build,
) -> None:
    ours, turings = images.measure(runs=1, ours=base_image)
    print(images.table([ours, turings]))
    assert ours.exit_status == [0]
    # Turing's entry point leaves a shell as PID 1, which has no SIGTERM handler (and
    # the kernel gives PID 1 no default one): podman waits out the 10 s, then SIGKILL.
    assert turings.exit_status == [137]
