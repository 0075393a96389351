"""Benchmark: are the probes' outage bounds honest on a loaded machine, and what do they cost?

Run on demand: ``.venv/bin/python benchmarks/bench_probe_bounds.py`` (about 5 minutes); it
prints markdown tables for ``docs/benchmarks.md``.

Ground truth: ``benchmarks/outage_server.py`` (its own process) switches its target port down
(refusing, or hanging: accepting but never answering) and up again, and logs each switch as the
monotonic times just before and after it, so the true moment lies in ``[before, after]``. A
bound ``[low, high]`` *contains* the truth when ``low <= after`` and ``before <= high``.

Each scenario probes the target (0.25 s timeout) beside a *drill-like* set of neighbours (2
healthy endpoints, 1 s timeout, all at 20 Hz) or a *heavy* one (1 hanging endpoint and 20
healthy ones, all at 50 Hz: about 1,000 requests a second), with ten outages of 0.5 s each at
a random phase against the grid, under two loads:

- ``idle``: nothing else on the machine but what was already there;
- ``loaded``: two ``python -c 'while True: pass'`` processes (one a core, on a 2-core machine)
  and a thread in *this* process doing pure-Python work (it competes for the GIL, as a drill's
  pollers and writer do), all killed when the scenario ends.

and two ways of running the probe loop: ``thread`` (the loop in a thread of this process, as
before) and ``process`` (the loop in its worker process, the new default). For each, three
rules are read off the very same samples:

- ``old``: the boundaries as send times, every failure bad (what drdrill reported before): the
  start in ``[last good send, first bad send]``, the restore in ``[last bad send, first good
  send]``;
- ``bounds``: completion times as upper ends, every failure bad;
- ``bounds+starved``: completion times as upper ends, starved failures set aside (shipped).

Then the calibration of the starved rule: 20 healthy endpoints and one that always hangs, at
50 Hz, under the ``loaded`` load, with short timeouts (0.05, 0.1, 0.25 s) so that the loop's
lateness causes timeouts at all: every timeout of a healthy endpoint is taken as false (the
server answers in about a millisecond when it gets the CPU), every one of the hanging endpoint
as true; for each, the worst loop lateness in its flight as a fraction of the timeout.

Then the CPU cost of 1,000 samples (20 healthy endpoints at 50 Hz) and the worker's start-up.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from drdrill.probes.http import Endpoint, ProbeMode, ProbeRunner
from drdrill.probes.stats import (
    ERROR_TIMEOUT,
    STARVED_LAG_FRACTION,
    Bound,
    Sample,
    derive_outages,
    percentile,
)

HERE = Path(__file__).resolve().parent
TARGET_TIMEOUT_S = 0.25
OUTAGE_S = 0.5

# each hog arms its own parent-death signal, so that even a killed benchmark leaves none behind
_HOG = (
    "import ctypes, signal\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)\n"
    "while True:\n"
    "    pass\n"
)


class Server:
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
        self.healthy: list[int] = [int(p) for p in listed]
        self.target = int(str(ports["target"]))
        self.hang = int(str(ports["hang"]))

    def _read(self) -> dict[str, object]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("outage server exited")
        reply: dict[str, object] = json.loads(line)
        return reply

    def switch(self, command: str) -> tuple[float, float]:
        """``down MODE`` or ``up``; the monotonic ``(before, after)`` of the switch."""
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        reply = self._read()
        before, after = reply["before"], reply["after"]
        assert isinstance(before, float) and isinstance(after, float)
        return before, after

    def close(self) -> None:
        """Stop the server."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


def url(port: int) -> str:
    """A loopback URL."""
    return f"http://127.0.0.1:{port}/health"


@contextlib.contextmanager
def load(kind: str) -> Iterator[None]:
    """Nothing for ``idle``; for ``loaded``, a CPU hog a core and a busy thread here."""
    if kind == "idle":
        yield
        return
    hogs = [subprocess.Popen([sys.executable, "-c", _HOG]) for _ in range(psutil.cpu_count() or 2)]
    stop = threading.Event()

    def spin() -> None:
        n = 0
        while not stop.is_set():
            for i in range(1000):
                n += i * i % 7

    busy = threading.Thread(target=spin, daemon=True)
    busy.start()
    try:
        time.sleep(0.5)  # let the scheduler settle on the hogs
        yield
    finally:
        stop.set()
        busy.join()
        for hog in hogs:
            hog.send_signal(signal.SIGKILL)
        for hog in hogs:
            hog.wait()


