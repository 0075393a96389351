"""The whole sandbox as users run it: ``drdrill sandbox up|status|down``, a fault, a kill -9
mid-drill and ``drdrill recover`` (the drills' figures against the ground truth are in
test_truth_agreement.py).

It runs in its own port block and run folder, so a developer's sandbox is left alone.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from tests.sandbox.sandbox_project import ROOT, write_config

from drdrill.sandbox.control import SandboxClient
from drdrill.sandbox.haproxy import unavailable_reason as haproxy_missing
from drdrill.sandbox.mariadb import unavailable_reason as mariadb_missing
from drdrill.sandbox.truth import TruthLog
from drdrill.targets.sandbox.faults import RebootDb

DRDRILL = str(Path(sys.executable).parent / "drdrill")
pytestmark = pytest.mark.skipif(
    bool(mariadb_missing() or haproxy_missing()),
    reason=f"{mariadb_missing() or haproxy_missing()} (CI installs mariadb-server and haproxy)",
)


def _drdrill(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DRDRILL, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def _status(config: Path) -> dict[str, Any]:
    result = _drdrill("sandbox", "status", "--json", "--config", str(config))
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def _listening(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=0.5):
            return True
    except OSError:
        return False


def _from_run_dir(run_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if (
                str(run_dir) in " ".join(proc.info["cmdline"] or [])
                and proc.info["status"] != "zombie"
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("sandbox")
    # a rebooted database stays down 0.5 s, as in drdrill.yaml
    config = write_config(tmp, block=13, sandbox_extra="timings: {db_reboot_downtime: 0.5}")
    up = _drdrill("sandbox", "up", "--config", str(config))
    assert up.returncode == 0, up.stdout + up.stderr
    yield config
    _drdrill("sandbox", "down", "--config", str(config))


def test_status_lists_every_component_and_up_is_idempotent(stack: Path) -> None:
    status = _status(stack)
    primary, dr = status["regions"]["primary"], status["regions"]["dr"]
    assert primary["rds"]["address"].startswith("127.0.1.") and dr["rds"]["address"].startswith(
        "127.0.2."
    )
    assert primary["rds"]["running"] and dr["rds"]["read_only"]
    assert dr["rds"]["replication"] == {"io": True, "sql": True}
    assert primary["alb"]["healthy"] == 2 and primary["ecs"]["running"] == 2
    assert dr["ecs"] == {"desired": 0, "running": 0, "tasks": []}
    assert status["dns"]["active"] == "primary" and status["alarm"]["state"] == "OK"
    again = _drdrill("sandbox", "up", "--config", str(stack))
    assert again.returncode == 0
    assert _status(stack)["pid"] == status["pid"]


def test_kill_9_during_region_outage_then_recover(stack: Path, tmp_path: Path) -> None:
    """A drill killed with SIGKILL leaves the primary region down; recover brings it back."""
    status = _status(stack)
    drill = tmp_path / "test_hang.py"
    drill.write_text(
        f"""
import time
from pathlib import Path
from drdrill.targets.sandbox.faults import RegionDown

def test_region_down_and_hang(inject):
    inject(RegionDown({int(status["control"].rsplit(":", 1)[1])}, "primary", "kill"))
    Path("{tmp_path / "down.flag"}").write_text("1")
    time.sleep(120)
"""
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            str(drill),
            "-p",
            "no:cacheprovider",
            "--dr-config",
            str(stack),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "down.flag").exists():
            assert time.monotonic() < deadline and proc.poll() is None, "drill never took it down"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    down = _status(stack)["regions"]["primary"]
    assert down["state"] == "down (kill)" and not down["rds"]["running"]

    recover = _drdrill("recover", "--journal", str(stack.parent / "journal.jsonl"))
    assert recover.returncode == 0, recover.stdout + recover.stderr
    assert "take region primary down" in recover.stdout
    deadline = time.monotonic() + 60
    while True:
        primary = _status(stack)["regions"]["primary"]
        if primary["state"] == "up" and primary["alb"]["healthy"] == 2:
            break
        assert time.monotonic() < deadline, f"primary region not healthy again: {primary}"
        time.sleep(0.2)
    assert primary["rds"]["running"] and primary["ecs"]["running"] == 2


def test_a_reboot_returns_at_once_and_the_database_reboots_in_the_background(
    stack: Path,
) -> None:
    """The reboot fault answers as RDS does: at once, then the instance reboots. Its call is
    short (so ``fault_injected``, the request, is known to within it, not to within the whole
    reboot), ``status`` says ``rebooting`` until the start is done, and the revert waits for
    it rather than starting a second database."""
    status = _status(stack)
    port = int(status["control"].rsplit(":", 1)[1])
    fault = RebootDb(port, "primary", "clean")
    truth = TruthLog(Path(status["run_dir"]) / "truth.jsonl")
    before = time.monotonic()
    fault.inject()
    returned = time.monotonic()
    rds = SandboxClient(port).call("status", light=True)["regions"]["primary"]["rds"]
    assert rds["rebooting"], rds
    assert fault.revert().note == "database running"
    after = _status(stack)["regions"]["primary"]["rds"]
    assert after["running"] and not after["rebooting"], after
    events = {e.event: e.mono for e in truth.since(before) if e.component == "rds-primary"}
    assert before <= events["db_reboot_started"] < events["db_down"], events
    # the 0.5 s downtime and the start came after the call returned
    assert events["db_available"] >= returned + 0.5, events
    assert events["db_available"] - events["db_down"] >= 0.5, events


def test_down_leaves_no_process_and_no_port(stack: Path) -> None:
    status = _status(stack)
    run_dir = Path(status["run_dir"])
    addresses = [status["control"]] + [
        r[part]["address"] for r in status["regions"].values() for part in ("rds", "alb")
    ]
    tasks = [t["pid"] for r in status["regions"].values() for t in r["ecs"]["tasks"]]
    down = _drdrill("sandbox", "down", "--config", str(stack))
    assert down.returncode == 0, down.stderr
    assert _from_run_dir(run_dir) == []
    for pid in tasks:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    for address in addresses:
        ip, port = address.rsplit(":", 1)
        assert not _listening(ip, int(port)), f"{address} still listening"
    assert _drdrill("sandbox", "status", "--config", str(stack)).returncode == 3
