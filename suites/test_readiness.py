"""Readiness (non-destructive, for the monthly compliance run): is the stack ready to fail over?

Nothing is injected. Every check goes through the target's capabilities, so the same checks run
on the sandbox and on AWS. Host-level checks use pytest-testinfra's ``host`` fixture on the local
backend, where the stack runs on this machine (the sandbox).
"""

from __future__ import annotations

from typing import Any

import pytest

from drdrill.errors import ObjectiveMissed
from drdrill.measure import Measurement, Measurements
from drdrill.objectives import Objectives
from drdrill.probes.lag import ReplicaReadiness
from drdrill.timeline import Timeline


@pytest.fixture
def ready_stack(target: Any) -> Any:
    """The stack; the sandbox is brought to its baseline if a destructive drill changed it."""
    if not isinstance(target, ReplicaReadiness):
        pytest.skip(
            f"target '{target.name}' has no readiness checks (no replication_running/replica_lag)"
        )
    baseline = getattr(target, "ensure_baseline", None)
    if baseline is not None and getattr(target, "cannot_recover", None) is None:
        baseline()
    return target


@pytest.mark.drill(targets=["sandbox", "aws"], destructive=False)
def test_replication_is_running(ready_stack: ReplicaReadiness) -> None:
    """The DR database replicates from the primary (the target says why not)."""
    state = ready_stack.replication_running()
    assert state, f"the DR database does not replicate: {state.reason}"


@pytest.mark.drill(targets=["sandbox", "aws"], destructive=False, phases=["Database"])
def test_replica_lag_within_rpo(
    ready_stack: ReplicaReadiness,
    measure: Measurements,
    objectives: Objectives | None,
    timeline: Timeline,
) -> None:
    """The replica's lag (a heartbeat row in the sandbox, ReplicaLag on AWS) within the RPO.

    Never a skip: a target that cannot give its lag fails with the reason, and a lag known only
    from below (a heartbeat the replica never showed) is a figure, a miss once it is over the RPO.
    """
    row = measure.row_for("rpo", "Database")
    objective = objectives.get("rpo", row) if objectives is not None and row else None
    rpo_s = objective.target_s if objective is not None else None
    reading = ready_stack.replica_lag(timeline, rpo_s)
    if reading.value is None:
        pytest.fail(f"no replica lag: {reading.reason}", pytrace=False)
    if reading.lower_bound_only:
        if rpo_s is None or reading.value <= rpo_s:
            # lag >= a bound within the RPO could still be anything over it: no verdict
            pytest.fail(f"replica lag not measured: {reading.reason}", pytrace=False)
        measured = Measurement(reading.value, 0.0)
    else:
        measured = Measurement(reading.value, reading.uncertainty)
    measure.record("Database", measured, kind="rpo", note=reading.reason)
    try:
        measure.verify()
    except ObjectiveMissed as exc:
        if reading.reason is None:
            raise
        raise ObjectiveMissed(f"{exc}: {reading.reason}") from None


@pytest.mark.drill(targets=["sandbox", "aws"], destructive=False)
def test_dr_region_is_at_pilot_light(ready_stack: Any) -> None:
    """The DR service exists with a desired count of 0 and nothing running."""
    assert ready_stack.desired("dr") == 0
    assert ready_stack.running_tasks("dr") == 0


@pytest.mark.drill(targets=["sandbox", "aws"], destructive=False)
def test_alarm_is_wired_to_notifications(ready_stack: Any) -> None:
    """The health alarm is OK and notifies somebody."""
    assert ready_stack.alarm_state() == "OK"
    assert ready_stack.alarm_notifies(), "the alarm has no notification target"


@pytest.mark.drill(targets=["sandbox", "aws"], destructive=False)
def test_failover_record_points_at_a_healthy_primary(ready_stack: Any) -> None:
    """The failover record's primary side is what answers, and it is healthy."""
    assert ready_stack.primary_record_healthy()


@pytest.mark.drill(targets=["aws"], destructive=False)
def test_static_assets_replicate(ready_stack: Any) -> None:
    """The primary bucket replicates into the DR region (the Static Assets RPO)."""
    assert ready_stack.static_assets_replicated()


@pytest.mark.drill(targets=["sandbox"], destructive=False)
def test_database_and_load_balancer_processes_on_the_host(ready_stack: Any, host: Any) -> None:
    """Host level, through testinfra: mariadbd and haproxy run, their ports listen."""
    assert host.process.filter(comm="mariadbd"), "no mariadbd process"
    assert host.process.filter(comm="haproxy"), "no haproxy process"
    for region in ("primary", "dr"):
        db_ip, db_port = ready_stack.db_address(region)
        assert host.socket(f"tcp://{db_ip}:{db_port}").is_listening, f"{region} db not listening"
    lb_ip, lb_port = ready_stack.region_ip("primary"), ready_stack.lb_port
    assert host.socket(f"tcp://{lb_ip}:{lb_port}").is_listening, "primary LB not listening"
