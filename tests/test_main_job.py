"""The local demo drill (suites/, ``--dr-target local``), checked against what we did.

The fault's own events are the ground truth here: the app is frozen between the
``fault_injected`` and ``fault_reverted`` actions, whose times are exact.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a real drill in a subprocess


def test_demo_drill_measures_the_freeze_it_caused(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "suites/test_local_demo.py",
            "-p",
            "no:cacheprovider",
            "--dr-target",
            "local",
            "--dr-report-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout, result.stdout[-2000:]
    (report_path,) = tmp_path.glob("*/report.json")
    report = json.loads(report_path.read_text())
    events = {e["name"]: e for e in report["events"]}
    frozen_s = (
        datetime.fromisoformat(events["fault_reverted"]["utc"])
        - datetime.fromisoformat(events["fault_injected"]["utc"])
    ).total_seconds()
    interval = 0.05  # drdrill.yaml: probes.interval
    assert report["outages"], "no outage observed"
    for outage in report["outages"]:
        # a frozen app answers nothing: each endpoint is out for the freeze, within the
        # outage's own bounds (a hang is known to have started only by the time its request
        # timed out) plus 50 ms for scheduling on a busy machine
        bound = outage["duration_uncertainty_s"]
        assert bound is not None and bound <= 2 * interval + 0.5 + 0.05, outage
        assert abs(outage["duration_s"] - frozen_s) <= bound + 0.05, (outage, frozen_s)
    (total,) = [p for p in report["phases"] if p["name"] == "Total RTO"]
    assert total["status"] == "met" and total["target_s"] == 900 * 0.02  # drdrill.yaml scale
    assert (report["rpo"][0]["acknowledged"] > 0) and report["rpo"][0]["lost_acknowledged"] == 0
    assert (tmp_path / report_path.parent.name / "report.md").exists()
