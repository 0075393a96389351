"""The region failover and failback drills through ``--dr-target aws`` against the stack in
moto: the AWS target now has every capability they ask for, so what keeps them from running on
an emulator is only that nothing recovers there (the ``stack`` fixture's reason), never a
missing capability."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from drdrill.sandbox.aws.provision import ProvisionedStack

ROOT = Path(__file__).resolve().parents[3]
DRILLS = (
    "test_region_failover[automated]",
    "test_region_failover[script]",
    "test_region_failover[lambda]",
    "test_failback_after_failover",
)


def test_failover_drills_skip_for_the_emulators_limits_not_a_capability(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    settings = stack.settings.model_dump(mode="json", exclude_none=True)
    settings["scripts"] = {"failover": "./failover.sh", "failback": "./failback.sh"}
    config = tmp_path / "drdrill.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "runbook": str(ROOT / "docs" / "runbook.md"),
                "target": "aws",
                "journal": str(tmp_path / "journal.jsonl"),
                "report_dir": str(tmp_path / "reports"),
                "targets": {"aws": settings},
            }
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "suites/test_region_failover.py",
            "suites/test_failback.py",
            "-p",
            "no:cacheprovider",
            "-v",
            "-rs",
            "--dr-config",
            str(config),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]
    for drill in DRILLS:
        line = re.search(rf"::{re.escape(drill)} (\w+)", out)
        assert line is not None and line.group(1) == "SKIPPED", (drill, out[-3000:])
    reasons = [line for line in out.splitlines() if re.match(r"SKIPPED \[\d+\] ", line)]
    assert reasons and all("an AWS API emulator does not recover anything" in r for r in reasons)
    assert "lacks the capability" not in out
