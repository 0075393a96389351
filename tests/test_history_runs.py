"""Three drill runs appended to the history by the plugin; ``drdrill history`` and ``drdrill
compliance`` show all three (real pytest runs, real commands)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

DRDRILL = str(Path(sys.executable).parent / "drdrill")
RUNBOOK = """# Runbook

## Recovery Time Objectives

| Component | Target RTO | Actual RTO | Notes |
|---|---|---|---|
| **Detection** | 2 minutes | 1-3 minutes | alarms |
"""


def test_three_runs_show_in_history_and_compliance(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makefile(".md", runbook=RUNBOOK)
    pytester.makefile(
        ".yaml",
        drdrill="runbook: runbook.md\ntarget: local\njournal: j.jsonl\nreport_dir: out\n",
    )
    pytester.makeini("[pytest]\ndr_config = drdrill.yaml\n")
    pytester.makepyfile(
        """
        import os

        def test_detection(timeline, measure):
            start = timeline.mark("fault_injected")
            timeline.observe("alarm", start.mono + float(os.environ["DETECT_S"]), 0.5)
            measure.phase("Detection", "fault_injected", "alarm")
        """
    )
    for seconds in ("30", "150", "60"):  # the second run misses its objective
        monkeypatch.setenv("DETECT_S", seconds)
        pytester.runpytest_subprocess()
    db = str(pytester.path / "out" / "history.sqlite")
    history = subprocess.run(
        [DRDRILL, "history", "--db", db, "--json"], capture_output=True, text=True, timeout=60
    )
    assert history.returncode == 0, history.stderr
    text = history.stdout
    data = json.loads(text)
    (detection,) = [t for t in data["objectives"] if t["objective"] == "Detection"]
    assert detection["runs"] == 3
    assert detection["met"] == 2 and detection["missed"] == 1
    month = datetime.now(UTC).strftime("%Y-%m")
    compliance = subprocess.run(
        [DRDRILL, "compliance", "--month", month, "--db", db, "--out", str(pytester.path)],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # the second run missed its objective: the month is not compliant (exit status 1)
    assert compliance.returncode == 1, compliance.stderr
    written = json.loads((pytester.path / f"compliance-{month}.json").read_text())
    assert len(written["runs"]) == 3
    assert [r["verdict"] for r in written["runs"]] == ["passed", "failed", "passed"]
    assert [r["exit_status"] for r in written["runs"]] == [0, 1, 0]
    assert written["summary"]["compliant"] is False
