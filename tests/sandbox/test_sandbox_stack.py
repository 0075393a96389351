"""The whole sandbox as users run it: ``drdrill sandbox up|status|down``, a fault, a kill -9
mid-drill and ``drdrill recover``, and the failover drill's figures against the ground truth.

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
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from drdrill.sandbox.haproxy import unavailable_reason as haproxy_missing
from drdrill.sandbox.mariadb import unavailable_reason as mariadb_missing

ROOT = Path(__file__).resolve().parents[2]
DRDRILL = str(Path(sys.executable).parent / "drdrill")
INTERVAL = 0.05  # probes.interval below
#: the failover's figures that the sandbox's independent records give a ground truth for
FAILOVER_PHASES = (
    "Detection",
    "Decision",
    "RDS Promotion",
    "ECS Scale-up",
    "Health Verification",
    "DNS Update",
    "Total RTO",
    "client downtime",
)

pytestmark = pytest.mark.skipif(
    bool(mariadb_missing() or haproxy_missing()),
    reason=f"{mariadb_missing() or haproxy_missing()} (CI installs mariadb-server and haproxy)",
)


def _config(tmp: Path, block: int) -> Path:
    path = tmp / "drdrill.yaml"
    path.write_text(
        f"""runbook: {ROOT / "docs" / "runbook.md"}
target: sandbox
objectives: {{scale: 0.02}}
probes: {{interval: {INTERVAL}, timeout: 0.5, recovery_samples: 3}}
writer: {{sink: http, rate_hz: 20, timeout: 1}}
journal: {tmp / "journal.jsonl"}
report_dir: {tmp / "reports"}
targets:
  sandbox:
    run_dir: {tmp / "sandbox"}
    block: {block}
"""
    )
    return path


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
    config = _config(tmp, block=13)
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
from drdrill.faults.sandbox import RegionDown

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


def test_failover_figures_agree_with_the_ground_truth(stack: Path, tmp_path: Path) -> None:
    """Every failover phase carries the sandbox's ground truth from records the drill does not
    read; Total RTO and client-observed downtime within one probe interval + 50 ms of it; the
    lost acknowledged writes are exactly what the promoted database lacks."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "suites/test_region_failover.py::test_region_failover[automated]",
            "-p",
            "no:cacheprovider",
            "--dr-config",
            str(stack),
            "--dr-report-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    (report_path,) = tmp_path.glob("*/report.json")
    report = json.loads(report_path.read_text())
    phases = {p["name"]: p for p in report["phases"]}
    for name in FAILOVER_PHASES:
        assert phases[name]["truth_s"] is not None, (name, phases[name].get("truth_source"))
        print(
            f"{name}: measured {phases[name]['measured']:.3f} s, "
            f"truth {phases[name]['truth_s']:.3f} s ({phases[name]['truth_source']})"
        )
    tolerance = INTERVAL + 0.05
    for name in ("Total RTO", "client downtime"):
        measured, truth = phases[name]["measured"], phases[name]["truth_s"]
        assert abs(measured - truth) <= tolerance, (name, measured, truth)

    (rpo,) = report["rpo"]
    import pymysql

    ip, port = _status(stack)["regions"]["dr"]["rds"]["address"].split(":")
    with (
        pymysql.connect(
            host=ip, port=int(port), user="app", password="drdrill-app", database="app"
        ) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT COUNT(*) FROM drdrill_markers WHERE run_id = %s", (rpo["run"],))
        present = int(cur.fetchone()[0])
    assert present == rpo["acknowledged"] - rpo["lost_acknowledged"] + rpo["unacknowledged_landed"]
    # times in the report are real: the fault came before the service was restored
    events = report["events"]
    fault = next(e for e in events if e["name"] == "fault_injected")
    restored = next(e for e in events if e["name"] == "service_restored")
    assert datetime.fromisoformat(fault["utc"]) <= datetime.fromisoformat(restored["utc"])


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