# -- the rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """One outage as a rule bounds it."""

    start: Bound | None
    end: Bound | None


def rule_old(samples: Sequence[Sample]) -> list[Found]:
    """Send times as the boundaries, every failure bad (drdrill before this change)."""
    as_sent = [dataclasses.replace(s, latency_s=0.0, starved=False) for s in samples]
    return _found(as_sent)


def rule_bounds(samples: Sequence[Sample]) -> list[Found]:
    """Completion times as upper ends, every failure bad."""
    return _found([dataclasses.replace(s, starved=False) for s in samples])


def rule_shipped(samples: Sequence[Sample]) -> list[Found]:
    """Completion times as upper ends, starved failures set aside."""
    return _found(samples)


def _found(samples: Sequence[Sample]) -> list[Found]:
    return [Found(o.start_bound, o.end_bound) for o in derive_outages("t", samples, 3)]


RULES: dict[str, Callable[[Sequence[Sample]], list[Found]]] = {
    "old": rule_old,
    "bounds": rule_bounds,
    "bounds+starved": rule_shipped,
}

Truth = tuple[tuple[float, float], tuple[float, float]]


def _meets(bound: Bound | None, truth: tuple[float, float]) -> bool:
    return bound is not None and bound.low_mono <= truth[1] and truth[0] <= bound.high_mono


@dataclass
class Score:
    """How one rule did over one scenario's outages."""

    expected: int = 0
    found: int = 0
    false_outages: int = 0
    starts_inside: int = 0
    ends_inside: int = 0
    start_widths: list[float] = dataclasses.field(default_factory=list)
    end_widths: list[float] = dataclasses.field(default_factory=list)
    misses_ms: list[float] = dataclasses.field(default_factory=list)


def score(found: list[Found], truths: list[Truth]) -> Score:
    """Match each true outage with the detected one that overlaps it; the rest are false."""
    result = Score(expected=len(truths))
    unused = list(found)
    for down, up in truths:
        match = next(
            (
                f
                for f in unused
                if f.start is not None
                and f.start.low_mono <= up[1]
                and (f.end is None or f.end.high_mono >= down[0])
            ),
            None,
        )
        if match is None:
            continue
        unused.remove(match)
        result.found += 1
        for bound, truth, inside, widths in (
            (match.start, down, "starts_inside", result.start_widths),
            (match.end, up, "ends_inside", result.end_widths),
        ):
            if bound is None:
                continue
            widths.append(bound.uncertainty_s)
            if _meets(bound, truth):
                setattr(result, inside, getattr(result, inside) + 1)
            else:
                miss = (
                    truth[0] - bound.high_mono
                    if truth[0] > bound.high_mono
                    else bound.low_mono - truth[1]
                )
                result.misses_ms.append(miss * 1000)
    result.false_outages = len(unused)
    return result


# -- a scenario ---------------------------------------------------------------------------------


@dataclass
class Scenario:
    """One run: its samples and truths, and the loop's own figures."""

    mode: ProbeMode
    load: str
    neighbours: str
    kind: str
    samples: list[Sample]
    truths: list[Truth]
    neighbour_outages: int
    starved: int
    late_max_ms: float
    late_p99_ms: float
    latency_p50_ms: float
    latency_p99_ms: float


def run_scenario(
    server: Server,
    mode: ProbeMode,
    load_kind: str,
    neighbours: str,
    kind: str,
    repeats: int,
    rng: random.Random,
) -> Scenario:
    """``repeats`` outages of the target; every sample and the server's truths."""
    target = Endpoint(url(server.target), timeout_s=TARGET_TIMEOUT_S)
    if neighbours == "drill":
        interval = 0.05
        others = [Endpoint(url(port)) for port in server.healthy[:2]]
    else:
        interval = 0.02
        others = [
            Endpoint(url(server.hang), timeout_s=1.0),
            *(Endpoint(url(port)) for port in server.healthy),
        ]
    runner = ProbeRunner([target, *others], interval_s=interval, recovery_samples=3, mode=mode)
    truths: list[Truth] = []
    with load(load_kind), runner:
        time.sleep(0.5)
        for _ in range(repeats):
            time.sleep(rng.uniform(0, interval))
            down = server.switch(f"down {kind}")
            time.sleep(OUTAGE_S)
            up = server.switch("up")
            truths.append((down, up))
            time.sleep(0.6)
    healthy = [e for e in others if e.url != url(server.hang)]
    neighbour_outages = sum(len(runner.outages(e.url)) for e in healthy)
    late = runner.lateness()
    good = [s.latency_s * 1000 for e in healthy for s in runner.samples(e.url) if s.ok]
    return Scenario(
        mode=mode,
        load=load_kind,
        neighbours=neighbours,
        kind=kind,
        samples=runner.samples(target.url),
        truths=truths,
        neighbour_outages=neighbour_outages,
        starved=late.starved_samples,
        late_max_ms=(late.max_s or 0.0) * 1000,
        late_p99_ms=(late.p99_s or 0.0) * 1000,
        latency_p50_ms=statistics.median(good) if good else float("nan"),
        latency_p99_ms=statistics.quantiles(good, n=100)[98] if len(good) > 1 else float("nan"),
    )


