"""Prometheus metrics that add up across worker processes, for a few µs per request.

All workers serve one port, so a scrape reaches one of them at random; it must still
report the totals. Each worker owns one *slot* of an anonymous shared-memory map made
before the workers are forked; only that worker writes its slot (so no locks), and a
scrape, whichever worker it reaches, sums every slot. A replaced worker takes over its
predecessor's slot, so counters never go backwards.

A slot is a flat array of doubles (integers are exact up to 2**53): the in-flight
gauge, one counter per HTTP status code, then four histograms, each its non-cumulative
bucket counts followed by its sum. Recording a request is a handful of indexed adds,
cheaper than ``prometheus_client``'s multiprocess mode, which writes a file per metric.

An ensembler's own ``prometheus_client`` metrics are another matter: they are the
author's, so they go through ``prometheus_client``'s multiprocess mode, set up here for
the author (`TheirMetrics`): every process that updates one writes its own file in one
directory, and a scrape merges the files after our lines. An ensembler that never
imports ``prometheus_client`` writes no file, and its scrape costs one directory listing.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import platform
import shutil
import tempfile
import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING

from pyfunc_ensembler.errors import (
    EnsemblerError,
    HeadersTooLarge,
    MethodNotAllowed,
    NotFound,
    RequestError,
    error_body,
)

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from pyfunc_ensembler.loader import ModelInfo

logger = logging.getLogger("pyfunc_ensembler.metrics")

# Sub-millisecond resolution: an ensembler answers a router that waits 10-100 ms.
LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
SIZE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_IN_FLIGHT = 0
_STATUS = 1  # _STATUS + code: requests answered with that code
_STATUS_CODES = 600
# Slots start on a 128-byte boundary (two cache lines: x86 fetches lines in pairs).
# Otherwise one worker's in-flight gauge shares a line with its neighbour's last
# histogram sum; both are written on every request, and the line would bounce between
# their cores (false sharing), a cost that grows with the number of busy workers.
_SLOT_ALIGN = 128 // 8


class Histogram:
    """Where one histogram lives in a slot, and how it is written and read."""

    def __init__(self, name: str, help: str, buckets: Sequence[float], offset: int) -> None:
        self.name = name
        self.help = help
        self.buckets = tuple(buckets)
        self.offset = offset
        self.sum = offset + len(self.buckets) + 1  # after the buckets and +Inf
        self.end = self.sum + 1

    def observe(self, slot: memoryview[float], value: float) -> None:
        # bisect_left: a value equal to a bound belongs to it (Prometheus' `le`).
        slot[self.offset + bisect_left(self.buckets, value)] += 1
        slot[self.sum] += value

    def render(self, total: Sequence[float]) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        cumulative = 0.0
        bounds = [*(_number(b) for b in self.buckets), "+Inf"]
        for index, bound in enumerate(bounds):
            cumulative += total[self.offset + index]
            yield f'{self.name}_bucket{{le="{bound}"}} {_number(cumulative)}'
        yield f"{self.name}_sum {_number(total[self.sum])}"
        yield f"{self.name}_count {_number(cumulative)}"


def _layout() -> tuple[Histogram, Histogram, Histogram, Histogram, int]:
    offset = _STATUS + _STATUS_CODES
    histograms = []
    for name, help, buckets in (
        (
            "ensembler_request_duration_seconds",
            "Time from the request body received to the answer ready, in seconds.",
            LATENCY_BUCKETS,
        ),
        (
            "ensembler_ensemble_duration_seconds",
            "Time spent in the ensembler's own call, in seconds.",
            LATENCY_BUCKETS,
        ),
        ("ensembler_request_size_bytes", "Request body sizes in bytes.", SIZE_BUCKETS),
        ("ensembler_response_size_bytes", "Response body sizes in bytes.", SIZE_BUCKETS),
    ):
        histogram = Histogram(name, help, buckets, offset)
        histograms.append(histogram)
        offset = histogram.end
    request, ensemble, request_size, response_size = histograms
    return request, ensemble, request_size, response_size, -(-offset // _SLOT_ALIGN) * _SLOT_ALIGN


REQUEST_SECONDS, ENSEMBLE_SECONDS, REQUEST_BYTES, RESPONSE_BYTES, SLOT_SIZE = _layout()
HISTOGRAMS = (REQUEST_SECONDS, ENSEMBLE_SECONDS, REQUEST_BYTES, RESPONSE_BYTES)


class Metrics:
    """The shared counters of all workers; `use_slot` picks this process's slot."""

    def __init__(
        self,
        workers: int = 1,
        info: Mapping[str, str] | None = None,
        theirs: TheirMetrics | None = None,
        slots: int = 1,
    ) -> None:
        self.workers = max(1, workers)
        self.theirs = theirs
        self.slots = self.workers * max(1, slots)  # `slots` per worker
        self._memory = mmap.mmap(-1, self.slots * SLOT_SIZE * 8)  # MAP_SHARED: survives fork
        self._all = memoryview(self._memory).cast("d")
        self.set_info(info or {})
        self.use_slot(0)

    def set_info(self, info: Mapping[str, str]) -> None:
        """The model served by workers forked from now on (a SIGHUP loaded it anew)."""
        self._static = _static_lines(self.workers, info)

    def use_slot(self, index: int) -> None:
        """Write to slot `index` from now on (a worker calls this once, after the fork)."""
        self.slot = self._all[index * SLOT_SIZE : (index + 1) * SLOT_SIZE]
        # A predecessor that died mid-request left its in-flight count behind.
        self.slot[_IN_FLIGHT] = 0

    def set_in_flight(self, count: int) -> None:
        self.slot[_IN_FLIGHT] = count

    def count(self, status: int) -> None:
        """Count a request answered without a call (rejected, or a bad body)."""
        self.slot[_STATUS + (status if 0 <= status < _STATUS_CODES else 0)] += 1

    def observe(
        self,
        status: int,
        seconds: float,
        ensemble_seconds: float | None,
        request_bytes: int,
        response_bytes: int,
    ) -> None:
        """Record one answered request (the hot path: keep it to indexed adds)."""
        slot = self.slot
        slot[_STATUS + status] += 1
        REQUEST_SECONDS.observe(slot, seconds)
        if ensemble_seconds is not None:
            ENSEMBLE_SECONDS.observe(slot, ensemble_seconds)
        REQUEST_BYTES.observe(slot, request_bytes)
        RESPONSE_BYTES.observe(slot, response_bytes)

    def totals(self) -> list[float]:
        """Every slot summed: what all workers together have counted."""
        total = list(self._all[0:SLOT_SIZE])
        for index in range(1, self.slots):
            base = index * SLOT_SIZE
            for i, value in enumerate(self._all[base : base + SLOT_SIZE]):
                total[i] += value
        return total

    def render(self) -> bytes:
        """The Prometheus text exposition (format 0.0.4) of all workers together."""
        total = self.totals()
        lines = [
            "# HELP ensembler_requests_total Requests to POST /ensemble, by HTTP status code.",
            "# TYPE ensembler_requests_total counter",
        ]
        for code in range(_STATUS_CODES):
            if total[_STATUS + code]:
                lines.append(
                    f'ensembler_requests_total{{code="{code}"}} {_number(total[_STATUS + code])}'
                )
        lines += [
            "# HELP ensembler_requests_in_flight Requests being answered now, all workers.",
            "# TYPE ensembler_requests_in_flight gauge",
            f"ensembler_requests_in_flight {_number(total[_IN_FLIGHT])}",
        ]
        for histogram in HISTOGRAMS:
            lines.extend(histogram.render(total))
        lines.extend(self._static)
        ours = ("\n".join(lines) + "\n").encode()
        return ours if self.theirs is None else ours + self.theirs.render()


