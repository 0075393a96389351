"""The drills' figures against the sandbox's independent ground truth, over several runs.

Runs ``pytest suites/test_region_failover.py suites/test_failback.py`` N times against a sandbox
of its own (block 9, a temporary folder), optionally beside a CPU hog on every core, and prints
for each figure: how many runs had a ground truth, the error (measured - truth) as mean and
worst, how often the truth fell inside the measured interval [low, high], the interval's
median width, and the truth's own median uncertainty (an interval when the observer saw the
endpoint flap). Figures without a ground truth are listed with the reason the report gives.
Then how often the DR load balancer, probed by address, failed again after its first restore
(more than one outage of an endpoint in a drill): the flapping that makes Health Verification's
restore depend on which requests a sampler sent.

    .venv/bin/python benchmarks/bench_truth.py --runs 5
    .venv/bin/python benchmarks/bench_truth.py --runs 3 --hog

Nothing is asserted: the harness's tests assert the agreement (tests/sandbox/
test_truth_agreement.py); this prints the figures docs/benchmarks.md quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 9


def _config(folder: Path) -> Path:
    path = folder / "drdrill.yaml"
    path.write_text(
        f"""runbook: {ROOT / "docs" / "runbook.md"}
target: sandbox
objectives: {{scale: 0.02}}
probes: {{interval: 0.05, timeout: 0.5, recovery_samples: 3}}
writer: {{sink: http, rate_hz: 20, timeout: 1}}
journal: {folder / "journal.jsonl"}
report_dir: {folder / "reports"}
targets:
  sandbox:
    run_dir: {folder / "sbx"}
    block: {BLOCK}
"""
    )
    return path


def _hogs(on: bool) -> list[subprocess.Popen[bytes]]:
    if not on:
        return []
    code = "while True: pass"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(os.cpu_count() or 2)]


def main() -> int:
    """Run the drills N times and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hog", action="store_true", help="a busy process on every core")
    parser.add_argument(
        "--keep", type=Path, default=None, help="copy a failed run's report and logs here"
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="drdrill-bench-"))
    config = _config(folder)
    errors: dict[str, list[tuple[float, float, float, float, float]]] = defaultdict(list)
    #: per failover drill: the DR balancer's relapses after its first restore (seconds each)
    relapses: dict[str, list[list[float]]] = defaultdict(list)
    no_truth: dict[str, set[str]] = defaultdict(set)
    verdicts = []
    failures: list[str] = []
    hogs = _hogs(args.hog)
    started = time.monotonic()
    try:
        for run in range(args.runs):
            out = folder / f"run{run}"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "suites/test_region_failover.py",
                    "suites/test_failback.py",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "--dr-config",
                    str(config),
                    "--dr-report-dir",
                    str(out),
                ],
                cwd=ROOT,
                capture_output=True,
                timeout=900,
                check=False,
            )
            (path,) = out.glob("*/report.json")
            report: dict[str, Any] = json.loads(path.read_text())
            verdicts.append(report["run"]["verdict"])
            failed = [t for t in report["tests"] if t["outcome"] not in ("passed", "skipped")]
            for test in failed:
                failures.append(f"run {run}: {test['outcome']} {test['nodeid']}: {test['message']}")
            if failed and args.keep is not None:
                # the report and the sandbox's logs of a failed run, for a look afterwards
                kept = args.keep / f"run{run}"
                shutil.copytree(out, kept / "reports", dirs_exist_ok=True)
                shutil.copytree(folder / "sbx", kept / "sandbox", dirs_exist_ok=True)
                failures.append(f"run {run}: kept in {kept}")
            for phase in report["phases"]:
                drill = phase["test"].rsplit("::", 1)[-1]
                key = f"{drill} {phase['name']}"
                if phase["truth_s"] is None:
                    no_truth[key].add(phase["truth_source"] or "no ground truth")
                    continue
                errors[key].append(
                    (
                        phase["measured"],
                        phase["truth_s"],
                        phase["low"],
                        phase["high"],
                        float(phase.get("truth_uncertainty") or 0.0),
                    )
                )
            _count_relapses(report, relapses)
    finally:
        for hog in hogs:
            hog.kill()
        shutil.rmtree(folder, ignore_errors=True)
    took = time.monotonic() - started
    load = os.getloadavg()[0]
    print(
        f"{args.runs} runs{' beside a CPU hog on every core' if args.hog else ''} in {took:.0f} s "
        f"(load average {load:.1f}); verdicts: {', '.join(verdicts)}"
    )
    print(
        f"{'drill / figure':62} {'n':>2} {'mean err':>9} {'worst':>9} {'in [lo,hi]':>10} "
        f"{'width':>7} {'truth ±':>8}"
    )
    for key in sorted(errors):
        rows = errors[key]
        errs = [(m - t) * 1000 for m, t, _, _, _ in rows]
        inside = sum(1 for _, t, lo, hi, _ in rows if lo - 1e-6 <= t <= hi + 1e-6)
        width = statistics.median((hi - lo) * 1000 for _, _, lo, hi, _ in rows)
        spread = statistics.median(u * 1000 for *_, u in rows)
        worst = max(errs, key=abs)
        print(
            f"{key:62} {len(rows):>2} {statistics.mean(errs):+8.1f}ms {worst:+8.1f}ms "
            f"{inside:>4}/{len(rows):<5} {width:6.0f}ms {spread:6.0f}ms"
        )
    for drill in sorted(relapses):
        runs = relapses[drill]
        flapped = [r for r in runs if r]
        longest = max((max(r) for r in flapped), default=0.0)
        print(
            f"{drill:42} DR balancer failed again after its first restore in "
            f"{len(flapped)}/{len(runs)} runs (longest relapse {longest:.3f} s)"
        )
    for line in failures:
        print(line)
    for key in sorted(no_truth):
        print(f"{key:62} no ground truth: {'; '.join(sorted(no_truth[key]))}")
    return 0


def _count_relapses(report: dict[str, Any], relapses: dict[str, list[list[float]]]) -> None:
    """Each failover drill's outages of the DR balancer probed by address after its first one
    (the pilot-light stretch, expected down): how long each relapse lasted."""
    # the report marks the first outage of an endpoint down by design as expected; every later
    # one of that endpoint is an outage
    by_drill: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    designed = {(o["test"], o["endpoint"]) for o in report["outages"] if o.get("expected_down")}
    for outage in report["outages"]:
        drill = outage["test"].rsplit("::", 1)[-1]
        if drill.startswith("test_region_failover") and (
            (outage["test"], outage["endpoint"]) in designed
        ):
            by_drill[drill][outage["endpoint"]].append(float(outage["duration_s"]))
    for drill, endpoints in by_drill.items():
        relapses[drill].append([d for spans in endpoints.values() for d in spans[1:]])


if __name__ == "__main__":
    sys.exit(main())
