"""Benchmarks of the HTTP probes: throughput, CPU, sampling jitter, outage-boundary accuracy.

Run on demand: ``.venv/bin/python benchmarks/bench_probes.py`` (about a minute); it prints
markdown tables for ``docs/benchmarks.md``. The loopback servers run in a separate process
(``benchmarks/outage_server.py``) so that only the probe's CPU is counted: ``process_time()`` of
this process, which does nothing but probe while measuring (the main thread sleeps).

1. Throughput and CPU: 20 endpoints at 50 Hz (1,000 requests a second) with the aiohttp client
   and with an httpx one, the same ``ProbeRunner`` in thread mode (``client_factory=``), and
   with aiohttp in process mode (the default: the loop in its worker process, whose CPU is
   counted with this process's). Target: within half a core.
2. Sampling jitter at 20 ms: lateness of each send against its grid point (``send - due``),
   from the same runs.
3. Boundary bounds: outages of exactly known windows (the server logs the monotonic times just
   before and after each switch) against the measured bounds, for a refusing and a hanging
   server, alone, beside an endpoint that always hangs, and inside the full 20-endpoint load.
   Target: the truth inside every bound. ``benchmarks/bench_probe_bounds.py`` does the same on
   a loaded machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import random
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import psutil

from drdrill.probes.http import (
    AiohttpClient,
    Endpoint,
    HttpClientFactory,
    ProbeRunner,
    _Columns,
)
from drdrill.probes.sampler import SampleRecord
from drdrill.probes.stats import Bound, Sample, percentile

try:
    # httpx is only compared against, not a drdrill dependency: its rows are skipped without it
    from httpx_client import HttpxClient  # benchmarks/ is on sys.path when run as a script
except ImportError:  # pragma: no cover - depends on the environment
    HttpxClient = None  # type: ignore[assignment,misc]

HERE = Path(__file__).resolve().parent
CPU_BUDGET = 0.5  # of one core


class ServerProcess:
    """``outage_server.py`` in its own process, driven through its stdin."""

    def __init__(self, healthy: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "outage_server.py"), "--healthy", str(healthy)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ports = self._read()
        listed = ports["healthy"]
        assert isinstance(listed, list)
        self.healthy: list[int] = [int(port) for port in listed]
        self.target: int = int(str(ports["target"]))
        self.hang: int = int(str(ports["hang"]))
        self.ps = psutil.Process(self.process.pid)

    def _read(self) -> dict[str, object]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("outage server exited")
        reply: dict[str, object] = json.loads(line)
        return reply

    def command(self, text: str) -> dict[str, object]:
        """Send one command; its JSON reply."""
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()
        return self._read()

    def switch(self, text: str) -> tuple[float, float]:
        """``down MODE`` or ``up``; the monotonic times just before and after the switch."""
        reply = self.command(text)
        before, after = reply["before"], reply["after"]
        assert isinstance(before, float) and isinstance(after, float)
        return before, after

    def cpu_s(self) -> float:
        """CPU seconds the server process has used."""
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def close(self) -> None:
        """Stop the server."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


def url(port: int, path: str = "/health") -> str:
    """A loopback URL."""
    return f"http://127.0.0.1:{port}{path}"


def ms(seconds: float) -> str:
    """Seconds as milliseconds, 2 decimals."""
    return f"{seconds * 1000:.2f}"


@dataclass(frozen=True)
class Throughput:
    """One throughput run."""

    client: str
    interval_s: float
    samples_per_s: float
    good_pct: float
    cpu_core_fraction: float
    cpu_ms_per_1000: float
    server_cpu_core_fraction: float
    jitter_p50_s: float
    jitter_p99_s: float
    jitter_max_s: float
    latency_p50_s: float
    latency_p99_s: float
    skipped_ticks: int