# Every name our lines use, as a family and as a sample: an ensembler's metric that
# would print one of them is left out of the scrape (two `# TYPE` lines for one name
# make the whole scrape fail).
OUR_NAMES = frozenset(
    {
        "ensembler_requests_total",
        "ensembler_requests_in_flight",
        "ensembler_workers",
        "ensembler_model_info",
        "ensembler_model_load_seconds",
        *(h.name + suffix for h in HISTOGRAMS for suffix in ("", "_bucket", "_sum", "_count")),
    }
)
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# prometheus_client's file for a gauge of a live* mode is gauge_<mode>_<pid>.db.
_LIVE_GAUGES = "gauge_live"
# The directories made here: <temporary directory>/pyfunc-ensembler-metrics-<pid>-<random>.
_OWN_DIR_PREFIX = "pyfunc-ensembler-metrics-"


class TheirMetrics:
    """The ensembler's own ``prometheus_client`` metrics, from every process, for a scrape.

    `prepare` points ``prometheus_client``'s multiprocess mode at a directory; it must
    run before the ensembler is loaded, since ``prometheus_client`` picks its mode when
    first imported. Counters, histograms and summaries add up over every process that
    ever wrote them, dead ones included (as our counters do); a gauge follows its
    ``multiprocess_mode``, and those of the ``live*`` modes forget a process once it is
    gone (`process_ended`, and each scrape for processes nobody reaped here).
    """

    def __init__(self, path: str, *, owned: bool) -> None:
        self.path = path
        self.owned = owned
        self._left_out: set[str] = set()

    @classmethod
    def prepare(cls, environ: MutableMapping[str, str] = os.environ) -> TheirMetrics:
        """Use the user's ``PROMETHEUS_MULTIPROC_DIR`` emptied of old files, or a new one."""
        path = environ.get(MULTIPROCESS_DIR) or environ.get(MULTIPROCESS_DIR.lower())
        if not path:
            try:
                _remove_dead_servers_dirs()
                path = tempfile.mkdtemp(prefix=f"{_OWN_DIR_PREFIX}{os.getpid()}-")
            except OSError as exc:
                # A read-only root without a writable /tmp (`docker run --read-only`):
                # serve all the same, without the ensembler's metrics.
                logger.warning(
                    "no directory for the ensembler's prometheus_client metrics (%s): they "
                    "are left out of /metrics; mount a writable /tmp or set %s",
                    exc,
                    MULTIPROCESS_DIR,
                )
                return cls("", owned=False)
            environ[MULTIPROCESS_DIR] = path
            return cls(path, owned=True)
        environ[MULTIPROCESS_DIR] = path
        os.makedirs(path, exist_ok=True)
        # A previous run's files would be added to this one's (prometheus_client asks for
        # the directory to be wiped before each start).
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.unlink(os.path.join(path, name))
        return cls(path, owned=False)

    def close(self) -> None:
        """The server stops: remove the directory if it was made here."""
        if self.owned:
            shutil.rmtree(self.path, ignore_errors=True)

    def process_ended(self, pid: int) -> None:
        """Forget `pid`'s gauges of the ``live*`` modes (`pid` has exited)."""
        self._forget({pid} & _live_gauge_pids(self._files()))

    def render(self) -> bytes:
        """Their lines in the text format, or nothing while no metric was ever written."""
        files = self._files()
        if not files:
            return b""
        # Processes that ended unseen here (an --isolate ensembler process, or one that
        # died with its worker): their live gauges go before the merge.
        self._forget({pid for pid in _live_gauge_pids(files) if not _alive(pid)})
        from prometheus_client import generate_latest

        return generate_latest(self)

    def collect(self) -> Iterator[Metric]:
        """Every process's files merged, less any family that would clash with ours."""
        from prometheus_client.multiprocess import MultiProcessCollector

        # prometheus_client leaves these two untyped.
        merged = MultiProcessCollector(None, self.path)  # type: ignore[no-untyped-call]
        for family in merged.collect():  # type: ignore[no-untyped-call]
            names = {family.name, *(sample.name for sample in family.samples)}
            if family.type in ("counter", "info"):
                names.add(f"{family.name}_{'total' if family.type == 'counter' else 'info'}")
            clash = names & OUR_NAMES
            if not clash:
                yield family
            elif family.name not in self._left_out:
                self._left_out.add(family.name)
                logger.warning(
                    "the ensembler's metric %s is left out of /metrics: %s is the server's",
                    family.name,
                    min(clash),
                )

    def _forget(self, pids: set[int]) -> None:
        if pids:
            from prometheus_client.multiprocess import mark_process_dead

            for pid in pids:
                # Another process (a worker's scrape, the supervisor) may be removing
                # the same files at the same time.
                with contextlib.suppress(FileNotFoundError):
                    mark_process_dead(pid, self.path)  # type: ignore[no-untyped-call]

    def _files(self) -> list[str]:
        try:
            return [name for name in os.listdir(self.path) if name.endswith(".db")]
        except FileNotFoundError:
            return []


