# ruff: noqa: RUF001, RUF002  (typographic signs are meant: this writes prose for people)
"""Turn ``results.json`` into the Markdown report and the latency/throughput plot.

The report goes between ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` in
``docs/benchmarks.md``; anything outside the markers (the batch section, notes written
by hand) is kept as it is.
"""

from __future__ import annotations

import os
import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def write(results: dict[str, Any], doc: Path, plot: Path) -> None:
    plotted = _plot(results.get("curve", []), plot)
    block = render(results, os.path.relpath(plot, doc.parent) if plotted else None)
    doc.parent.mkdir(parents=True, exist_ok=True)
    old = doc.read_text() if doc.exists() else "# Benchmarks\n\n"
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        # One blank line after the block, however many the last write left.
        text = head + block + "\n" + rest.split(END, 1)[1].lstrip("\n")
    else:  # first time: after the title, before whatever else the file holds
        title, _, rest = old.partition("\n")
        text = f"{title}\n\n{block}\n{rest.lstrip()}"
    doc.write_text(text)


def render(results: dict[str, Any], plot: str | None) -> str:
    meta = results["meta"]
    parts = [BEGIN, _intro(meta), _targets(results)]
    parts.append(_throughput(results.get("load", []), results.get("variants", [])))
    parts.append(_router(results.get("router", [])))
    if plot:
        parts.append(
            "### Latency against throughput\n\n5 KB bodies, 1 worker on 1 core; each point is "
            f"one wrk run at a connection count (p50 solid, p99 dashed).\n\n![latency]({plot})\n"
        )
    parts += [
        _ensembler_metrics(results.get("ensembler_metrics")),
        _startup(results.get("startup", [])),
        _memory(results.get("memory", [])),
        _inprocess(results.get("inprocess", {})),
        _imports(results.get("importtime", {})),
        _scaling(results.get("scaling")),
        END,
    ]
    return "\n".join(p for p in parts if p) + "\n"


# -- helpers --------------------------------------------------------------------------


def _median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def _spread(values: list[float], scale: float = 1, fmt: str = "{:,.0f}") -> str:
    """``median (min–max)``, or just the value for one run."""
    scaled = [v * scale for v in values]
    if len(scaled) == 1:
        return fmt.format(scaled[0])
    low, mid, high = min(scaled), _median(scaled), max(scaled)
    return f"{fmt.format(mid)} ({fmt.format(low)}–{fmt.format(high)})"


def _ratio(value: float | None, reference: float | None) -> str:
    if not value or not reference:
        return "–"
    return f"{value / reference:.2f}×"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _group(rows: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], list[Any]]:
    groups: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in keys)].append(row)
    return groups


# -- sections -------------------------------------------------------------------------