def measure_throughput(
    server: ServerProcess,
    client: str,
    factory: HttpClientFactory | None,
    interval: float,
    seconds: float,
) -> Throughput:
    """20 endpoints every ``interval`` for ``seconds`` after a 1 s warm-up; without a
    ``factory``, in process mode (the worker's CPU counted with this process's)."""
    endpoints = [Endpoint(url(port)) for port in server.healthy]
    if factory is None:
        runner = ProbeRunner(endpoints, interval_s=interval)
    else:
        runner = ProbeRunner(endpoints, interval_s=interval, client_factory=factory)
    with runner:
        time.sleep(1.0)
        worker = psutil.Process(runner.worker_pid) if runner.worker_pid is not None else None

        def cpu_s() -> float:
            times = worker.cpu_times() if worker is not None else None
            extra = float(times.user + times.system) if times is not None else 0.0
            return time.process_time() + extra

        counts0 = {e.url: runner.sample_count(e.url) for e in endpoints}
        cpu0, wall0, server0 = cpu_s(), time.monotonic(), server.cpu_s()
        time.sleep(seconds)
        cpu1, wall1, server1 = cpu_s(), time.monotonic(), server.cpu_s()
        counts1 = {e.url: runner.sample_count(e.url) for e in endpoints}
        skipped = runner.skipped_ticks
    measured: list[Sample] = []
    for e in endpoints:
        measured.extend(runner.samples(e.url)[counts0[e.url] : counts1[e.url]])
    wall, cpu = wall1 - wall0, cpu1 - cpu0
    lateness = [s.send_mono - s.due_mono for s in measured]
    good = [s.latency_s for s in measured if s.ok]
    return Throughput(
        client=client,
        interval_s=interval,
        samples_per_s=len(measured) / wall,
        good_pct=100 * len(good) / len(measured),
        cpu_core_fraction=cpu / wall,
        cpu_ms_per_1000=1000 * cpu / len(measured) * 1000,
        server_cpu_core_fraction=(server1 - server0) / wall,
        jitter_p50_s=percentile(lateness, 50),
        jitter_p99_s=percentile(lateness, 99),
        jitter_max_s=max(lateness),
        latency_p50_s=percentile(good, 50) if good else float("nan"),
        latency_p99_s=percentile(good, 99) if good else float("nan"),
        skipped_ticks=skipped,
    )


@dataclass(frozen=True)
class Accuracy:
    """How the bounds of one variant's outages held against the truth."""

    variant: str
    interval_s: float
    outages_expected: int
    outages_found: int
    inside: int
    boundaries: int
    start_widths: list[float]
    end_widths: list[float]
    target_max_gap_s: float

    @property
    def within_target(self) -> bool:
        """Every outage found once, and the truth inside every bound."""
        return self.outages_found == self.outages_expected and self.inside == self.boundaries


def _inside(bound: Bound | None, truth: tuple[float, float]) -> bool:
    return bound is not None and bound.low_mono <= truth[1] and truth[0] <= bound.high_mono


def measure_accuracy(
    server: ServerProcess,
    mode: str,
    neighbours: str,
    interval: float,
    repeats: int,
    rng: random.Random,
) -> Accuracy:
    """``repeats`` outages of 0.5 s on the target; whether each bound holds its truth."""
    target = Endpoint(url(server.target), timeout_s=0.25)
    endpoints = [target]
    if neighbours in ("hanging", "load"):
        endpoints.append(Endpoint(url(server.hang), timeout_s=1.0))
    if neighbours == "load":
        endpoints.extend(Endpoint(url(port)) for port in server.healthy)
    truth: list[tuple[tuple[float, float], tuple[float, float]]] = []
    runner = ProbeRunner(endpoints, interval_s=interval, recovery_samples=3)
    with runner:
        time.sleep(0.5)
        for _ in range(repeats):
            time.sleep(rng.uniform(0, interval))  # a random phase against the grid
            down = server.switch(f"down {mode}")
            time.sleep(0.5)
            up = server.switch("up")
            truth.append((down, up))
            time.sleep(0.5)
    outages = runner.outages(target.url)
    inside = boundaries = 0
    start_widths: list[float] = []
    end_widths: list[float] = []
    for (down, up), outage in zip(truth, outages, strict=False):
        for bound, moment, widths in (
            (outage.start_bound, down, start_widths),
            (outage.end_bound, up, end_widths),
        ):
            boundaries += 1
            inside += _inside(bound, moment)
            if bound is not None:
                widths.append(bound.uncertainty_s)
    sent = runner.samples(target.url)
    gap = max(b.send_mono - a.send_mono for a, b in itertools.pairwise(sent))
    return Accuracy(
        variant=f"{mode}, {neighbours}",
        interval_s=interval,
        outages_expected=repeats,
        outages_found=len(outages),
        inside=inside,
        boundaries=boundaries,
        start_widths=start_widths,
        end_widths=end_widths,
        target_max_gap_s=gap,
    )


