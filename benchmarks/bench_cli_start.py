"""Start-up of the ``drdrill`` command: wall and CPU time of ``--help`` and ``objectives``.

Run: ``.venv/bin/python benchmarks/bench_cli_start.py [--runs 10] [--src DIR]``, from the
repository root (``objectives`` reads ``docs/runbook.md``). Each command runs ``--runs`` times
as a subprocess after one untimed warm-up run (which writes the bytecode caches); the CPU time
of a run is the growth of ``getrusage(RUSAGE_CHILDREN)`` (user + system) across it. ``python -c
pass`` is the floor: the interpreter's own start-up, which no change to drdrill can go under.

``--src DIR`` puts ``DIR`` first on ``PYTHONPATH``, so that another version of the package can
be timed with the same interpreter, e.g. the one before a change:
``git archive HEAD~1 src | tar -x -C /tmp/before`` then ``--src /tmp/before/src``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the console script next to this interpreter, as a user runs it
DRDRILL = str(Path(sys.executable).parent / "drdrill")
COMMANDS: dict[str, list[str]] = {
    "python -c pass (floor)": [sys.executable, "-c", "pass"],
    "drdrill --help": [DRDRILL, "--help"],
    "drdrill objectives docs/runbook.md": [DRDRILL, "objectives", "docs/runbook.md"],
}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(
    argv: list[str], runs: int, env: dict[str, str]
) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``runs`` runs of ``argv``, after one untimed warm-up run."""
    subprocess.run(argv, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(runs):
        cpu_before = _children_cpu_s()
        started = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
        cpus.append(_children_cpu_s() - cpu_before)
    return walls, cpus


def main() -> None:
    """Time each command and print one line each, with the load average before and after."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs a command (default 10)")
    parser.add_argument("--src", type=Path, help="time the drdrill package under this folder")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.src is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(args.src.resolve()), env.get("PYTHONPATH")) if p
        )
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, runs {args.runs}")
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"{'command':36} {'wall median':>12} {'wall min':>9} {'CPU median':>11} {'CPU min':>8}")
    for name, argv in COMMANDS.items():
        walls, cpus = time_command(argv, args.runs, env)
        print(
            f"{name:36} {statistics.median(walls) * 1000:9.1f} ms {min(walls) * 1000:6.1f} ms "
            f"{statistics.median(cpus) * 1000:8.1f} ms {min(cpus) * 1000:5.1f} ms"
        )
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