def _remove_dead_servers_dirs() -> None:
    """Remove the directories of servers that were killed before they could (SIGKILL, an
    OOM kill): in a pod, /tmp is an emptyDir that outlives a restarted container."""
    root = tempfile.gettempdir()
    for name in os.listdir(root):
        pid = name[len(_OWN_DIR_PREFIX) :].partition("-")[0]
        if not (name.startswith(_OWN_DIR_PREFIX) and pid.isdigit()):
            continue
        # A restarted container's server may have the pid the dead one had (1, often).
        if int(pid) == os.getpid() or not _alive(int(pid)):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _live_gauge_pids(files: Iterable[str]) -> set[int]:
    pids = (
        name[: -len(".db")].rpartition("_")[2] for name in files if name.startswith(_LIVE_GAUGES)
    )
    return {int(pid) for pid in pids if pid.isdigit()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False  # PermissionError: another user's process has the pid now
    return True


def model_info(info: ModelInfo) -> dict[str, str]:
    """The labels of ``ensembler_model_info``, plus the load time (`Metrics` keeps it apart)."""
    from pyfunc_ensembler.version import __version__

    return {
        "model_uri": info.uri,
        "ensembler_class": info.ensembler_class,
        "loader": info.loader,
        "saved_python_version": info.python_version or "",
        "python_version": platform.python_version(),
        "pyfunc_ensembler_version": __version__,
        "load_seconds": repr(info.load_seconds),
    }


def _static_lines(workers: int, info: Mapping[str, str]) -> list[str]:
    """Lines that never change after start-up: worker count, model info and load time."""
    lines = [
        "# HELP ensembler_workers Worker processes serving this port.",
        "# TYPE ensembler_workers gauge",
        f"ensembler_workers {workers}",
    ]
    if not info:
        return lines
    labels = ",".join(f'{k}="{_escape(v)}"' for k, v in info.items() if k != "load_seconds")
    return [
        *lines,
        "# HELP ensembler_model_info The model being served (always 1).",
        "# TYPE ensembler_model_info gauge",
        f"ensembler_model_info{{{labels}}} 1",
        "# HELP ensembler_model_load_seconds Time it took to load the model, in seconds.",
        "# TYPE ensembler_model_load_seconds gauge",
        f"ensembler_model_load_seconds {info.get('load_seconds', '0')}",
    ]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def serve_metrics(metrics: Metrics, host: str, port: int) -> threading.Thread:
    """Serve ``GET /metrics`` on its own port, from a daemon thread of this process.

    Called in the supervisor (or the only worker): the shared memory holds every
    worker's counts, so this process can answer for all of them without taking a
    worker's time. HEAD is GET without the body. Every refusal (another path, another
    method, a request ``http.server`` cannot parse) has the shape of every error answer.
    """
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, CONTENT_TYPE, metrics.render())
            else:
                self._refuse(_not_found(path))

        def do_HEAD(self) -> None:
            self.do_GET()

        def send_error(
            self, code: int, message: str | None = None, explain: str | None = None
        ) -> None:
            # http.server's own refusals, which would be an HTML page. Its 501 is for a
            # method without a do_ method here: ours is 405, as on the serving port.
            self.close_connection = True  # a body may follow, unread
            # A request line it could not parse leaves HTTP/0.9, which has no status line.
            self.request_version = self.protocol_version
            if code == 501 and self.command:
                path = self.path.split("?", 1)[0]
                if path != "/metrics":
                    self._refuse(_not_found(path))
                    return
                refused = MethodNotAllowed(f"{path} takes GET, not {self.command}")
                self._refuse(refused, ("Allow", "GET, HEAD"))
                return
            detail = message or self.responses[code][0]
            error = HeadersTooLarge(detail) if code == 431 else RequestError.malformed(detail)
            self._refuse(error, status=code)

        def _refuse(
            self, error: EnsemblerError, *headers: tuple[str, str], status: int | None = None
        ) -> None:
            if self.close_connection:
                headers += (("Connection", "close"),)
            body = error_body(error)
            self._answer(status or error.status, "application/json", body, *headers)

        def _answer(
            self, status: int, content_type: str, body: bytes, *headers: tuple[str, str]
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes are not worth a log line

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return thread


def _not_found(path: str) -> NotFound:
    return NotFound(f"no such path: {path} (this port serves GET /metrics)")
