"""The benchmark harness: Turing's server against ours, on the same ensemble logic.

``python -m bench.run`` (``make bench``) measures, with the server pinned to core 0
and wrk on core 1: requests/s and latency percentiles per payload and connection
count (servers alternated A/B/A/B, warm-up first, medians of several runs), a
latency/throughput curve, the same through the router's own client (Go's net/http,
`bench.router_load`) directly and through nginx, what an ensembler's own
``prometheus_client`` metrics cost per request, time from process start to first
200, memory per worker with a 200 MB artifact, the core's in-process overhead, and
start-up imports. It writes everything to ``bench/out/results.json`` and the
readable report between the markers of ``docs/benchmarks.md`` (the rest of that file
is left alone), with a PNG plot. ``--smoke`` runs every step with tiny durations
(the test suite does).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import importtime, load, nginx, procstats, report, router_load, servers
from bench.payloads import SIZES, body
from bench.servers import BENCH, REFERENCE_PYTHON, ROOT, Running, Server


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__.splitlines()[0],
        epilog="example: python -m bench.run --runs 5 --duration 10   (about 28 minutes)",
    )
    add = parser.add_argument
    add("--duration", type=int, default=10, help="seconds per measured wrk run")
    add("--runs", type=int, default=3, help="measured runs per server and case")
    add("--warmup", type=int, default=2, help="seconds of warm-up per server and case (0: none)")
    add("--connections", default="1,32", help="connection counts, comma-separated")
    add("--payloads", default=",".join(SIZES), help=f"payload sizes among {', '.join(SIZES)}")
    add("--servers", help="our front ends to run (default: all `serve --help` lists)")
    add("--no-reference", action="store_true", help="skip Turing's server")
    add("--curve-connections", default="1,2,4,8,16,32,64", help="latency/throughput curve")
    add("--curve-duration", type=int, default=5, help="seconds per curve point")
    add("--router-in-flight", default="1,32,64", help="router client: requests in flight")
    add("--router-timeouts", default="10,100", help="router client: per-request timeouts, ms")
    add("--router-duration", type=int, default=3, help="seconds per router-client run")
    add("--router-rounds", type=int, default=3, help="router-client runs per server and case")
    add("--start-repeats", type=int, default=5, help="starts per server for time to first 200")
    add("--ballast-mb", type=float, default=200, help="artifact size for the memory runs")
    add("--workers", default="1,4", help="worker counts for the memory runs")
    add("--inprocess-seconds", type=float, default=2, help="time per in-process measurement")
    add("--scaling", action="store_true", help="also sweep 1,2,4,8 workers on free cores")
    add("--only", help=f"run only these steps, comma-separated, among {', '.join(STEPS)}")
    add("--smoke", action="store_true", help="every step, tiny durations (for the tests)")
    add("--out", type=Path, default=BENCH / "out", help="models, logs, results.json")
    add("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    add("--plot", type=Path, default=ROOT / "docs" / "benchmarks-latency.png")
    add("--report-only", action="store_true", help="rewrite the doc from results.json")
    add("--note", default="", help="a line put at the top of the report")
    args = parser.parse_args(argv)
    args.only = args.only.split(",") if args.only else None
    unknown = set(args.only or ()) - set(STEPS)
    if unknown:
        parser.error(f"--only: no step named {', '.join(sorted(unknown))}")
    if args.smoke:
        args.duration, args.runs, args.warmup = 1, 1, 0
        args.connections, args.curve_connections, args.curve_duration = "1,4", "1,4", 1
        args.payloads, args.start_repeats, args.ballast_mb = "0.5KB", 1, 1
        args.workers, args.inprocess_seconds = "1,2", 0.05
        args.router_in_flight, args.router_timeouts, args.router_duration = "4", "100", 1
        args.router_rounds = 1
    return args


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


@dataclasses.dataclass
class _Target:
    """What the router's client is pointed at: a server's processes and, per path
    (``direct``, ``nginx``), the port it is reached on."""

    name: str
    pids: Callable[[], list[int]]
    ports: dict[str, int]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out
        self.cores = cores = sorted(os.sched_getaffinity(0))
        # Server on the first core, load generator (and this process) on the second.
        self.server_cpus = str(cores[0]) if len(cores) > 1 else None
        self.load_cpus = str(cores[1]) if len(cores) > 1 else None
        if self.load_cpus is not None:
            os.sched_setaffinity(0, {cores[1]})
        self.front_ends = args.servers.split(",") if args.servers else servers.our_front_ends()
        self.default_front_end = "native" if "native" in self.front_ends else self.front_ends[0]
        self.reference = not args.no_reference
        self.results: dict[str, Any] = {}

    # -- set-up ---------------------------------------------------------------------

    def prepare(self) -> None:
        load.ensure_wrk()
        if self.reference:
            # Built on this interpreter: both servers then run the same Python.
            subprocess.run(["bash", str(BENCH / "reference.sh"), sys.executable], check=True)
        models = self.out / "models"
        self.save_models(models / "ours", sys.executable, "ours")
        if self.reference:
            self.save_models(models / "turing", str(REFERENCE_PYTHON), "turing")
        example = models / "example"
        if not (example / "MLmodel").is_file():
            save = ROOT / "examples" / "weighted" / "save.py"
            subprocess.run([sys.executable, str(save), str(example)], check=True, **QUIET)
        metered = models / "metered"
        if not (metered / "updating" / "MLmodel").is_file():
            save = BENCH / "save.py"
            subprocess.run(
                [sys.executable, str(save), "metered", str(metered)], check=True, **QUIET
            )
        self.models = {
            "ours": models / "ours",
            "turing": models / "turing",
            "example": example,
            "metered": metered,
        }

    def save_models(self, target: Path, python: str, sdk: str) -> None:
        stamp = target / f".saved-{self.args.ballast_mb:g}mb"
        if stamp.is_file():
            return
        argv = [python, str(BENCH / "save.py"), sdk, str(target), f"{self.args.ballast_mb:g}"]
        subprocess.run(argv, check=True, **QUIET)
        stamp.touch()

    def model(self, server: Server, variant: str) -> Path:
        return self.models["turing" if server.turing else "ours"] / variant

    def start(
        self,
        server: Server,
        model: Path,
        workers: int = 1,
        python_flags: tuple[str, ...] = (),
        cpus: str | None = None,
    ) -> Running:
        """Start `server` on `cpus` (default: the server's core) and wait for its first 200."""
        port = servers.free_port()
        log = self.out / "logs" / f"{server.name}-{port}.log"
        cpus = cpus or self.server_cpus
        running = Running(server, model, port, cpus, log, workers, python_flags)
        try:
            running.wait_ready(body(SIZES["0.5KB"]))
        except BaseException:
            running.stop()  # it may be up yet not answering: not left behind
            raise
        return running

    def start_all(self, cases: list[tuple[Server, Path]]) -> list[Running]:
        """`start` each ``(server, model)``; if one fails, those started are stopped."""
        started: list[Running] = []
        try:
            for server, model in cases:
                started.append(self.start(server, model))
        except BaseException:
            for running in started:
                running.stop()
            raise
        return started

    def load_servers(self) -> list[Server]:
        ours = [servers.ours(front_end) for front_end in self.front_ends]
        if "native" in self.front_ends:  # a row of its own: it trades CPU for latency
            ours.append(servers.ours("native", "--busy-poll", str(BUSY_POLL_US)))
        return ([servers.turing()] if self.reference else []) + ours

    # -- measurements ---------------------------------------------------------------

    def wrk(self, running: Running, payload: bytes, connections: int, duration: float) -> Any:
        if duration <= 0:  # no warm-up
            return None
        pids = running.pids()
        cpu_before = procstats.cpu_seconds(pids)
        result = load.run(running.port, payload, connections, duration, self.load_cpus)
        cpu = procstats.cpu_seconds(pids) - cpu_before
        result["cpu_us_per_request"] = cpu / max(result["requests"], 1) * 1e6
        return result

    def throughput(self) -> None:
        """The main matrix, servers alternated within each run so drift hits all alike."""
        args = self.args
        started = self.start_all([(s, self.model(s, "trivial")) for s in self.load_servers()])
        try:
            cases = [(p, c) for p in args.payloads.split(",") for c in ints(args.connections)]
            self.results["load"] = self.alternated(started, cases, args.duration)
            self.results["curve"] = self.curve(started)
        finally:
            for running in started:
                running.stop()

    def alternated(
        self, started: list[Running], cases: list[tuple[str, int]], duration: float
    ) -> list[dict[str, Any]]:
        """Each (payload, connections) case on every server, warm-up first, then
        ``--runs`` runs of all cases with the servers alternated within each run."""
        for payload_name, connections in cases:
            for running in started:
                self.wrk(running, body(SIZES[payload_name]), connections, self.args.warmup)
        rows: list[dict[str, Any]] = []
        for run in range(self.args.runs):
            for payload_name, connections in cases:
                # Rotate the order too, so no server always runs first.
                for i in range(len(started)):
                    running = started[(i + run) % len(started)]
                    result = self.wrk(running, body(SIZES[payload_name]), connections, duration)
                    rows.append(
                        {
                            "server": running.server.name,
                            "payload": payload_name,
                            "connections": connections,
                            "run": run,
                            **result,
                        }
                    )
                    self.progress(rows[-1])
        return rows

    def curve(self, started: list[Running]) -> list[dict[str, Any]]:
        """Latency against throughput: one short run per connection count, 5 KB bodies."""
        rows = []
        payload = body(SIZES["5KB"])
        for connections in ints(self.args.curve_connections):
            for running in started:
                result = self.wrk(running, payload, connections, self.args.curve_duration)
                rows.append({"server": running.server.name, "connections": connections, **result})
        return rows

    def router(self) -> None:
        """Turing's server and ours under the router's own client (`bench.router_load`):
        each in-flight count with the default transport (2 idle connections per host) and
        with 100, directly and through nginx, at each per-request timeout, `--router-rounds`
        times with the servers alternated. Directly, also nginx answering ours's answer as
        a constant on the server's core: no server can get more out of this client here,
        so it shows where the client itself is what limits the rate."""
        args = self.args
        binary = router_load.build(self.out)
        payload = body(SIZES["5KB"])
        body_file = self.out / "router-5KB.json"
        body_file.write_bytes(payload)
        chosen = [servers.ours(self.default_front_end)]
        if self.reference:
            chosen.insert(0, servers.turing())
        started = self.start_all([(s, self.model(s, "trivial")) for s in chosen])
        root = self.out / "nginx"
        answer = servers.post(started[-1].port, payload)[1]
        constant = nginx.Proxy(None, root / report.CEILING, self.server_cpus, answer=answer)
        proxies = [nginx.Proxy(r.port, root / r.server.name, self.load_cpus) for r in started]
        targets = [
            _Target(r.server.name, r.pids, {"direct": r.port, "nginx": p.port})
            for r, p in zip(started, proxies, strict=True)
        ]
        targets.append(_Target(report.CEILING, constant.pids, {"direct": constant.port}))
        rows: list[dict[str, Any]] = []
        try:
            cases = [
                (path, idle, in_flight, timeout)
                for path in ("direct", "nginx")
                for idle in (router_load.DEFAULT_TRANSPORT, ROUTER_POOL)
                for in_flight in ints(args.router_in_flight)
                for timeout in ints(args.router_timeouts)
            ]
            for round_index in range(args.router_rounds):
                for case_index, case in enumerate(cases):
                    serving = [t for t in targets if case[0] in t.ports]
                    for i in range(len(serving)):
                        # No server always first: rotated by case and by round.
                        target = serving[(i + case_index + round_index) % len(serving)]
                        warm = args.warmup if round_index == 0 else 0
                        row = self.route(binary, body_file, target, case, warm)
                        rows.append({**row, "round": round_index})
        finally:
            for proxy in (constant, *proxies):
                proxy.stop()
            for running in started:
                running.stop()
        self.results["router"] = rows

    def route(
        self,
        binary: Path,
        body_file: Path,
        target: _Target,
        case: tuple[str, int, int, int],
        warmup: int,
    ) -> dict[str, Any]:
        """One run of the router's client against `target`: its summary and CPU."""
        path, idle, in_flight, timeout = case
        run = functools.partial(
            router_load.run, binary, target.ports[path], body_file, in_flight, idle, timeout
        )
        if warmup:
            run(warmup, self.load_cpus)
        pids = target.pids()
        cpu_before = procstats.cpu_seconds(pids)
        result = run(self.args.router_duration, self.load_cpus)
        cpu = procstats.cpu_seconds(pids) - cpu_before
        row = {
            "server": target.name,
            "path": path,
            "idle_per_host": idle or 2,
            "in_flight": in_flight,
            "timeout_ms": timeout,
            "cpu_us_per_request": cpu / max(result["answered"], 1) * 1e6,
            **result,
        }
        self.progress({k: v for k, v in row.items() if k not in ("errors", "statuses")})
        return row

    def variants(self) -> None:
        """One short run per connection count, 5 KB bodies only, of the variants worth a
        row but not the whole matrix: Turing at its DEBUG default, ours with --isolate."""
        cases = [servers.turing(debug=True)] if self.reference else []
        cases.append(servers.ours(self.default_front_end, "--isolate"))
        rows = []
        for server in cases:
            rows += self.short_runs(server)
        self.results["variants"] = rows

    def short_runs(self, server: Server) -> list[dict[str, Any]]:
        running = self.start(server, self.model(server, "trivial"))
        rows = []
        try:
            duration = min(self.args.duration, 3)
            for connections in ints(self.args.connections):
                self.wrk(running, body(SIZES["5KB"]), connections, self.args.warmup)
                result = self.wrk(running, body(SIZES["5KB"]), connections, duration)
                row = {"server": server.name, "payload": "5KB", "connections": connections}
                rows.append({**row, "run": 0, **result})
        finally:
            running.stop()
            running.log.unlink(missing_ok=True)  # megabytes of request logs (Turing's DEBUG)
        return rows

    def ensembler_metrics(self) -> None:
        """What the ensembler's own ``prometheus_client`` metrics cost a request.

        The trivial ensembler served as shipped (``prometheus_client``'s multiprocess
        directory made at start, which it never uses) against the same with that set-up
        left out (`servers.without_their_metrics`), and two ensemblers that make metrics
        of their own, one leaving them alone and one updating two per request; 0.5 KB
        bodies (where a cost per request shows most), short runs, servers alternated.
        Each server's ``/metrics`` is read at the end: what of the ensembler's it shows.
        """
        front_end = self.default_front_end
        plain = servers.ours(front_end)
        metered = self.models["metered"]
        cases = [
            (servers.without_their_metrics(front_end), self.models["ours"] / "trivial"),
            (plain, self.models["ours"] / "trivial"),
            (dataclasses.replace(plain, name=f"{front_end}-theirs-idle"), metered / "idle"),
            (dataclasses.replace(plain, name=f"{front_end}-theirs-updating"), metered / "updating"),
        ]
        started = self.start_all(cases)
        try:
            duration = min(self.args.duration, 3)
            rows = self.alternated(
                started, [("0.5KB", c) for c in ints(self.args.connections)], duration
            )
            scraped = {
                r.server.name: their_samples(servers.get(r.port, "/metrics")[1]) for r in started
            }
        finally:
            for running in started:
                running.stop()
        baseline = started[0].server.name
        self.results["ensembler_metrics"] = {"baseline": baseline, "rows": rows, "scraped": scraped}

    def startup(self) -> None:
        """Time from process start to first 200, and the memory of the idle server then."""
        cases: list[tuple[Server, Path, str]] = []
        if self.reference:
            cases.append((servers.turing(), self.model(servers.turing(), "trivial"), "bench"))
        for front_end in self.front_ends:
            cases.append((servers.ours(front_end), self.models["ours"] / "trivial", "bench"))
        default, mlflow = (
            servers.ours(self.default_front_end),
            servers.ours(self.default_front_end, "--force-mlflow"),
        )
        cases.append((mlflow, self.models["ours"] / "trivial", "bench"))
        cases += [
            (default, self.models["example"], "example"),
            (mlflow, self.models["example"], "example"),
        ]
        rows = []
        for repeat in range(self.args.start_repeats):
            for server, model, model_name in cases:
                running = self.start(server, model)
                try:
                    memory = procstats.memory_kb(running.process.pid)
                finally:
                    running.stop()
                rows.append(
                    {
                        "server": server.name,
                        "model": model_name,
                        "repeat": repeat,
                        "seconds": running.ready_seconds,
                        **memory,
                    }
                )
                self.progress(rows[-1])
        self.results["startup"] = rows

    def memory(self) -> None:
        """RSS and PSS per process with the ballast model, after some traffic."""
        rows = []
        cases = [(servers.turing(), 1)] if self.reference else []
        cases += [(servers.ours(f), w) for f in self.front_ends for w in ints(self.args.workers)]
        payload = body(SIZES["5KB"])
        for server, workers in cases:
            running = self.start(server, self.model(server, "ballast"), workers)
            try:
                for _ in range(50 * workers):
                    servers.post(running.port, payload)
                processes = []
                for pid in running.pids():
                    role = "main" if pid == running.process.pid else "worker"
                    processes.append({"pid": pid, "role": role, **procstats.memory_kb(pid)})
            finally:
                running.stop()
            rows.append(
                {
                    "server": server.name,
                    "workers": workers,
                    "processes": processes,
                    "total_pss": sum(p["pss"] for p in processes),
                    "total_rss": sum(p["rss"] for p in processes),
                }
            )
            self.progress(rows[-1])
        self.results["memory"] = rows

    def imports(self) -> None:
        """``python -X importtime`` of `serve` until its first answer, lean and MLflow path."""
        summaries = {}
        for server in (
            servers.ours(self.default_front_end),
            servers.ours(self.default_front_end, "--force-mlflow"),
        ):
            running = self.start(server, self.models["example"], python_flags=("-X", "importtime"))
            running.stop()
            summaries[server.name] = importtime.summarise(running.log.read_text())
        self.results["importtime"] = summaries

    def inprocess(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "bench.inprocess",
            str(self.models["ours"] / "trivial"),
            "--seconds",
            str(self.args.inprocess_seconds),
        ]
        if self.server_cpus is not None:
            argv = ["taskset", "-c", self.server_cpus, *argv]
        done = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=ROOT)
        self.results["inprocess"] = json.loads(done.stdout.strip().splitlines()[-1])

    def scaling(self) -> None:
        """N workers on N cores, load on the rest: only where enough cores are free.

        Its result says where and how it ran: it is the one step worth running alone
        (``--only scaling``) on a bigger machine than the rest of the report's.
        """
        rows = [
            {"server": front_end, "workers": n, **self.scaled(servers.ours(front_end), n)}
            for front_end in self.front_ends
            for n in (1, 2, 4, 8)
            if 2 * n <= len(self.cores)  # the load generator needs as many cores to keep up
        ]
        self.results["scaling"] = {
            "cores": len(self.cores),
            "rows": rows,
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "command": command(),
            "machine": machine(),
            "versions": versions(reference=False),
        }

    def scaled(self, server: Server, n: int) -> dict[str, list[float]]:
        """`n` workers on the first `n` cores, wrk on the next `n`: requests/s per run,
        and the least and most busy worker's share of a core in each."""
        server_cpus = ",".join(map(str, self.cores[:n]))
        load_cpus = ",".join(map(str, self.cores[n : 2 * n]))
        model = self.models["ours"] / "trivial"
        running = self.start(server, model, workers=n, cpus=server_cpus)
        payload = body(SIZES["5KB"])
        rps, busy = [], []
        try:
            load.run(running.port, payload, 32 * n, self.args.warmup, load_cpus, threads=n)
            workers = running.pids()[1:] if n > 1 else running.pids()
            for _ in range(self.args.runs):
                before = [procstats.cpu_seconds([pid]) for pid in workers]
                result = load.run(
                    running.port, payload, 32 * n, self.args.duration, load_cpus, threads=n
                )
                seconds = result["duration_us"] / 1e6
                shares = [
                    (procstats.cpu_seconds([pid]) - cpu) / seconds
                    for pid, cpu in zip(workers, before, strict=True)
                ]
                rps.append(result["rps"])
                busy.append([min(shares), max(shares)])
        finally:
            running.stop()
        self.progress({"server": server.name, "workers": n, "rps": statistics.median(rps)})
        return {"rps_runs": rps, "busy_runs": busy}

    # -- bookkeeping ----------------------------------------------------------------

    def progress(self, row: dict[str, Any]) -> None:
        shown = {
            k: (round(v, 1) if isinstance(v, float) else v)
            for k, v in row.items()
            if k not in ("processes", "duration_us", "max_us", "mean_us")
        }
        print(" ".join(f"{k}={v}" for k, v in shown.items()), flush=True)

    def meta(self, started: float) -> dict[str, Any]:
        return {
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "command": command(),
            "seconds": round(time.monotonic() - started),
            "machine": machine(),
            "versions": versions(self.reference),
            "server_cpus": self.server_cpus,
            "load_cpus": self.load_cpus,
            "front_ends": self.front_ends,
            "config": {k: str(v) for k, v in vars(self.args).items()},
        }


