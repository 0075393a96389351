"""The main job beside a CPU hog: does ``./dev.sh drill`` stay green on a busy runner, and how long
does it take?

Run: ``.venv/bin/python benchmarks/bench_busy_drill.py [--hogs N] [--idle] [--runs K]``, from the
repository root, with nothing else driving the main job's sandbox (its blocks 0-3: CI's sandbox
tests and another main job use them too; ``flock /tmp/drdrill-sandbox.lock`` serializes them).

Each run is the README's main job, ``./dev.sh drill`` (set-up included; on a venv that is already
set up, that is a second or two), with reports in a temporary folder, while ``--hogs`` processes
(default: one per core) spin on the CPU. ``--idle`` also runs it once without hogs first, for
comparison. Prints, per run: the exit status, the verdict line the job printed, the wall time,
pytest's own time, the load average before and after, and the worst probe lateness the report
recorded (the apparatus's own delay: a run it starved is INCONCLUSIVE, not FAILED).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERDICT = re.compile(r"^(PASSED|FAILED|INCONCLUSIVE|INCOMPLETE) — .*$", re.MULTILINE)
#: pytest's last line: "=== 14 passed, 6 skipped in 70.37s (0:01:10) ==="
PYTEST_TIME = re.compile(r"^=+ .* in ([0-9.]+)s(?: \([0-9:]+\))? =+$", re.MULTILINE)


def _spin() -> None:
    while True:
        pass


@contextmanager
def hogs(count: int) -> Iterator[None]:
    """``count`` processes that keep a core each busy until the block ends."""
    procs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(count)]
    for proc in procs:
        proc.start()
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join()


def _worst_probe_lag(report_dir: Path) -> float | None:
    reports = sorted(report_dir.glob("*/report.json"))
    if not reports:
        return None
    data = json.loads(reports[-1].read_text())
    text = json.dumps(data)
    lags = [float(m) for m in re.findall(r'"probe_lag_s": ([0-9.]+)', text)]
    return max(lags) if lags else None


def run_main_job(hog_count: int, extra: list[str]) -> dict[str, object]:
    """One ``./dev.sh drill`` beside ``hog_count`` busy processes; its outcome and times."""
    with tempfile.TemporaryDirectory(prefix="drdrill-busy-") as folder:
        load_before = os.getloadavg()[0]
        with hogs(hog_count):
            started = time.monotonic()
            done = subprocess.run(
                ["./dev.sh", "drill", "--dr-report-dir", folder, "-p", "no:cacheprovider", *extra],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            wall = time.monotonic() - started
            load_after = os.getloadavg()[0]
        out = done.stdout + done.stderr
        verdict = VERDICT.search(out)
        pytest_time = PYTEST_TIME.findall(done.stdout)
        return {
            "hogs": hog_count,
            "exit": done.returncode,
            "verdict": verdict.group(0) if verdict else "(no verdict line)",
            "wall_s": round(wall, 1),
            "pytest_s": float(pytest_time[-1]) if pytest_time else None,
            "load_before": round(load_before, 2),
            "load_after": round(load_after, 2),
            "worst_probe_lag_s": _worst_probe_lag(Path(folder)),
        }


def main(argv: list[str] | None = None) -> int:
    """Run the main job beside the hogs (and idle, if asked); print one line a run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="busy processes")
    parser.add_argument("--idle", action="store_true", help="run once without hogs first")
    parser.add_argument("--runs", type=int, default=1, help="runs beside the hogs")
    parser.add_argument("extra", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)
    plan = ([0] if args.idle else []) + [args.hogs] * args.runs
    failed = 0
    print(f"cores: {os.cpu_count()}; runs: {len(plan)} (hogs: {plan})", flush=True)
    for hog_count in plan:
        result = run_main_job(hog_count, args.extra)
        failed += result["exit"] != 0
        print(json.dumps(result, ensure_ascii=False), flush=True)
    print(f"{len(plan) - failed} of {len(plan)} runs exited 0")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