def _intro(meta: dict[str, Any]) -> str:
    machine, config = meta["machine"], meta["config"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    note = f"> {config['note']}\n\n" if config.get("note") else ""
    return (
        f"## Real-time serving: Turing's server against ours\n\n{note}"
        f"Written by `bench/run.py` on {meta['date']} in {meta['seconds']} s; regenerate with "
        "`make bench`. Everything between the `bench:` markers is rewritten by each run.\n\n"
        f"- Command: `{meta['command']}`\n"
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB, "
        f"Linux {machine['kernel']}; load average at the end "
        f"{', '.join(f'{x:.1f}' for x in machine['load_average'])}\n"
        f"- Server pinned to core {meta['server_cpus']} (`taskset`), wrk and the harness to core "
        f"{meta['load_cpus']}; one worker unless said otherwise\n"
        f"- Runs: {config['runs']} × {config['duration']} s per case after "
        f"{config['warmup']} s of warm-up, servers alternated within each run; "
        "medians with (min–max)\n"
        f"- Versions: {versions}\n"
        "- Same ensemble logic everywhere (`bench/logic.py`), saved with Turing's SDK for "
        "Turing's server and with ours for ours; Turing runs at `LOG_LEVEL=WARNING` (its "
        "best) unless marked `turing-debug` (its DEBUG default); `native-isolate` is ours with "
        "`--isolate` (the ensembler in a process of its own, on the same core); "
        "`native-busypoll` is ours with `--busy-poll 100` (polls for the next request "
        "instead of sleeping, while one connection is open)\n"
        "- Reading it: on a busy machine trust *CPU µs/req* (the server's CPU time per answered "
        "request, from `/proc`; 10⁶ ÷ it is what one free core could serve) over req/s and "
        "tail latencies, which other processes inflate. PSS splits shared library pages among "
        "every process mapping them, other Pythons on the machine included, so compare PSS "
        "within one run only.\n"
    )


def _median_of(rows: list[dict[str, Any]], key: str, **where: Any) -> float | None:
    values = [r[key] for r in rows if all(r.get(k) == v for k, v in where.items())]
    return _median(values) if values else None


def _targets(results: dict[str, Any]) -> str:
    load_rows = results.get("load", [])
    fronts = results["meta"]["front_ends"]
    fast = "native" if "native" in fronts else fronts[0]
    rows: list[list[str]] = []

    def add(
        target: str, measured: float | None, limit: float, better: str, unit: str, note: str = ""
    ) -> None:
        if measured is None:
            rows.append([target, "not measured", "–"])
            return
        met = measured >= limit if better == "higher" else measured <= limit
        rows.append([target, f"{measured:,.3g}{unit}{note}", "yes" if met else "**no**"])

    def at_5kb_32(key: str) -> dict[str, float | None]:
        return {
            s: _median_of(load_rows, key, server=s, payload="5KB", connections=32)
            for s in ("turing", *fronts)
        }

    rps = at_5kb_32("rps")
    if rps["turing"] and rps[fast]:
        add(
            f"{fast} req/s at 32 connections ≥ 10× Turing's (5 KB)",
            rps[fast] / rps["turing"],
            10,
            "higher",
            "×",
        )
    cpu = at_5kb_32("cpu_us_per_request")
    if cpu["turing"] and cpu[fast]:
        add(
            f"… the same by server CPU time per request (Turing's ÷ {fast}'s)",
            cpu["turing"] / cpu[fast],
            10,
            "higher",
            "×",
        )
    if "native" in fronts and rps.get("asgi") and rps["native"]:
        add(
            "native req/s at 32 connections ≥ 2× asgi's (5 KB)",
            rps["native"] / rps["asgi"],
            2,
            "higher",
            "×",
        )
    routed = _router_rows(results.get("router", []))
    router_turing = routed.get(("direct", 2, 32, "turing"))
    router_ours = routed.get(("direct", 2, 32, fast))
    ceiling = routed.get(("direct", 2, 32, CEILING))
    if router_turing and router_ours:
        turing_rate = router_turing["per_second"]
        add(
            f"{fast} req/s at 32 in flight ≥ 10× Turing's, router's client "
            "(Go net/http, default transport, 5 KB)",
            router_ours["per_second"] / turing_rate,
            10,
            "higher",
            "×",
            f" (the client's ceiling, `{CEILING}`: {ceiling['per_second'] / turing_rate:.3g}×)"
            if ceiling
            else "",
        )
    p99_turing = _median_of(load_rows, "p99_us", server="turing", payload="5KB", connections=1)
    for server in (fast, f"{fast}-busypoll"):
        p99 = _median_of(load_rows, "p99_us", server=server, payload="5KB", connections=1)
        if p99 and p99_turing:
            add(
                f"{server} p99 at 1 connection ≤ ¼ of Turing's (5 KB)",
                p99 / p99_turing,
                0.25,
                "lower",
                "×",
            )
    five = results.get("inprocess", {}).get("5KB")
    if five:
        add(
            "core overhead above calling `ensemble` (5 KB) ≤ 15 µs",
            five["core"] - five["direct"],
            15,
            "lower",
            " µs",
        )
    extra = _extra_worker_share(results.get("memory", []), fast)
    if extra is not None:
        add(
            "each extra worker's PSS ≤ 25 % of the first's (200 MB artifact)",
            extra * 100,
            25,
            "lower",
            " %",
        )
    startup = results.get("startup", [])
    ours_start = _median_of(startup, "seconds", server=fast, model="bench")
    turing_start = _median_of(startup, "seconds", server="turing", model="bench")
    if ours_start and turing_start:
        add("start to first 200 ≤ ¼ of Turing's", ours_start / turing_start, 0.25, "lower", "×")
    lean = _median_of(startup, "rss", server=fast, model="example")
    heavy = _median_of(startup, "rss", server=f"{fast}-mlflow", model="example")
    if lean and heavy:
        add(
            "idle worker RSS, example ensembler, lean ≤ ¼ of MLflow path",
            lean / heavy,
            0.25,
            "lower",
            "×",
        )
    scaling = [r for r in (results.get("scaling") or {}).get("rows", []) if r["server"] == fast]
    if len(scaling) > 1:
        one = _median(scaling[0]["rps_runs"])
        worst = min(_median(r["rps_runs"]) / (one * r["workers"]) for r in scaling[1:])
        add(f"{fast}: N workers on N cores ≥ 0.85·N × one worker", worst, 0.85, "higher", "")
    return "### Targets\n\n" + _table(["target", "measured", "met"], rows) if rows else ""


def _extra_worker_share(memory: list[dict[str, Any]], server: str) -> float | None:
    """(total PSS with N workers − with 1) / (N − 1), as a share of the 1-worker total."""
    by_workers = {r["workers"]: r["total_pss"] for r in memory if r["server"] == server}
    if 1 not in by_workers or len(by_workers) < 2:
        return None
    n = max(by_workers)
    return (by_workers[n] - by_workers[1]) / (n - 1) / by_workers[1]


def _throughput(rows: list[dict[str, Any]], variants: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    table = []
    groups = _group(rows + variants, "payload", "connections", "server")
    medians = {key: _median(r["rps"] for r in group) for key, group in groups.items()}
    for (payload, connections, server), group in groups.items():
        rps = [r["rps"] for r in group]
        median = medians[payload, connections, server]
        errors = sum(r["errors"] + r["non_2xx"] for r in group)
        latencies = [
            _spread([r[k] for r in group], 1e-3, "{:.2f}") for k in ("p50_us", "p90_us", "p99_us")
        ]
        table.append(
            [
                payload,
                str(connections),
                server,
                _spread(rps),
                _ratio(median, medians.get((payload, connections, "turing"))),
                _ratio(median, medians.get((payload, connections, "asgi"))),
                *latencies,
                f"{_median(r['cpu_us_per_request'] for r in group):.0f}",
                str(errors),
            ]
        )
    header = [
        "payload",
        "conns",
        "server",
        "req/s",
        "vs Turing",
        "vs asgi",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "CPU µs/req",
        "errors",
    ]
    return "### Throughput and latency (1 worker, 1 core)\n\n" + _table(header, table)


def _router_rows(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Per (path, idle connections, in flight, server): the runs with the longest timeout
    (the medians over rounds of their req/s, latencies and CPU, ``rates`` each round's
    req/s, ``failed`` their sum), and ``timeout_shares`` the share of requests past each
    timeout over that timeout's runs."""
    cases: dict[tuple[Any, ...], dict[str, Any]] = {}
    for key, group in _group(rows, "path", "idle_per_host", "in_flight", "server").items():
        by_timeout = _group(group, "timeout_ms")
        runs = by_timeout[(max(r["timeout_ms"] for r in group),)]
        cases[key] = {
            **{k: _median(r[k] for r in runs) for k in _ROUTER_MEDIANS},
            "rates": [r["per_second"] for r in runs],
            "failed": sum(r["lost"] + r["refused"] + r["non_2xx"] for r in runs),
            "timeout_shares": {
                timeout: sum(r["timeouts"] for r in of) / max(sum(r["sent"] for r in of), 1)
                for (timeout,), of in by_timeout.items()
            },
        }
    return cases


_ROUTER_MEDIANS = ("per_second", "p50_us", "p99_us", "cpu_us_per_request")
CEILING = "nginx-constant"
"""The router-client runs against nginx answering a constant (`bench.run`'s router step)."""


def _router(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    cases = _router_rows(rows)
    timeouts = sorted({r["timeout_ms"] for r in rows})
    rounds = len({r.get("round", 0) for r in rows})
    table = []
    # Turing first and the ceiling last in each case, whichever ran first.
    rank = {"turing": 0, CEILING: 2}
    for (path, idle, in_flight, server), case in sorted(
        cases.items(), key=lambda item: (*item[0][:3], rank.get(item[0][3], 1))
    ):
        turing = cases.get((path, idle, in_flight, "turing"))
        shares = case["timeout_shares"]
        table.append(
            [
                path,
                str(idle),
                str(in_flight),
                server,
                _spread(case["rates"]),
                _ratio(case["per_second"], turing and turing["per_second"]),
                f"{case['p50_us'] / 1000:.2f}",
                f"{case['p99_us'] / 1000:.2f}",
                *(f"{shares[t] * 100:.1f} %" if t in shares else "–" for t in timeouts),
                f"{case['cpu_us_per_request']:.0f}",
                str(case["failed"]),
            ]
        )
    header = [
        "path",
        "idle conns/host",
        "in flight",
        "server",
        "req/s",
        "vs Turing",
        "p50 ms",
        "p99 ms",
        *(f"timeouts at {t} ms" for t in timeouts),
        "CPU µs/req",
        "failed",
    ]
    return (
        "### The router's own client (Go net/http, 5 KB, 1 worker, 1 core)\n\n"
        "`bench/router`, a Go program that calls the server as Turing's router does: "
        "`http.DefaultClient`'s transport (it keeps 2 idle connections per host and closes any "
        "more, so a request may have to open one) or one keeping 100, bodies of "
        "unknown length (chunked, through `io.NopCloser`), headers by `Header.Set`, a deadline "
        "per request. *path* `nginx` goes through nginx (one worker, kept-alive upstream "
        f"connections) on the load generator's core. `{CEILING}` is nginx answering our "
        "answer as a constant on the server's core: no server gets more out of this client on "
        "its one core, so where ours comes close to it, the client is what limits the rate. "
        f"{rounds} run(s) per case and server, alternated; req/s is the median (min–max), "
        f"latencies and CPU medians, all from the runs with the {timeouts[-1]} ms deadline; "
        "*timeouts* are the share of requests past each deadline in the runs with that "
        "deadline (the router's default is 10 ms); *failed*: lost, refused or not 200, over "
        "those runs. *CPU µs/req* is the server's alone (not nginx's in front of it).\n\n"
        + _table(header, table)
    )


def _ensembler_metrics(results: dict[str, Any] | None) -> str:
    if not results:
        return ""
    groups = _group(results["rows"], "connections", "server")
    medians = {
        key: (_median(r["rps"] for r in group), _median(r["cpu_us_per_request"] for r in group))
        for key, group in groups.items()
    }
    baseline = results["baseline"]  # their set-up left out
    table = []
    for (connections, server), group in groups.items():
        rps, cpu = medians[connections, server]
        base_rps, base_cpu = medians.get((connections, baseline), (None, None))
        scraped = results["scraped"].get(server) or {}
        table.append(
            [
                str(connections),
                server,
                _spread([r["rps"] for r in group]),
                _ratio(rps, base_rps),
                _spread([r["cpu_us_per_request"] for r in group], 1, "{:.1f}"),
                _ratio(cpu, base_cpu),
                ", ".join(f"{k} {v:,.0f}" for k, v in scraped.items()) or "none",
                str(sum(r["errors"] + r["non_2xx"] for r in group)),
            ]
        )
    header = [
        "conns",
        "server",
        "req/s",
        "vs off",
        "CPU µs/req",
        "vs off",
        "their samples on /metrics",
        "errors",
    ]
    return (
        "### An ensembler's own metrics: what they cost per request (0.5 KB, 1 worker, 1 core)\n\n"
        f"`{baseline}` is ours with the set-up for an ensembler's `prometheus_client` "
        "metrics left out (`bench/without_their_metrics.py`: no multiprocess directory, no "
        "`PROMETHEUS_MULTIPROC_DIR`); the next row is the same trivial ensembler served as "
        "shipped, i.e. an ensembler that does not import `prometheus_client`; `-theirs-idle` "
        "imports it and makes a counter and a histogram when it loads but never updates them "
        "(`bench/logic.py` `MeteredLogic`); `-theirs-updating` updates both on every request "
        "(`CountingLogic`). *vs off* divides by the first row's median. *their samples*: the "
        "`bench_*` totals and counts each server's `/metrics` showed after the runs.\n\n"
        + _table(header, table)
    )


def _startup(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    groups = _group(rows, "server", "model")
    turing = _median(r["seconds"] for r in groups.get(("turing", "bench"), [{"seconds": 0}]))
    table = [
        [
            server,
            model,
            _spread([r["seconds"] for r in group], 1, "{:.2f}"),
            _ratio(_median(r["seconds"] for r in group), turing),
            f"{_median(r['rss'] for r in group) / 1024:.0f}",
            f"{_median(r['pss'] for r in group) / 1024:.0f}",
        ]
        for (server, model), group in groups.items()
    ]
    return (
        "### Start-up: process start to first 200, and memory when idle\n\n"
        "`bench` is the trivial benchmark ensembler, `example` is `examples/weighted`; "
        "`-mlflow` is our `--force-mlflow` (loading through `mlflow.pyfunc`).\n\n"
        + _table(["server", "model", "seconds", "vs Turing", "RSS MB", "PSS MB"], table)
    )


def _memory(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    table = []
    for row in rows:
        workers = [p for p in row["processes"] if p["role"] == "worker"] or row["processes"]
        main = [p for p in row["processes"] if p["role"] == "main"]
        table.append(
            [
                row["server"],
                str(row["workers"]),
                " / ".join(f"{p['rss'] / 1024:.0f}" for p in workers),
                " / ".join(f"{p['pss'] / 1024:.0f}" for p in workers),
                f"{main[0]['pss'] / 1024:.0f}" if main and len(row["processes"]) > 1 else "–",
                f"{row['total_pss'] / 1024:.0f}",
            ]
        )
    shares = []
    for server in dict.fromkeys(r["server"] for r in rows):
        share = _extra_worker_share(rows, server)
        if share is not None:
            shares.append(
                f"{server}: each extra worker adds {share * 100:.1f} % of one worker's total PSS"
            )
    return (
        "### Memory per worker, ensembler holding a 200 MB artifact\n\n"
        "Read from `/proc/PID/smaps_rollup` after some traffic. PSS splits pages shared "
        "after `fork` among the processes sharing them, so the total PSS is what the "
        "server really costs.\n\n"
        + _table(
            [
                "server",
                "workers",
                "worker RSS MB",
                "worker PSS MB",
                "supervisor PSS MB",
                "total PSS MB",
            ],
            table,
        )
        + "".join(f"\n- {s}" for s in shares)
        + ("\n" if shares else "")
    )


def _inprocess(results: dict[str, Any]) -> str:
    if not results:
        return ""
    table = [
        [
            size,
            f"{r['direct']:.1f}",
            f"{r['core']:.1f}",
            f"{r['core'] - r['direct']:.1f}",
            f"{r['call']:.1f}",
            f"{r['mlflow_predict']:.1f}",
            f"{r['mlflow_predict'] - r['call']:.1f}",
        ]
        for size, r in results.items()
    ]
    return (
        "### In-process cost per request (µs, no HTTP, best of several repeats)\n\n"
        "`ensemble`: the ensembler's own method, arguments built beforehand. `Core.handle`: "
        "raw body and headers to answer bytes (parse, validate, dispatch, serialize). "
        "`of which parsing`: `orjson.loads` of the body alone (the bodies are mostly floats, "
        "the slowest JSON to parse). `call`: what the server calls on the decoded body; "
        "`MLflow predict`: MLflow's "
        "`PyFuncModel.predict` on the same decoded body, the per-call wrapper Turing's "
        "server goes through and ours skips.\n\n"
        + _table(
            [
                "payload",
                "ensemble",
                "Core.handle",
                "core overhead",
                "call",
                "MLflow predict",
                "saved by calling directly",
            ],
            table,
        )
    )


def _imports(summaries: dict[str, Any]) -> str:
    if not summaries:
        return ""
    parts = ["### Start-up imports (`python -X importtime`, `serve` of the example)\n"]
    for server, summary in summaries.items():
        top = ", ".join(f"{t['module']} {t['cumulative_ms']:.0f} ms" for t in summary["top"])
        parts.append(
            f"- **{server}**: {summary['modules']} modules, {summary['total_ms']:.0f} ms of "
            f"imports; heavy ones imported: {', '.join(summary['imported']) or 'none'}. "
            f"Slowest top-level imports: {top}"
        )
    return "\n".join(parts) + "\n"


def _scaling(scaling: dict[str, Any] | None) -> str:
    if scaling is None:
        return (
            "### Worker scaling\n\nNot measured in this run: it needs `--scaling` and at least "
            "2·N cores for N workers (N on the server, N for wrk).\n"
        )
    rows = scaling["rows"]
    if max((r["workers"] for r in rows), default=1) < 2:
        return (
            f"### Worker scaling\n\nThis machine has {scaling['cores']} cores: too few for a "
            "meaningful sweep (N workers need N cores plus N for the load generator).\n"
        )
    table = []
    for (server,), group in _group(rows, "server").items():
        one = _median(group[0]["rps_runs"])
        table += [
            [
                server,
                str(r["workers"]),
                _spread(r["rps_runs"]),
                f"{_median(r['rps_runs']) / one:.2f}×",
                f"{_median(r['rps_runs']) / one / r['workers']:.2f}",
                _busy(r.get("busy_runs", [])),
            ]
            for r in group
        ]
    headers = ["server", "workers", "req/s", "vs 1 worker", "efficiency", "worker CPU"]
    return (
        "### Worker scaling (5 KB, 32 connections per worker)\n\n"
        + _provenance(scaling)
        + _table(headers, table)
        + "\n*worker CPU*: the least and the most busy worker's share of a core over a run "
        "(lowest and highest of the runs); below 1 a worker waited for work.\n"
    )


def _busy(runs: list[list[float]]) -> str:
    if not runs:
        return "–"
    return f"{min(low for low, _ in runs):.2f}–{max(high for _, high in runs):.2f}"


def _provenance(scaling: dict[str, Any]) -> str:
    """Where the sweep ran, when that was not this report's run (``--only scaling``)."""
    machine = scaling.get("machine")
    if machine is None:
        return ""
    return (
        f"Measured on {machine['cpu']} ({machine['cores']} cores, kernel {machine['kernel']}), "
        f"Python {scaling['versions']['python']}, {scaling['date']}, with `{scaling['command']}`: "
        "N workers pinned to cores 0..N−1, wrk with N threads on the next N cores.\n\n"
    )


def _plot(curve: list[dict[str, Any]], path: Path) -> bool:
    if not curve:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(figsize=(8, 5))
    for server, rows in _group(curve, "server").items():
        rows = sorted(rows, key=lambda r: r["connections"])
        rps = [r["rps"] for r in rows]
        (line,) = axes.plot(rps, [r["p50_us"] / 1000 for r in rows], "o-", label=f"{server[0]} p50")
        axes.plot(
            rps,
            [r["p99_us"] / 1000 for r in rows],
            "s--",
            color=line.get_color(),
            label=f"{server[0]} p99",
        )
    axes.set_xlabel("requests/s")
    axes.set_ylabel("latency (ms, log scale)")
    axes.set_yscale("log")
    axes.set_title("Latency against throughput, 5 KB bodies, 1 worker on 1 core")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return True