# The --busy-poll of the `native-busypoll` rows: about a round trip over loopback here.
BUSY_POLL_US = 100
# The router client's wider pool: what a router tuned for its fan-out would keep.
ROUTER_POOL = 100


QUIET: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}

# The measuring steps, in the order a full run takes them (scaling only with --scaling).
STEPS = (
    "inprocess",
    "throughput",
    "router",
    "variants",
    "ensembler_metrics",
    "startup",
    "memory",
    "imports",
    "scaling",
)


def their_samples(scrape: bytes) -> dict[str, float]:
    """The ``bench_*`` totals and counts of a ``/metrics`` scrape, summed over labels:
    the metrics of `logic.MeteredLogic` that the server found."""
    found: dict[str, float] = {}
    for line in scrape.decode().splitlines():
        name, _, value = line.partition(" ")
        name = name.partition("{")[0]
        if name.startswith("bench_") and name.endswith(("_total", "_count")):
            found[name] = found.get(name, 0.0) + float(value.split()[0])
    return found


def command() -> str:
    return shlex.join(["python", "-m", "bench.run", *sys.argv[1:]])


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 2**20, 1),
        "kernel": platform.release(),
        "load_average": os.getloadavg(),
    }


def versions(reference: bool) -> dict[str, str]:
    from importlib import metadata

    found = {"python": platform.python_version()}
    for name in ("pyfunc-ensembler", "uvicorn", "uvloop", "httptools", "orjson", "mlflow"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    found["wrk"] = (wrk.stdout + wrk.stderr).split("[")[0].removeprefix("wrk").strip()
    if reference:
        probe = (
            "from importlib import metadata as m; print(*(n + '=' + m.version(n) for n in "
            "('turing-pyfunc-ensembler-service', 'turing-sdk', 'mlflow', 'tornado')))"
        )
        done = subprocess.run([str(REFERENCE_PYTHON), "-c", probe], capture_output=True, text=True)
        for pair in done.stdout.split():
            name, _, version = pair.partition("=")
            found[f"reference {name}"] = version
    return found


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results_file = args.out / "results.json"
    if args.report_only:
        report.write(json.loads(results_file.read_text()), args.doc, args.plot)
        return
    started = time.monotonic()
    bench = Bench(args)
    bench.prepare()
    names = args.only or [n for n in STEPS if n != "scaling"]
    if args.scaling and "scaling" not in names:
        names.append("scaling")
    steps = [getattr(bench, name) for name in names]
    for step in steps:
        print(f"== {step.__name__}", flush=True)
        step()
    bench.results["meta"] = bench.meta(started)
    args.out.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(bench.results, indent=1))
    report.write(bench.results, args.doc, args.plot)
    print(
        f"wrote {results_file}, {args.doc} and {args.plot} in {bench.results['meta']['seconds']} s"
    )


if __name__ == "__main__":
    main()
