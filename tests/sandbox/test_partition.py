"""The network between the regions, end to end: a partition on a running sandbox, a region
cut off from its clients, and the failover across a partition that loses acknowledged writes,
counted exactly against the old primary's own binary log over ten runs.

The sandbox (block 11, its own short folder) has the default link: 25 ms one way between the
regions (drdrill.sandbox.link). The writer writes 200 markers a second through the app.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.sandbox.sandbox_project import run_drill_file, short_folder, write_config

from drdrill.config import load_config
from drdrill.faults import KINDS
from drdrill.faults.base import FaultInjector, recover
from drdrill.faults.journal import Journal
from drdrill.sandbox import control
from drdrill.sandbox.control import SandboxError
from drdrill.sandbox.haproxy import unavailable_reason as haproxy_missing
from drdrill.sandbox.mariadb import unavailable_reason as mariadb_missing
from drdrill.targets.sandbox import SandboxTarget

BLOCK = 11
#: failovers across a partition, each counted against the truth
RUNS = 10
WRITER_HZ = 200

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(mariadb_missing() or haproxy_missing()),
        reason=f"{mariadb_missing() or haproxy_missing()} (CI installs mariadb-server and haproxy)",
    ),
]


@pytest.fixture(scope="module")
def project() -> Iterator[Path]:
    """The drill project's folder; the sandbox in it is taken down at the end."""
    with short_folder("drdrill-part-") as folder:
        config = write_config(folder, BLOCK, writer_hz=WRITER_HZ)
        try:
            yield folder
        finally:
            target = SandboxTarget(load_config(config))
            control.down(target.settings, target.run_dir)


@pytest.fixture(scope="module")
def stack(project: Path) -> SandboxTarget:
    target = SandboxTarget(load_config(project / "drdrill.yaml"))
    if target.client.alive():
        pytest.fail(f"a sandbox already runs in block {BLOCK}: not ours to drive")
    target.start()
    return target


def wait_for(what: str, found: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = found()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)


def _insert(stack: SandboxTarget, run: str, ids: range) -> None:
    """Markers written on the primary directly (committed there: an ack is a commit)."""
    with stack._db("primary") as conn, conn.cursor() as cur:
        assert conn.ssl is False  # the sandbox's databases serve none (sandbox.dbclient)
        cur.execute(
            "CREATE TABLE IF NOT EXISTS drdrill_markers (run_id VARCHAR(64) NOT NULL, "
            "marker_id BIGINT NOT NULL, sent_utc DOUBLE NOT NULL, PRIMARY KEY (run_id, marker_id))"
        )
        for i in ids:
            cur.execute("INSERT INTO drdrill_markers VALUES (%s, %s, %s)", (run, i, time.time()))
        conn.commit()


