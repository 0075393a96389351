"""A drill killed at any point by any signal leaves the stack at its baseline, or named as
needing a failback or a reset (issue 12, part 5).

A region failover drill of a small project runs against a sandbox of the user's own (``drdrill
sandbox up``, block 2, a short temporary folder: a run's own sandbox would go down with a killed
run). It says where it is (``POINT <name>``) after each change it makes: the failover mode set,
the region taken down, DR promoted. The test sends the signal at each point: SIGKILL (then
``drdrill recover``, as a person would), SIGTERM and SIGINT (the drill reverts on its way out).
Afterwards the sandbox is at its baseline, or what it needs is said: by ``drdrill recover``'s
last line, or by the run's end ("left as the interrupted run left it ...").
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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
from drdrill.targets.sandbox import SandboxTarget

pytestmark = SANDBOX_MARKS

BLOCK = 2
POINTS = ("mode", "fault", "promoted")

DRILL = """
import time

import pytest


@pytest.mark.drill(targets=["sandbox"])
def test_failover_killed(stack, probes, inject):
    probes.start()
    inject.change(stack.mode_change("manual"))
    print("POINT mode", flush=True)
    time.sleep(1.0)
    inject(stack.region_down("primary", mode="kill"))
    print("POINT fault", flush=True)
    time.sleep(1.0)
    stack.invoke_dr({"trigger": "manual", "reason": "disaster_recovery"})
    print("POINT promoted", flush=True)
    time.sleep(30)
"""


@pytest.fixture(scope="module")
def project() -> Iterator[tuple[Path, Path]]:
    """The project's folder and config, with the user's sandbox up for the whole module."""
    with short_folder("drdrill-kill-") as folder:
        config = write_config(folder, block=BLOCK)
        (folder / "test_killed.py").write_text(DRILL)
        drdrill_cli("sandbox", "up", "--config", str(config))
        try:
            yield folder, config
        finally:
            drdrill_cli("sandbox", "down", "--config", str(config))


def _run_until(
    folder: Path, config: Path, point: str, sig: int
) -> subprocess.CompletedProcess[str]:
    """Run the drill with plain pytest (-s: its points reach us at once) and send ``sig`` once
    it says it reached ``point``."""
    args = [sys.executable, "-m", "pytest", str(folder / "test_killed.py"), "-s"]
    args += ["-p", "no:cacheprovider", "-p", "fixtures.drills", "--rootdir", str(folder)]
    args += ["--dr-config", str(config), "--dr-progress", "off"]
    proc = subprocess.Popen(
        args,
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,  # each line as the drill prints it: the signal must land at its point
    )
    assert proc.stdout is not None
    seen = []
    while True:
        line = proc.stdout.readline().decode(errors="replace")
        if not line:
            break  # the drill ended before the point: the assertion below says so
        seen.append(line)
        if line.rstrip().endswith(f"POINT {point}"):  # the first after pytest's file name
            proc.send_signal(sig)
            break
    out, err = proc.communicate(timeout=180)
    return subprocess.CompletedProcess(
        args,
        proc.returncode,
        "".join(seen) + out.decode(errors="replace"),
        err.decode(errors="replace"),
    )


def _restore(config: Path) -> None:
    """Back to the baseline for the next case, as a person would: fail back, else reset."""
    target = SandboxTarget(load_config(config))
    status = target.status()
    if status["dns"]["active"] == "dr" or status["failover"] != "primary":
        target.client.call("failback")
    target.ensure_baseline()
    assert target.at_baseline(), target.baseline_changes()


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize(
    "sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["kill", "term", "int"]
)
def test_a_killed_drill_leaves_the_baseline_or_says_what_it_needs(
    project: tuple[Path, Path], point: str, sig: int
) -> None:
    folder, config = project
    run = _run_until(folder, config, point, sig)
    assert f"POINT {point}" in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]
    assert run.returncode != 0, run.stdout[-3000:]  # never "passed" after a signal
    said = run.stderr
    if sig == signal.SIGKILL:
        recovered = drdrill_cli("recover", "--config", str(config), "--force")
        said = recovered.stdout
        assert recovered.returncode in (0, 1), recovered.stdout + recovered.stderr
    target = SandboxTarget(load_config(config))
    status = target.status()
    # nothing a drill changed is left unrecorded: the region is up again and the mode is back
    assert all(r["state"] == "up" for r in status["regions"].values()), status["regions"]
    assert status["mode"] == "manual"
    # the alarm clears and the tasks come back by themselves once the region is up
    deadline = time.monotonic() + 15
    while (changes := target.baseline_changes()) and time.monotonic() < deadline:
        if any(c.startswith("failed back") or "region back up" in c for c in changes):
            break  # a failover stays: no waiting mends it
        time.sleep(0.5)
    if changes:
        # not at the baseline: what it needs is said, in one line
        named = (
            "split brain:" in said
            or "left as the interrupted run left it" in said
            or "sandbox restored to its baseline" in said
        )
        assert named, (changes, json.dumps(status)[:500], said[-2000:])
    if point == "promoted":
        assert changes, "a promoted DR is no baseline"
    _restore(config)
