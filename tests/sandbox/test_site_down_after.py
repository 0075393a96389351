"""A drill that ends with the site down fails, whatever it measured before.

The drill scales the primary service to zero outside any fault (nothing reverts it): its faults
are reverted at teardown, yet the public name serves nothing, so the ``stack`` fixture fails the
drill ("the drill ended with the site down") and the run's verdict is failed. Its own sandbox
(block 10, a short temporary folder).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.sandbox.sandbox_project import run_drill_file, short_folder, write_config

from drdrill.sandbox.haproxy import unavailable_reason as haproxy_missing
from drdrill.sandbox.mariadb import unavailable_reason as mariadb_missing

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
    """A short temporary folder (HAProxy's socket paths)."""
    with short_folder("drdrill-down-") as path:
        yield path


def test_a_drill_that_leaves_the_site_down_fails(folder: Path) -> None:
    config = write_config(folder, block=10, extra="drills: {restore_timeout: 5s}")
    (folder / "test_down.py").write_text(DRILL)
    result = run_drill_file(folder, folder / "test_down.py", config)
    assert result.returncode == 1, result.stdout[-4000:] + result.stderr[-2000:]
    (report_path,) = (folder / "reports").glob("*/report.json")
    report = json.loads(report_path.read_text())
    (test,) = report["tests"]
    assert test["outcome"] == "error", test
    assert "the drill ended with the site down" in test["message"], test
    assert report["run"]["verdict"] == "failed"
