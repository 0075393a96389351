"""A drill run leaves a sandbox it found running at its baseline, or says it did not.

A user's sandbox (``drdrill sandbox up``, block 15, a short temporary folder) is drilled with
``pytest suites -k``: two region failovers, the second of which resets the stack the first left
on DR. The run ends failed over; at its end the sandbox target restores the baseline, leaves the
sandbox running (it is the user's, reset or not) and says so in one line. A restore that fails
is a one-line warning, and the sandbox is left as it was.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.sandbox.sandbox_project import (
    ROOT,
    SANDBOX_MARKS,
    drdrill_cli,
    short_folder,
    write_config,
)

from drdrill.config import load_config
from drdrill.sandbox import control
from drdrill.sandbox.control import SandboxError
from drdrill.targets.sandbox import SandboxTarget

BLOCK = 15
#: the drills the run selects: each fails over; the second finds the stack on DR and resets it
SELECTION = "test_region_failover and (automated or lambda)"
RESTORED = "drdrill: sandbox restored to its baseline after the run: "

pytestmark = SANDBOX_MARKS


@pytest.fixture(scope="module")
def config() -> Iterator[Path]:
    """The project's config; its sandbox brought up as a user does, taken down at the end."""
    with short_folder("drdrill-end-") as folder:
        path = write_config(folder, BLOCK)
        target = SandboxTarget(load_config(path))
        if target.client.alive():
            pytest.fail(f"a sandbox already runs in block {BLOCK}: not ours to drive")
        try:
            up = drdrill_cli("sandbox", "up", "--config", str(path), cwd=folder)
            assert up.returncode == 0, up.stdout + up.stderr
            yield path
        finally:
            control.down(target.settings, target.run_dir)


def test_a_run_that_fails_over_leaves_the_users_sandbox_at_its_baseline(config: Path) -> None:
    folder = config.parent
    args = ["suites", "-k", SELECTION, "-p", "no:cacheprovider", "--dr-config", str(config)]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "--dr-report-dir", str(folder / "reports")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout[-6000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    (report,) = (folder / "reports").glob("*/report.json")
    tests = json.loads(report.read_text())["tests"]
    assert sorted(t["outcome"] for t in tests) == ["passed", "passed"], tests
    # one line, on a line of its own, saying what was restored
    # (the primary region's tasks may still be coming back from the drill's outage: said too)
    (said,) = [line for line in result.stderr.splitlines() if line.startswith("drdrill: ")]
    assert said.startswith(f"{RESTORED}failed back from dr"), output
    # the user's sandbox runs on, at its baseline
    target = SandboxTarget(load_config(config))
    assert target.client.alive(), "the user's sandbox was taken down"
    assert target.baseline_changes() == []
    status = target.status()
    assert status["dns"]["active"] == "primary" and status["failover"] == "primary"
    assert status["regions"]["dr"]["ecs"]["desired"] == 0
    assert status["alarm"]["state"] == "OK" and status["mode"] == "manual"


def test_a_restore_that_fails_is_a_warning_and_leaves_the_sandbox_as_it_was(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = SandboxTarget(load_config(config))
    target.start()  # finds the user's sandbox running
    target.client.call("switch_dns", to="dr")  # clients on DR: not the baseline
    pid = target.status()["pid"]

    def refused() -> None:
        raise SandboxError("the stack would not come up\n(supervisor log tail)")

    monkeypatch.setattr(target, "reset", refused)
    line = target.restore_baseline()  # as a drill session does before it stops the target
    assert line == (
        f"WARNING: the sandbox in block {BLOCK} ({target.run_dir}) is NOT at its "
        "baseline after the run, and restoring it (failed back from dr) failed: SandboxError: "
        "the stack would not come up (supervisor log tail); `drdrill sandbox down` then `up` "
        "resets it"
    )
    assert target.status()["pid"] == pid  # left as it was: running, on DR
    assert target.baseline_changes() == ["failed back from dr"]

    monkeypatch.undo()
    assert f"drdrill: {target.restore_baseline()}" == f"{RESTORED}failed back from dr"
    target.stop()  # a sandbox the target found running stays up
    assert target.client.alive() and target.at_baseline()


def test_after_an_interrupted_run_the_sandbox_is_left_as_it_is(config: Path) -> None:
    # an interrupted run may have stopped mid-failover: its end says what the sandbox needs
    # and leaves the choice (fail back, keeping what DR took, or reset) to a person
    target = SandboxTarget(load_config(config))
    target.start()  # finds the user's sandbox running
    target.client.call("switch_dns", to="dr")
    line = target.restore_baseline(reset=False)
    assert line is not None and line.startswith(
        f"WARNING: the sandbox in block {BLOCK} ({target.run_dir}) is left as the interrupted "
        "run left it"
    ), line
    assert "not at its baseline: failed back from dr;" in line
    assert target.baseline_changes() == ["failed back from dr"]
    assert f"drdrill: {target.restore_baseline()}" == f"{RESTORED}failed back from dr"
    assert target.at_baseline()
