"""Overload and soak runs against the real server (`make soak`; a short version runs in CI).

The ensembler waits like one that calls another service (``asyncio.sleep``), so that the
capacity of a worker is known and set by its concurrency limit, not by how fast this
machine's shared cores happen to be: capacity ≈ ``--max-concurrency`` / wait.

Phases, each open-loop (requests are sent on a fixed schedule whether or not earlier ones
were answered, as a router's traffic is):

1. capacity: measured closed-loop, ``concurrency`` connections, the rate of 200s a second;
2. overload at 3x capacity: every answer must be 200 or 503 (with Retry-After), none a
   timeout or a dropped connection, and the accepted requests' latency stays bounded;
3. recovery at half the capacity: every request 200, from the first;
4. soak at 70 % of capacity: every request 200, and the server's resident memory (all its
   processes) grows by less than 5 % from the end of the warm-up to the end.

In phases 3 and 4 no more requests are outstanding than the server's limit (a request
due then waits, and is counted as ``held``): on a busy machine a stalled client or slower
answers would otherwise push them over it, and the 503s that follow are right.

Only 127.0.0.1 is ever targeted; every loop is bounded in count and time.

    python -m bench.soak                       # the full run: a 10-minute soak
    python -m bench.soak --soak 20 --phase 3   # a short one
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procstats

HOST = "127.0.0.1"
# Longer than any answer should take: a request that hits it counts as a timeout.
CLIENT_TIMEOUT = 5.0
MAX_CONNECTIONS = 512


# -- the ensembler and its server -------------------------------------------------------


def save_waiter(target: Path) -> Path:
    """Save the waiting ensembler (by value: the server needs no bench code)."""
    import cloudpickle

    from pyfunc_ensembler import PyFunc, save_ensembler

    class Waiter(PyFunc):
        async def ensemble(  # type: ignore[no-untyped-def,override]
            self, input, predictions, treatment_config, enricher_response=None, **kwargs
        ):
            await asyncio.sleep(input["wait"])
            return {"routes": sorted(predictions), "wait": input["wait"]}

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    save_ensembler(str(target), Waiter())
    return target


def request_bytes(port: int, wait: float) -> bytes:
    payload = json.dumps(
        {
            "request": {"wait": wait},
            "response": {"route_responses": [{"route": "a", "data": 1, "is_default": True}]},
        }
    ).encode()
    return (
        f"POST /ensemble HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Turing-Req-Id: soak\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


# -- the load generator -----------------------------------------------------------------


@dataclass
class Outcomes:
    """What a phase saw: statuses (or "timeout"/"error"), latencies of the 200s."""

    counts: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    missing_retry_after: int = 0
    seconds: float = 0.0
    held: int = 0  # requests that waited for an answer before going (`open_loop`)

    def summary(self) -> dict[str, Any]:
        ok = sorted(self.latencies)
        return {
            "counts": dict(self.counts),
            "ok_per_second": round(len(ok) / self.seconds, 1) if self.seconds else 0.0,
            "latency_ms": {
                "p50": _ms(_quantile(ok, 0.5)),
                "p99": _ms(_quantile(ok, 0.99)),
                "max": _ms(ok[-1] if ok else None),
            },
            "missing_retry_after": self.missing_retry_after,
            "held": self.held,
        }


def _quantile(values: list[float], q: float) -> float | None:
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


class Client:
    """Keep-alive connections to one server, reused while they are idle."""

    def __init__(self, port: int, request: bytes) -> None:
        self.port = port
        self.request = request
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open = 0

    async def one(self, outcomes: Outcomes) -> None:
        started = time.perf_counter()
        try:
            status, headers = await asyncio.wait_for(self._exchange(), CLIENT_TIMEOUT)
        except asyncio.TimeoutError:
            outcomes.counts["timeout"] += 1
            return
        except (OSError, asyncio.IncompleteReadError, ValueError):
            outcomes.counts["error"] += 1
            return
        outcomes.counts[str(status)] += 1
        if status == 200:
            outcomes.latencies.append(time.perf_counter() - started)
        elif status == 503 and b"retry-after" not in headers:
            outcomes.missing_retry_after += 1

    async def _exchange(self) -> tuple[int, bytes]:
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            if self.open >= MAX_CONNECTIONS:
                raise OSError("the client's own connection limit")
            self.open += 1
            reader, writer = await asyncio.open_connection(HOST, self.port)
        try:
            writer.write(self.request)
            head = await reader.readuntil(b"\r\n\r\n")
            headers = head.lower()
            length = int(headers.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            await reader.readexactly(length)
        except BaseException:
            self.open -= 1
            writer.close()
            raise
        if b"connection: close" in headers:
            self.open -= 1
            writer.close()
        else:
            self.idle.append((reader, writer))
        return int(head.split(b" ", 2)[1]), headers

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()
        self.open = 0


async def open_loop(
    client: Client, rate: float, seconds: float, max_in_flight: int = 0
) -> Outcomes:
    """Send `rate` requests a second for `seconds`, on schedule, and wait for the answers.

    With `max_in_flight`, a request due while that many are unanswered waits for one
    (counted in ``held``): below capacity the server is then never sent more than its
    limit at once, even when this machine stalls (shared CI cores) and the schedule
    would otherwise catch up in one burst, or the server's answers slow down.
    """
    outcomes = Outcomes()
    total = max(1, int(rate * seconds))
    started = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()
    for index in range(total):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if max_in_flight and len(tasks) >= max_in_flight:
            outcomes.held += 1
            while len(tasks) >= max_in_flight:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(client.one(outcomes))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    outcomes.seconds = time.perf_counter() - started
    return outcomes


async def closed_loop(client: Client, concurrency: int, seconds: float) -> Outcomes:
    """`concurrency` requests always outstanding for `seconds`: the capacity."""
    outcomes = Outcomes()
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        while time.perf_counter() < deadline:
            await client.one(outcomes)

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    outcomes.seconds = time.perf_counter() - started
    return outcomes


# -- the run ----------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    """Resident memory of the server: the process and its workers."""
    total = 0
    for member in procstats.tree(pid):
        try:
            total += procstats.memory_kb(member)["rss"]
        except (OSError, KeyError):
            continue
    return total


async def soak(
    client: Client, pid: int, rate: float, seconds: float, max_in_flight: int
) -> dict[str, Any]:
    """Open-loop at `rate` for `seconds`; memory sampled after a warm-up of a tenth."""
    warmup = max(1.0, seconds / 10)
    warm = await open_loop(client, rate, warmup, max_in_flight)
    samples = [rss_kb(pid)]
    outcomes = Outcomes()
    steps = max(1, round((seconds - warmup) / 10))
    for _ in range(steps):  # in slices, to see the memory over time
        part = await open_loop(client, rate, (seconds - warmup) / steps, max_in_flight)
        outcomes.counts.update(part.counts)
        outcomes.latencies.extend(part.latencies)
        outcomes.missing_retry_after += part.missing_retry_after
        outcomes.held += part.held
        outcomes.seconds += part.seconds
        samples.append(rss_kb(pid))
    return {
        "rate": round(rate, 1),
        "seconds": round(seconds, 1),
        "warmup": warm.summary(),
        **outcomes.summary(),
        "rss_kb": samples,
        "rss_growth": (samples[-1] - samples[0]) / samples[0],
    }


def run(
    port: int,
    pid: int,
    *,
    wait: float,
    concurrency: int,
    phase_seconds: float,
    soak_seconds: float,
) -> dict[str, Any]:
    """All four phases against a server already running on `port` (process `pid`)."""

    async def phases() -> dict[str, Any]:
        client = Client(port, request_bytes(port, wait))
        try:
            # As many connections as the server answers at once: more would only measure
            # how fast it refuses (and its admission check can be overshot by a burst).
            capacity_run = await closed_loop(client, concurrency, phase_seconds)
            capacity = len(capacity_run.latencies) / capacity_run.seconds
            overload = await open_loop(client, 3 * capacity, phase_seconds)
            recovery = await open_loop(client, capacity / 2, phase_seconds, concurrency)
            soaked = await soak(client, pid, 0.7 * capacity, soak_seconds, concurrency)
        finally:
            client.close()
        return {
            "capacity_per_second": round(capacity, 1),
            "capacity_run": capacity_run.summary(),
            "overload": {"rate": round(3 * capacity, 1), **overload.summary()},
            "recovery": {"rate": round(capacity / 2, 1), **recovery.summary()},
            "soak": soaked,
        }

    return asyncio.run(phases())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="native", choices=("native", "asgi"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--wait", type=float, default=0.05, help="the ensembler's wait (s)")
    parser.add_argument("--max-concurrency", type=int, default=10)
    parser.add_argument("--phase", type=float, default=10, help="seconds per short phase")
    parser.add_argument("--soak", type=float, default=600, help="seconds of soak")
    parser.add_argument("--out", type=Path, help="also write the results here (JSON)")
    args = parser.parse_args(argv)

    from tests.helpers import Server  # the same server starter the tests use

    with tempfile.TemporaryDirectory() as tmp:
        model = save_waiter(Path(tmp) / "waiter")
        server = Server(
            [
                str(model),
                "--server",
                args.server,
                "--workers",
                str(args.workers),
                "--max-concurrency",
                str(args.max_concurrency),
            ]
        ).start()
        try:
            assert server.process is not None
            results = run(
                server.port,
                server.process.pid,
                wait=args.wait,
                concurrency=args.max_concurrency * args.workers,
                phase_seconds=args.phase,
                soak_seconds=args.soak,
            )
        finally:
            server.stop()
    results["settings"] = vars(args) | {"out": str(args.out) if args.out else None}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    failures = problems(results)
    for problem in failures:
        print("FAIL:", problem, file=sys.stderr)
    return 1 if failures else 0


def problems(results: dict[str, Any], max_growth: float = 0.05) -> list[str]:
    """What the run got wrong, by the issue's criteria; empty when it passed."""
    found = []
    overload = results["overload"]["counts"]
    if set(overload) - {"200", "503"}:
        found.append(f"overload: answers other than 200/503: {overload}")
    if not overload.get("503"):
        found.append("overload: no 503 at 3x capacity")
    if results["overload"]["missing_retry_after"]:
        found.append("overload: a 503 without Retry-After")
    for phase, counts in (
        ("recovery", results["recovery"]["counts"]),
        ("soak warm-up", results["soak"]["warmup"]["counts"]),
        ("soak", results["soak"]["counts"]),
    ):
        if set(counts) != {"200"}:
            found.append(f"{phase}: answers other than 200: {counts}")
    growth = results["soak"]["rss_growth"]
    if growth >= max_growth:
        found.append(f"soak: resident memory grew {growth:.1%} after warm-up")
    return found


if __name__ == "__main__":
    sys.exit(main())
