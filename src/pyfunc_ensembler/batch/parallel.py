"""Ensembling on every CPU: forked worker processes answer batches, in order.

The parent reads, joins and writes; each worker, forked once the model is loaded
(so it shares the loaded model instead of loading its own), turns a joined batch into
its result column with the very `TableEnsembler` the parent would use. Batch ``k``
goes to worker ``k % N`` and its answer is taken back before batch ``k + N`` is sent,
so the output is the one a single process writes, row for row and in the same order,
and memory holds about N batches more. A worker's error (a row that fails, an answer
that does not fit) comes back as the same error, naming the same row; a worker that
dies fails the job.

Each worker has its own copy of the ensembler: state an ensembler keeps across rows
(a counter, a cache) is per process.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import pickle
import queue
import signal
import socket
import struct
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from pyfunc_ensembler.batch.apply import Applied, TableEnsembler
from pyfunc_ensembler.errors import BatchError, EnsemblerError
from pyfunc_ensembler.lifecycle import die_with_parent


class Workers:
    """`processes` forked workers answering batches for `ensembler` (loaded first)."""

    def __init__(self, ensembler: TableEnsembler, processes: int) -> None:
        context = multiprocessing.get_context("fork")
        self._conns: list[Channel] = []
        self._procs: list[Any] = []
        # What exists now (the model, its libraries) is left out of the workers' garbage
        # collections: a collection touching it would copy every page the fork shares.
        gc.freeze()
        try:
            self._fork(context, ensembler.load(), processes)
        finally:
            gc.unfreeze()

    def _fork(self, context: Any, ensembler: TableEnsembler, processes: int) -> None:
        for _ in range(processes):
            parent, child = map(Channel, socket.socketpair())
            process = context.Process(
                target=_serve,
                args=(ensembler, child, [*self._conns, parent], os.getpid()),
                daemon=True,
                name="ensembler",
            )
            process.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(process)

    def apply(self, batches: Iterable[tuple[pa.RecordBatch, int]]) -> Iterator[Applied]:
        """Each ``(batch, offset)`` ensembled, in the order given.

        A thread reads `batches` and sends them out while this one takes the answers
        back in order, so that reading, writing and sending never leave a worker waiting
        for its next batch. A send blocks until its worker takes the batch, which keeps
        about two batches per worker in memory.
        """
        sent: queue.SimpleQueue[tuple[int, pa.RecordBatch] | BaseException | None]
        sent = queue.SimpleQueue()
        feeder = threading.Thread(target=self._feed, args=(batches, sent), name="feeder")
        feeder.start()
        try:
            while (item := sent.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield self._receive(*item)
        finally:
            if feeder.is_alive():  # stopped early: a send may wait on a worker forever
                self._kill()
            feeder.join()

    def _feed(
        self,
        batches: Iterable[tuple[pa.RecordBatch, int]],
        sent: queue.SimpleQueue[tuple[int, pa.RecordBatch] | BaseException | None],
    ) -> None:
        count = len(self._conns)
        try:
            for index, (batch, offset) in enumerate(batches):
                worker = index % count
                self._conns[worker].send(pickle.dumps(offset))
                self._conns[worker].send(_encode(batch))
                sent.put((worker, batch))
        except BaseException as exc:  # reading failed, or the workers were stopped
            sent.put(exc)
            return
        sent.put(None)

    def _receive(self, worker: int, batch: pa.RecordBatch) -> Applied:
        conn = self._conns[worker]
        try:
            kind, *answer = pickle.loads(conn.receive())
            if kind == "ok":
                column = _decode(conn.receive()).column(0)
        except (EOFError, OSError):
            self._procs[worker].join(timeout=10)  # its pipe closed: it is ending, reap it
            code = self._procs[worker].exitcode
            raise BatchError(f"an ensembler process died (exit code {code})") from None
        if kind == "error":
            raise answer[0]
        name, nulled, seconds = answer
        applied = Applied(batch.append_column(name, column), nulled)
        applied.seconds = seconds
        return applied

    def _kill(self) -> None:
        for process in self._procs:
            if process.is_alive():
                process.kill()

    def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(b"")
        for process in self._procs:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        for conn in self._conns:
            conn.close()


def _serve(ensembler: TableEnsembler, conn: Channel, parents: list[Channel], parent: int) -> None:
    """A worker: batches in, result columns out, until an empty message or the parent's end.

    A thread sends the answers, so that the next batch is taken and ensembled while the
    parent has yet to take the last answer (it takes them in order, one worker after
    the other).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    # A parent killed outright (SIGKILL, the OOM killer) would leave this one waiting
    # forever: its siblings hold the other end of its pipe open, so it never reads EOF.
    die_with_parent(signal.SIGKILL, parent)
    for inherited in parents:  # the parent's ends, forked along: held here, a dead parent's
        inherited.close()  # pipe would never read as ended where that signal does not exist
    answers: queue.Queue[list[bytes | memoryview] | None] = queue.Queue(maxsize=1)
    sender = threading.Thread(target=_send, args=(conn, answers), daemon=True)
    sender.start()
    try:
        _answer(ensembler, conn, answers)
    finally:
        answers.put(None)
        sender.join()


