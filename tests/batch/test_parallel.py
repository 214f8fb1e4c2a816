"""--processes: forked workers give the single process's output, row for row, in order."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pyfunc_ensembler.batch import run, short_job
from pyfunc_ensembler.batch.parallel import Channel
from pyfunc_ensembler.errors import BatchError, EnsembleFailed
from tests.batch import models
from tests.batch.conftest import interrupt, save, slow_job
from tests.batch.tables import typed_table
from tests.helpers import run_cli, wait_for


def test_the_output_is_the_single_processs(pick_model: str, tmp_path: Path) -> None:
    # 40 batches of 5 rows over 3 workers: every worker gets several, out of step.
    table = pa.concat_tables([typed_table("array_double")] * 50)
    table = table.set_column(0, "id", pa.array(range(table.num_rows)))
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=7)
    outputs = {}
    for processes in (1, 3):
        out = tmp_path / f"out-{processes}.parquet"
        job = short_job(pick_model, str(tmp_path / "in.parquet"), str(out),
                        result_type="ARRAY", item_type="DOUBLE")  # fmt: skip
        report = run(job, batch_size=5, processes=processes)
        assert report.rows == 200
        outputs[processes] = pq.read_table(out)
    assert outputs[3].equals(outputs[1])
    assert outputs[3].column("id").to_pylist() == list(range(200))


def test_a_row_that_fails_in_a_worker_is_named_as_in_one_process(
    failing_model: str, tmp_path: Path
) -> None:
    pq.write_table(pa.table({"id": list(range(20))}), tmp_path / "in.parquet")
    job = short_job(failing_model, str(tmp_path / "in.parquet"), str(tmp_path / "o"))
    with pytest.raises(EnsembleFailed, match=r"^row 7: ensemble\(\) raised ValueError: seven"):
        run(job, batch_size=3, processes=2)
    assert not (tmp_path / "o").exists()


def test_a_worker_that_dies_fails_the_job(tmp_path: Path) -> None:
    uri = save(models.DiesOnSeven(), tmp_path / "model")
    pq.write_table(pa.table({"id": list(range(20))}), tmp_path / "in.parquet")
    job = short_job(uri, str(tmp_path / "in.parquet"), str(tmp_path / "o"))
    with pytest.raises(BatchError, match=r"an ensembler process died \(exit code 3\)"):
        run(job, batch_size=3, processes=2)
    assert not (tmp_path / "o").exists()


def test_the_cli_takes_processes(pick_model: str, tmp_path: Path) -> None:
    pq.write_table(typed_table("long"), tmp_path / "in.parquet")
    done = run_cli("batch", "--ensembler", pick_model, "--input", str(tmp_path / "in.parquet"),
                   "--output", str(tmp_path / "o.parquet"), "--result-type", "LONG",
                   "--processes", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert pq.read_table(tmp_path / "o.parquet").column("result").to_pylist()[0] == 2**40


@pytest.mark.parametrize(
    ("processes", "signum", "to_group"),
    [
        (1, signal.SIGINT, False),
        (2, signal.SIGINT, True),  # Ctrl-C: the terminal signals the whole process group
        (2, signal.SIGTERM, False),  # a deleted pod
    ],
)
def test_a_signal_stops_the_job_in_one_line_and_leaves_the_sink_as_it_was(
    processes: int, signum: signal.Signals, to_group: bool, tmp_path: Path
) -> None:
    job = slow_job(
        tmp_path, "--output", str(tmp_path / "out" / "scores.csv"), "--save-mode", "overwrite",
        "--batch-size", "100", "--processes", str(processes), stderr=subprocess.PIPE,
    )  # fmt: skip
    # Every process that ensembles has begun a row (a worker per process, or this one).
    begun = lambda: len(list(tmp_path.glob("started.*"))) == processes  # noqa: E731
    stderr = interrupt(job, signum, to_group, begun)
    assert job.returncode == 128 + signum
    # One line from the command, and nothing from its workers (they share its stderr).
    assert stderr == f"pyfunc-ensembler batch: interrupted by {signum.name}\n"
    assert os.listdir(tmp_path / "out") == ["scores.csv"]  # no staged output left
    assert (tmp_path / "out" / "scores.csv").read_text() == "the last run's\n"
    # Its workers have ended with it.
    wait_for(lambda: not _group_alive(job.pid), every=0.02)


def test_the_workers_of_a_job_killed_outright_end_with_it(tmp_path: Path) -> None:
    job = slow_job(
        tmp_path, "--output", str(tmp_path / "out.csv"), "--batch-size", "100", "--processes", "2"
    )
    try:
        wait_for(lambda: len(list(tmp_path.glob("started.*"))) == 2 or job.poll() is not None)
        assert job.poll() is None
        job.kill()  # as the OOM killer does: no handler runs, no clean-up
        job.wait()
        wait_for(lambda: not _group_alive(job.pid), every=0.02)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.pid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_channel_carries_messages_whole_and_says_when_the_other_end_closed() -> None:
    ours, theirs = map(Channel, socket.socketpair())
    messages = [b"", b"small", os.urandom(3 << 20), memoryview(b"a view")]
    sender = threading.Thread(target=lambda: [ours.send(m) for m in messages])
    sender.start()  # a thread: 3 MB is more than a socket buffers
    assert [theirs.receive() for _ in messages] == [bytes(m) for m in messages]
    sender.join()
    ours.close()
    with pytest.raises(EOFError):
        theirs.receive()
    with pytest.raises(OSError):
        theirs.send(b"to no one")