def _status_text(project: Path) -> str:
    """What ``drdrill sandbox status`` prints for the project's sandbox."""
    result = subprocess.run(
        [sys.executable, "-m", "drdrill.cli", "sandbox", "status"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_a_partition_holds_replication_and_its_heal_delivers(
    stack: SandboxTarget, project: Path, tmp_path: Path
) -> None:
    stack.ensure_baseline()
    run = f"part-{uuid.uuid4().hex[:8]}"
    _insert(stack, run, range(1, 11))
    wait_for("replicated", lambda: stack.marker_ids_in("dr", run) == set(range(1, 11)))
    link = stack.status()["link"]
    assert link["latency_ms"] == 25.0 and link["routes"]["dr-to-primary"]["connections"] >= 1

    journal = Journal(tmp_path / "journal.jsonl")
    asked = time.monotonic()
    FaultInjector(journal).inject(stack.partition_regions())
    [entry] = journal.open_entries()  # its undo journaled before it acted
    assert entry.kind == "sandbox.partition_regions"
    assert not stack.at_baseline()
    _insert(stack, run, range(11, 21))  # the primary keeps taking writes
    time.sleep(1.0)
    assert stack.marker_ids_in("dr", run) == set(range(1, 11))  # nothing crossed
    status = stack.status()
    assert status["link"]["partitioned"] is True
    assert status["regions"]["dr"]["rds"]["replication"]["io"] is True  # it cannot tell yet
    assert status["split_brain"] is False  # the replica is read-only still
    assert "  link between the regions: PARTITIONED; 25 ms one way\n" in _status_text(project)

    # the manual script refuses to promote DR while the primary still takes writes
    with pytest.raises(SandboxError) as refused:
        stack.run_script("failover.sh", "--yes")
    assert "still takes writes" in str(refused.value) and "split brain" in str(refused.value)
    assert stack.status()["regions"]["dr"]["rds"]["read_only"] is True  # nothing promoted

    # a killed run's partition: recover heals it from the journal
    [outcome] = recover(journal, include_live=True, kinds=KINDS)
    assert outcome.ok and outcome.note == "link healed", outcome.line()
    assert "  link between the regions: joined; 25 ms one way\n" in _status_text(project)
    wait_for("held writes delivered", lambda: stack.marker_ids_in("dr", run) == set(range(1, 21)))
    assert stack.at_baseline()
    stack.flush_truth()
    events = [e.event for e in stack.truth_since(asked) if e.event.startswith("link_")]
    assert events == ["link_partitioned", "link_healed"]


def test_a_degraded_link_is_slower_and_its_revert_restores_it(stack: SandboxTarget) -> None:
    stack.ensure_baseline()
    fault = stack.degrade_link(latency_ms=400)
    fault.inject()
    try:
        run = f"slow-{uuid.uuid4().hex[:8]}"
        _insert(stack, run, range(1, 2))
        committed = time.monotonic()
        wait_for("replicated", lambda: stack.marker_ids_in("dr", run) == {1}, timeout=10)
        # one crossing of 400 ms at least between the commit and the replica having it
        assert time.monotonic() - committed >= 0.4 - 0.01
        assert stack.status()["link"]["latency_ms"] == 400.0
    finally:
        assert fault.revert().note == "link back to 25 ms one way"
    assert stack.at_baseline()


def _answers(address: str) -> bool:
    """Whether an HTTP request to ``host:port`` gets any answer within a second."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1.0) as conn:
            conn.sendall(b"GET /health-simple.php HTTP/1.0\r\n\r\n")
            return conn.recv(16).startswith(b"HTTP/1.")
    except OSError:  # a timeout, a reset
        return False


def test_a_region_cut_off_from_its_clients_runs_on_and_raises_the_alarm(
    stack: SandboxTarget, tmp_path: Path
) -> None:
    stack.ensure_baseline()
    lb = stack.status()["regions"]["primary"]["alb"]["address"]
    assert _answers(lb)
    journal = Journal(tmp_path / "journal.jsonl")
    asked = time.monotonic()
    FaultInjector(journal).inject(stack.cut_off_clients("primary"))
    assert not _answers(lb)  # no answer, though the balancer and its tasks are fine
    status = stack.status()
    assert status["regions"]["primary"]["alb"]["cut_off"] is True
    assert status["regions"]["primary"]["alb"]["healthy"] == 2  # its own checks pass
    assert not stack.at_baseline()
    # the alarm checks from outside the region: it sees the region gone
    wait_for("the alarm", lambda: stack.status()["alarm"]["state"] == "ALARM")
    # the region runs on, and its link to DR too: the primary's writes still replicate
    run = f"cut-{uuid.uuid4().hex[:8]}"
    _insert(stack, run, range(1, 6))
    wait_for("replicated", lambda: stack.marker_ids_in("dr", run) == set(range(1, 6)))

    [outcome] = recover(journal, include_live=True, kinds=KINDS)
    assert outcome.ok and outcome.note == "clients reach primary again", outcome.line()
    assert _answers(lb)
    wait_for("the baseline", stack.at_baseline)
    stack.flush_truth()
    events = [e.event for e in stack.truth_since(asked) if e.event.startswith("clients_")]
    assert events == ["clients_cut_off", "clients_rejoined"]


PARTITION_DRILL = """
import json, time
import pytest
from drdrill.measure import Measurement
from drdrill.observe import poll_until

@pytest.mark.drill(targets=["sandbox"], phases=["Database"])
@pytest.mark.parametrize("run", range(RUNS))
def test_failover_with_the_regions_partitioned(run, stack, writer, inject, timeline, measure):
    stack.set_mode("manual")
    writer.start()
    time.sleep(1.0)
    inject(stack.partition_regions())  # both regions run on; the primary keeps taking writes
    time.sleep(0.5)
    since = time.monotonic()
    assert stack.invoke_dr({"trigger": "manual", "reason": "disaster_recovery"})["status"] == (
        "completed"
    )
    dr = stack.region_ip("dr")
    poll_until(timeline, "dns_answers_dr", lambda: stack.dns_answer() == dr, timeout_s=60)
    split_brain = stack.status()["split_brain"]
    time.sleep(3.0)  # the writer's cached answer for the primary expires (TTL 2 s)
    rpo = writer.verify()
    measure.record("Database", Measurement(rpo.data_loss_window_s), kind="rpo")
    log = writer.stop()
    # the truth: what the old primary committed after the GTID the promoted replica had
    # applied, from the old primary's own binary log
    stack.flush_truth()
    [writable] = stack.truth_since(since, "replica_writable")
    applied = writable.attrs["applied"]
    committed = stack.markers_committed_after("primary", applied, writer.run_id)
    with open(f"truth-{run}.json", "w") as out:
        json.dump({
            "applied": applied,
            "committed_after": sorted(committed),
            "acked": sorted(r.marker_id for r in log.records if r.acknowledged),
            "promoted": sorted(stack.marker_ids_in("dr", writer.run_id)),
            "split_brain": split_brain,
        }, out)
    measure.verify()
"""


def test_a_failover_across_a_partition_loses_writes_counted_exactly(project: Path) -> None:
    drill = project / "test_partition_drill.py"
    drill.write_text(PARTITION_DRILL.replace("range(RUNS)", f"range({RUNS})"))
    reports = project / "reports"
    result = run_drill_file(project, drill, project / "drdrill.yaml", reports, timeout=900)
    output = result.stdout[-4000:] + result.stderr[-2000:]
    (report_path,) = reports.glob("*/report.json")
    report = json.loads(report_path.read_text())
    tests = sorted(report["tests"], key=lambda t: int(t["nodeid"].rsplit("[", 1)[1][:-1]))
    assert len(tests) == RUNS, output
    lines = []
    for run, test in enumerate(tests):
        truth = json.loads((project / f"truth-{run}.json").read_text())
        truly_lost = sorted(set(truth["committed_after"]) & set(truth["acked"]))
        (rpo,) = [r for r in report["rpo"] if r["test"] == test["nodeid"]]
        lines.append(
            f"run {run}: {rpo['sent']} sent, {rpo['acknowledged']} acknowledged, "
            f"{rpo['lost_acknowledged']} lost "
            f"by the drill, {len(truly_lost)} by the binary log (after {truth['applied']})"
        )
        assert truly_lost, f"run {run}: the partition lost nothing: {truth}"
        assert rpo["lost_ids"] == truly_lost, (run, rpo, truly_lost)
        assert not set(truly_lost) & set(truth["promoted"])
        assert truth["split_brain"] is True, f"run {run}: the old primary was not writable"
        assert test["outcome"] == "failed", test  # seconds of writes lost: over the RPO
        assert "data loss 'Database' measured" in (test["message"] or ""), test
    print("\n".join(lines))
    assert result.returncode == 1, output
    assert report["run"]["verdict"] == "failed"