def _answer(
    ensembler: TableEnsembler,
    conn: Channel,
    answers: queue.Queue[list[bytes | memoryview] | None],
) -> None:
    while True:
        try:
            message = conn.receive()
        except EOFError:
            return
        if not message:
            return
        offset = pickle.loads(message)
        batch = _decode(conn.receive())
        try:
            applied = ensembler.apply(batch, offset=offset)
        except Exception as exc:
            answers.put([pickle.dumps(("error", _portable(exc)))])
            continue
        name = ensembler.result.column_name
        answer = pickle.dumps(("ok", name, applied.nulled, applied.seconds))
        answers.put([answer, _encode(applied.batch.select([applied.batch.num_columns - 1]))])


def _send(conn: Channel, answers: queue.Queue[list[bytes | memoryview] | None]) -> None:
    """Send each answer; once the parent is gone, drop them (so that the worker's thread,
    which then reads the end of its input, never waits on a full queue)."""
    gone = False
    while (messages := answers.get()) is not None:
        try:
            for message in messages if not gone else ():
                conn.send(message)
        except OSError:
            gone = True


def _encode(batch: pa.RecordBatch) -> memoryview:
    """`batch` in Arrow's IPC format: only its rows' bytes (pickle would carry the whole
    buffers a sliced batch points into: 16 times the data for a 64 Ki slice of 1 Mi rows)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return memoryview(sink.getvalue())


def _decode(data: bytearray) -> pa.RecordBatch:
    """The batch `_encode` wrote; its columns point into `data` (no copy)."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_next_batch()


class Channel:
    """One end of a socket pair that carries messages: a length (8 bytes), then the bytes.

    A message is read straight into one buffer of its size. multiprocessing's
    `Connection` reads a large one in chunks, each into a new buffer, and joins them in
    a `BytesIO`: for 2 MB batches that took 4-7 times the CPU and 8-12 times the page
    faults (measured), a few percent of a job.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def send(self, message: bytes | memoryview) -> None:
        """Send `message` whole; `OSError` once the other end is closed."""
        size = memoryview(message).nbytes
        if size < _SMALL:  # one write: the length and a small message
            self._sock.sendall(_LENGTH.pack(size) + message)
        else:
            self._sock.sendall(_LENGTH.pack(size))
            self._sock.sendall(message)

    def receive(self) -> bytearray:
        """The next message; `EOFError` when the other end has closed instead."""
        (size,) = _LENGTH.unpack(self._read(_LENGTH.size))
        return self._read(size)

    def _read(self, size: int) -> bytearray:
        buffer = bytearray(size)
        view, done = memoryview(buffer), 0
        while done < size:
            read = self._sock.recv_into(view[done:])
            if not read:
                raise EOFError
            done += read
        return buffer

    def close(self) -> None:
        self._sock.close()


_LENGTH = struct.Struct("!Q")
_SMALL = 64 * 1024
"""A message under this many bytes goes out in one write with its length (a copy that
small costs less than a second system call)."""


def _portable(exc: Exception) -> Exception:
    """`exc` as an error pickle carries across (ours are rebuilt from their message)."""
    if isinstance(exc, EnsemblerError):
        try:
            return type(exc)(exc.message)
        except TypeError:
            pass
    return BatchError(getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}")
