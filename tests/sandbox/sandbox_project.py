"""A drill project of its own for the tests that run the sandbox end to end.

Each test takes a block of its own (ports and loopback addresses) and a short temporary folder:
HAProxy refuses unix socket paths over 97 characters, which pytest's tmp_path can exceed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from drdrill.sandbox.haproxy import unavailable_reason as haproxy_missing
from drdrill.sandbox.mariadb import unavailable_reason as mariadb_missing
from drdrill.timeline import PHASES

ROOT = Path(__file__).resolve().parents[2]
#: the marks of a module whose tests run a whole sandbox (real MariaDB and HAProxy processes)
SANDBOX_MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(mariadb_missing() or haproxy_missing()),
        reason=f"{mariadb_missing() or haproxy_missing()} (CI installs mariadb-server and haproxy)",
    ),
]
#: the probes' sampling interval in these projects (seconds)
INTERVAL = 0.05
#: how far a figure may be off its ground truth: one probe interval + 50 ms for scheduling on a
#: busy 2-core machine (the issue's aim), or inside the interval the figure states; either way
#: widened by the truth's own uncertainty (``truth_uncertainty`` in the report: 0 where both
#: ends are logged moments, half the observer's bracket where its return to pass ends the
#: phase). A database reboot's is wide: a restarting mariadbd makes requests hang and pass by
#: turns, and the observer's return to pass was bracketed 0.2 to 0.76 s wide under two busy
#: loops; held to a fixed 0.3 s instead, its Total RTO was off by up to -295 ms
TOLERANCE_S = INTERVAL + 0.05


#: the figures the failover and failback drills must put beside a ground truth
FAILOVER_WITH_TRUTH: dict[str, tuple[str, ...]] = {
    "test_region_failover": (*PHASES, "client downtime"),
    "test_failback_after_failover": ("failback: primary writable", "failback: clients on primary"),
}


#: the widest interval (± seconds) a figure may state and still count as agreeing with its
#: truth by holding it: a wider one would agree with anything
MAX_STATED_UNCERTAINTY_S = 0.5


def vague_truth(phase: dict[str, Any]) -> bool:
    """Whether a figure's truth is itself wider than :data:`MAX_STATED_UNCERTAINTY_S`: the
    observer saw the DR balancer flap after its first pass (ground_truth.failover_truths), so
    it says only that the balancer was restored somewhere in a span of seconds. Such a truth
    would agree with anything: the tests print it and do not count it, and cap how many."""
    return float(phase.get("truth_uncertainty") or 0.0) > MAX_STATED_UNCERTAINTY_S


def truth_error(phase: dict[str, Any], tolerance_s: float) -> float | None:
    """How far a report's figure is off its ground truth, beyond what it may be: ``None`` when
    it agrees, otherwise measured - truth (seconds).

    A figure agrees when it is within ``tolerance_s`` of the truth, or when the interval it
    states (value ± uncertainty, at most :data:`MAX_STATED_UNCERTAINTY_S` wide) holds the
    truth; a truth that is itself uncertain (``truth_uncertainty``, at most as wide) widens both
    by its own half-width. The second matters where a phase may be shorter than the probes can
    resolve: a Health Verification whose checks pass on the first samples after the targets
    are healthy is reported as the midpoint of ``[0, high]`` (a phase cannot be negative),
    ± half of it, while its truth is 0 (the observer passed before the last target was UP).
    """
    error = float(phase["measured"]) - float(phase["truth_s"])
    stated = float(phase.get("uncertainty") or 0.0)
    spread = float(phase.get("truth_uncertainty") or 0.0)
    if spread > MAX_STATED_UNCERTAINTY_S:
        return error  # a truth that vague agrees with anything
    if abs(error) <= tolerance_s + spread:
        return None
    if stated <= MAX_STATED_UNCERTAINTY_S and abs(error) <= stated + spread:
        return None
    return error


def drdrill_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``drdrill`` run as a user runs it (``python -m drdrill.cli`` of this interpreter), its
    output kept; the caller judges its exit status."""
    return subprocess.run(
        [sys.executable, "-m", "drdrill.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_drill_file(
    folder: Path, drill: Path, config: Path, report_dir: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a drill file of a project in ``folder`` with pytest and drdrill's drill fixtures, as
    a team's own project runs (its root, its config; reports in ``report_dir`` if given)."""
    args = [sys.executable, "-m", "pytest", str(drill), "-p", "no:cacheprovider"]
    args += ["-p", "fixtures.drills", "--rootdir", str(folder), "--dr-config", str(config)]
    if report_dir is not None:
        args += ["--dr-report-dir", str(report_dir)]
    return subprocess.run(
        args,
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextmanager
def short_folder(prefix: str) -> Iterator[Path]:
    """A temporary folder under /tmp with a short path, removed afterwards (kept, for a look
    at its logs and reports, when ``DRDRILL_KEEP_FOLDERS`` is set)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        if os.environ.get("DRDRILL_KEEP_FOLDERS"):
            print(f"kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def write_config(
    folder: Path, block: int, extra: str = "", sandbox_extra: str = "", writer_hz: float = 20
) -> Path:
    """``drdrill.yaml`` for the sandbox in ``block``, its run folder, journal and reports in
    ``folder``; ``extra`` adds top-level keys (e.g. ``drills: {oncall_delay: 4s}``),
    ``sandbox_extra`` keys of ``targets.sandbox`` (e.g. ``aws_api: true``); the RPO writer
    writes ``writer_hz`` markers a second."""
    path = folder / "drdrill.yaml"
    path.write_text(
        f"""runbook: {ROOT / "docs" / "runbook.md"}
target: sandbox
objectives: {{scale: 0.02}}
probes: {{interval: {INTERVAL}, timeout: 0.5, recovery_samples: 3}}
writer: {{sink: http, rate_hz: {writer_hz}, timeout: 1}}
journal: {folder / "journal.jsonl"}
report_dir: {folder / "reports"}
{extra}
targets:
  sandbox:
    run_dir: {folder / "sandbox"}
    block: {block}
    {sandbox_extra}
"""
    )
    return path


def run_suites(
    config: Path, report_dir: Path, *paths: str, timeout: float = 600
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``pytest <paths>`` of the repository's suites with ``config``, reports in
    ``report_dir``, no ``AWS_`` variable of this process leaking in; the run and its one
    report.json."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *paths,
            "-p",
            "no:cacheprovider",
            "--dr-config",
            str(config),
            "--dr-report-dir",
            str(report_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
    )
    reports = list(report_dir.glob("*/report.json"))
    assert len(reports) == 1, result.stdout[-4000:] + result.stderr[-2000:]
    report: dict[str, Any] = json.loads(reports[0].read_text())
    return result, report