def _widths(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values) * 1000:.0f} / {max(values) * 1000:.0f}"


# -- the starved rule's calibration ------------------------------------------------------------

CALIBRATION_FRACTIONS = (0.1, 0.2, 0.25, 0.5)


@dataclass(frozen=True)
class Calibration:
    """Loop lateness in the flight of false and true timeouts, as fractions of the timeout."""

    mode: ProbeMode
    timeout_s: float
    healthy_samples: int
    false_ratios: list[float]
    true_ratios: list[float]


def calibrate(server: Server, mode: ProbeMode, timeout_s: float, seconds: float) -> Calibration:
    """Healthy endpoints and a hanging one under load: the lag of each kind of timeout."""
    healthy = [Endpoint(url(port), timeout_s=timeout_s) for port in server.healthy]
    hanging = Endpoint(url(server.hang), timeout_s=timeout_s)
    runner = ProbeRunner([*healthy, hanging], interval_s=0.02, mode=mode)
    with load("loaded"), runner:
        time.sleep(seconds)
    false = [
        s.lag_s / timeout_s
        for e in healthy
        for s in runner.samples(e.url)
        if s.error == ERROR_TIMEOUT
    ]
    true = [s.lag_s / timeout_s for s in runner.samples(hanging.url)]
    count = sum(runner.sample_count(e.url) for e in healthy)
    return Calibration(mode, timeout_s, count, sorted(false), sorted(true))


def _quantiles(ratios: list[float]) -> str:
    if not ratios:
        return "-"
    return " / ".join(f"{percentile(ratios, q):.2f}" for q in (0, 5, 50, 100))


def _caught(ratios: list[float]) -> str:
    if not ratios:
        return "-"
    return " / ".join(
        f"{100 * sum(r >= f for r in ratios) / len(ratios):.0f}%" for f in CALIBRATION_FRACTIONS
    )


# -- CPU and start-up ---------------------------------------------------------------------------


def cpu_per_1000(server: Server, mode: ProbeMode, seconds: float) -> tuple[float, float, float]:
    """CPU ms per 1,000 samples, 20 endpoints at 50 Hz: (probe loop, this process, samples/s).

    In process mode the loop's CPU is the worker's and "this process" is the reader thread
    storing the samples (the main thread sleeps); in thread mode both are this process's.
    """
    endpoints = [Endpoint(url(port)) for port in server.healthy]
    runner = ProbeRunner(endpoints, interval_s=0.02, mode=mode)
    with runner:
        time.sleep(1.0)
        worker = psutil.Process(runner.worker_pid) if runner.worker_pid else None

        def worker_cpu() -> float:
            if worker is None:
                return 0.0
            times = worker.cpu_times()
            return float(times.user + times.system)

        count0 = sum(runner.sample_count(e.url) for e in endpoints)
        here0, there0, wall0 = time.process_time(), worker_cpu(), time.monotonic()
        time.sleep(seconds)
        here1, there1, wall1 = time.process_time(), worker_cpu(), time.monotonic()
        count1 = sum(runner.sample_count(e.url) for e in endpoints)
    n = count1 - count0
    here, there = here1 - here0, there1 - there0
    loop = there if mode == "process" else here
    return 1e6 * loop / n, 1e6 * here / n, n / (wall1 - wall0)


def startups(server: Server, n: int) -> list[float]:
    """Seconds from start() to the worker's first grid point, ``n`` times."""
    out = []
    for _ in range(n):
        runner = ProbeRunner([Endpoint(url(server.healthy[0]))], interval_s=0.05)
        with runner:
            assert runner.startup_s is not None
            out.append(runner.startup_s)
    return out


