"""A drill that ends with the site down fails, whatever it measured before.

The drill scales the primary service to zero outside any fault (nothing reverts it): its faults
are reverted at teardown, yet the public name serves nothing, so the ``stack`` fixture fails the
drill ("the drill ended with the site down") and the run's verdict is failed. Its own sandbox
(block 10, a short temporary folder).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from drdrill.sandbox.haproxy import unavailable_reason as haproxy_missing
from drdrill.sandbox.mariadb import unavailable_reason as mariadb_missing

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(mariadb_missing() or haproxy_missing()),
        reason=f"{mariadb_missing() or haproxy_missing()} (CI installs mariadb-server and haproxy)",
    ),
]

DRILL = """
import time
import pytest

@pytest.mark.drill(targets=["sandbox"])
def test_leaves_the_site_down(stack, probes, inject):
    probes.start(stack.endpoints("primary"))
    time.sleep(0.5)
    stack.scale("primary", 0)  # not a fault: no journal, no revert
"""


@pytest.fixture
def folder() -> Iterator[Path]:
    """A short temporary folder: HAProxy refuses unix socket paths over 97 characters."""
    path = Path(tempfile.mkdtemp(prefix="drdrill-down-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_drill_that_leaves_the_site_down_fails(folder: Path) -> None:
    config = folder / "drdrill.yaml"
    config.write_text(
        f"""runbook: {ROOT / "docs" / "runbook.md"}
target: sandbox
objectives: {{scale: 0.02}}
probes: {{interval: 0.05, timeout: 0.5, recovery_samples: 3}}
drills: {{restore_timeout: 5s}}
journal: {folder / "journal.jsonl"}
report_dir: {folder / "reports"}
targets:
  sandbox:
    run_dir: {folder / "sbx"}
    block: 10
"""
    )
    (folder / "test_down.py").write_text(DRILL)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(folder / "test_down.py"),
            "-p",
            "no:cacheprovider",
            "-p",
            "fixtures.drills",
            "--rootdir",
            str(folder),
            "--dr-config",
            str(config),
        ],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout[-4000:] + result.stderr[-2000:]
    (report_path,) = (folder / "reports").glob("*/report.json")
    report = json.loads(report_path.read_text())
    (test,) = report["tests"]
    assert test["outcome"] == "error", test
    assert "the drill ended with the site down" in test["message"], test
    assert report["run"]["verdict"] == "failed"