def describe_machine() -> str:
    """CPU, cores, Python and library versions."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    httpx_version = version("httpx") if HttpxClient is not None else "absent"
    return (
        f"{model}, {psutil.cpu_count()} logical cores; Python {platform.python_version()}, "
        f"aiohttp {version('aiohttp')}, httpx {httpx_version}, "
        f"{platform.system()} {platform.release()}"
    )


def main() -> int:
    """Run every benchmark and print markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput run length")
    parser.add_argument("--interval", type=float, default=0.02, help="accuracy runs' interval")
    parser.add_argument("--repeats", type=int, default=10, help="outages per accuracy variant")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    server = ServerProcess(healthy=20)
    try:
        print(f"machine: {describe_machine()}")
        print(f"command: .venv/bin/python benchmarks/bench_probes.py {' '.join(sys.argv[1:])}")
        print()
        print("### Throughput and CPU: 20 endpoints at 50 Hz (1,000 requests/s), and at 10 Hz")
        print()
        print(
            "| client | rate | samples/s | good % | CPU (of one core) | CPU ms / 1,000 samples "
            "| server CPU (not counted) | jitter p50 / p99 / max ms | latency p50 / p99 ms "
            "| skipped ticks |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        throughputs = []
        clients: list[tuple[str, HttpClientFactory | None]] = [
            ("aiohttp, process", None),
            ("aiohttp, thread", AiohttpClient),
        ]
        if HttpxClient is not None:
            clients.append(("httpx, thread", HttpxClient))
        else:
            print("(httpx is not installed: its rows are skipped)")
        for interval in (0.02, 0.1):
            for name, factory in clients:
                t = measure_throughput(server, name, factory, interval, args.seconds)
                throughputs.append(t)
                print(
                    f"| {t.client} | {1 / t.interval_s:.0f} Hz | {t.samples_per_s:.0f} "
                    f"| {t.good_pct:.2f} "
                    f"| {100 * t.cpu_core_fraction:.1f}% | {t.cpu_ms_per_1000:.0f} "
                    f"| {100 * t.server_cpu_core_fraction:.1f}% "
                    f"| {ms(t.jitter_p50_s)} / {ms(t.jitter_p99_s)} / {ms(t.jitter_max_s)} "
                    f"| {ms(t.latency_p50_s)} / {ms(t.latency_p99_s)} | {t.skipped_ticks} |",
                    flush=True,
                )
        print()
        for t in throughputs:
            if t.interval_s != 0.02:
                continue
            verdict = (
                "meets"
                if t.cpu_core_fraction <= CPU_BUDGET and t.samples_per_s >= 990
                else "misses"
            )
            print(
                f"- {t.client}: {verdict} the budget (1,000 samples/s within "
                f"{100 * CPU_BUDGET:.0f}% of one core): {t.samples_per_s:.0f} samples/s at "
                f"{100 * t.cpu_core_fraction:.1f}%"
            )
        print()
        print(
            f"### Outage bounds against the truth, interval {args.interval * 1000:.0f} ms, "
            f"{args.repeats} outages of 0.5 s each"
        )
        print()
        print(
            "| server outage, other endpoints | outages found | truth inside the bound "
            "| start width min / mean / max ms | restore width min / mean / max ms "
            "| target's max gap between sends ms | within target |"
        )
        print("|---|---|---|---|---|---|---|")
        variants = [
            ("refuse", "alone"),
            ("hang", "alone"),
            ("refuse", "hanging"),
            ("hang", "hanging"),
            ("refuse", "load"),
            ("hang", "load"),
        ]
        all_within = True
        for mode, neighbours in variants:
            a = measure_accuracy(server, mode, neighbours, args.interval, args.repeats, rng)
            all_within = all_within and a.within_target

            def spread(values: list[float]) -> str:
                if not values:
                    return "-"
                mean = sum(values) / len(values)
                return f"{ms(min(values))} / {ms(mean)} / {ms(max(values))}"

            label = {
                "alone": "alone",
                "hanging": "+ 1 always-hanging endpoint",
                "load": "+ 1 hanging + 20 healthy at 50 Hz",
            }[neighbours]
            gap = ms(a.target_max_gap_s)
            print(
                f"| {mode}, {label} | {a.outages_found}/{a.outages_expected} "
                f"| {a.inside}/{a.boundaries} | {spread(a.start_widths)} "
                f"| {spread(a.end_widths)} | {gap} | {'yes' if a.within_target else 'NO'} |",
                flush=True,
            )
        print()
        store = [_Columns() for _ in range(20)]
        for columns in store:
            for k in range(30_000):
                at = k * 0.02
                columns.put(SampleRecord(0, k, at, at, at, at + 0.002, 200, 0, 0.0), False)
        size = sum(
            sys.getsizeof(getattr(columns, name))
            for columns in store
            for name in ("due", "mono", "epoch", "latency", "lag", "status", "error", "starved")
        )
        print(
            f"sample store for 20 endpoints x 50 Hz x 10 min (600,000 samples): "
            f"{size / 2**20:.1f} MiB ({size / 600_000:.1f} bytes a sample)"
        )
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(f"peak RSS of the probe process: {usage.ru_maxrss / 1024:.0f} MiB")
        print(f"truth inside every bound in every variant: {'yes' if all_within else 'NO'}")
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