def main() -> int:
    """Run every scenario and print markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="outages per scenario")
    parser.add_argument("--seconds", type=float, default=10.0, help="CPU run length")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--calibration-seconds", type=float, default=15.0)
    parser.add_argument("--only", default="", help="run scenarios whose label contains this")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"command: .venv/bin/python benchmarks/bench_probe_bounds.py {' '.join(sys.argv[1:])}")
    server = Server(healthy=20)
    try:
        print()
        print("### Outage bounds against the server's truth")
        print()
        print(
            "| load | neighbours | outage | loop | rule | found | false | start inside "
            "| restore inside | start width med / max ms | restore width med / max ms "
            "| worst miss ms |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        loops = []
        for load_kind in ("idle", "loaded"):
            for neighbours in ("drill", "heavy"):
                for kind in ("refuse", "hang"):
                    for mode in ("thread", "process"):
                        label = f"{load_kind} {neighbours} {kind} {mode}"
                        if args.only and args.only not in label:
                            continue
                        sc = run_scenario(
                            server, mode, load_kind, neighbours, kind, args.repeats, rng
                        )
                        loops.append(sc)
                        for name, rule in RULES.items():
                            s = score(rule(sc.samples), sc.truths)
                            worst = f"{max(s.misses_ms):.0f}" if s.misses_ms else "-"
                            print(
                                f"| {load_kind} | {neighbours} | {kind} | {mode} | {name} "
                                f"| {s.found}/{s.expected} | {s.false_outages} "
                                f"| {s.starts_inside}/{s.found} | {s.ends_inside}/{s.found} "
                                f"| {_widths(s.start_widths)} | {_widths(s.end_widths)} "
                                f"| {worst} |",
                                flush=True,
                            )
        print()
        print("### The probe loop's own figures in those runs")
        print()
        print(
            "| load | neighbours | outage | loop | loop late max / p99 ms | starved samples "
            "| outages on healthy neighbours | neighbours' latency p50 / p99 ms |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for sc in loops:
            print(
                f"| {sc.load} | {sc.neighbours} | {sc.kind} | {sc.mode} "
                f"| {sc.late_max_ms:.0f} / {sc.late_p99_ms:.0f} | {sc.starved} "
                f"| {sc.neighbour_outages} | {sc.latency_p50_ms:.1f} / {sc.latency_p99_ms:.1f} |"
            )
        if not args.only:
            print()
            print(
                "### Calibration of the starved rule (loaded; lateness in flight / timeout; "
                f"shipped fraction {STARVED_LAG_FRACTION})"
            )
            print()
            fractions = " / ".join(f"{f:g}" for f in CALIBRATION_FRACTIONS)
            print(
                "| loop | timeout | healthy samples | false timeouts | their lag/T min / p5 / "
                f"p50 / max | set aside at {fractions} | true timeouts | their lag/T min / p5 "
                f"/ p50 / max | set aside at {fractions} |"
            )
            print("|---|---|---|---|---|---|---|---|---|")
            modes: tuple[ProbeMode, ...] = ("thread", "process")
            for mode in modes:
                for timeout in (0.05, 0.1, 0.25):
                    c = calibrate(server, mode, timeout, args.calibration_seconds)
                    print(
                        f"| {c.mode} | {c.timeout_s * 1000:.0f} ms | {c.healthy_samples} "
                        f"| {len(c.false_ratios)} | {_quantiles(c.false_ratios)} "
                        f"| {_caught(c.false_ratios)} | {len(c.true_ratios)} "
                        f"| {_quantiles(c.true_ratios)} | {_caught(c.true_ratios)} |",
                        flush=True,
                    )
            print()
            print("### CPU per 1,000 samples (20 healthy endpoints at 50 Hz, idle)")
            print()
            print("| loop | probe loop CPU ms | this process CPU ms | samples/s |")
            print("|---|---|---|---|")
            for mode in modes:
                loop_ms, here_ms, rate = cpu_per_1000(server, mode, args.seconds)
                print(f"| {mode} | {loop_ms:.0f} | {here_ms:.0f} | {rate:.0f} |", flush=True)
            print()
            idle = startups(server, 10)
            with load("loaded"):
                loaded = startups(server, 5)
            print(
                f"worker start-up (start() to first grid point): idle median "
                f"{statistics.median(idle) * 1000:.0f} ms, max {max(idle) * 1000:.0f} ms; "
                f"loaded median {statistics.median(loaded) * 1000:.0f} ms, "
                f"max {max(loaded) * 1000:.0f} ms"
            )
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
