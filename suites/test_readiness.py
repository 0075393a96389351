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
from drdrill.targets.base import (
    AlarmReadiness,
    DrAlarmReadiness,
    LocalHostStack,
    RecoveryLimited,
    ReplicaReadiness,
    ResettableStack,
    ServiceStack,
    StaticAssetsStack,
    Target,
)
from drdrill.timeline import Timeline


def _lacks(target: Target, capability: str) -> str:
    return f"target '{target.name}' lacks the capability {capability} this check needs"


@pytest.fixture
def ready_target(target: Target) -> Target:
    """The stack; the sandbox is brought to its baseline if a destructive drill changed it."""
    if isinstance(target, ResettableStack) and not (
        isinstance(target, RecoveryLimited) and target.cannot_recover
    ):
        target.ensure_baseline()
    return target


@pytest.fixture
def ready_stack(ready_target: Target) -> ReplicaReadiness:
    """The stack's DR database readiness."""
    if not isinstance(ready_target, ReplicaReadiness):
        pytest.skip(_lacks(ready_target, "ReplicaReadiness"))
    return ready_target


@pytest.fixture
def service_ready(ready_target: Target) -> ServiceStack:
    """The stack's services."""
    if not isinstance(ready_target, ServiceStack):
        pytest.skip(_lacks(ready_target, "ServiceStack"))
    return ready_target


@pytest.fixture
def alarm_ready(ready_target: Target) -> AlarmReadiness:
    """The stack's alarm and failover record."""
    if not isinstance(ready_target, AlarmReadiness):
        pytest.skip(_lacks(ready_target, "AlarmReadiness"))
    return ready_target


@pytest.mark.drill(destructive=False)
def test_replication_is_running(ready_stack: ReplicaReadiness) -> None:
    """The DR database replicates from the primary (the target says why not)."""
    state = ready_stack.replication_running()
    assert state, f"the DR database does not replicate: {state.reason}"


@pytest.mark.drill(destructive=False, phases=["Database"])
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


@pytest.mark.drill(destructive=False)
def test_dr_region_is_at_pilot_light(service_ready: ServiceStack) -> None:
    """The DR service exists with a desired count of 0 and nothing running."""
    assert service_ready.desired("dr") == 0
    assert service_ready.running_tasks("dr") == 0


@pytest.mark.drill(destructive=False)
def test_alarm_is_wired_to_notifications(alarm_ready: AlarmReadiness) -> None:
    """The health alarm is OK and notifies somebody."""
    assert alarm_ready.alarm_state() == "OK"
    assert alarm_ready.alarm_notifies(), "the alarm's notifications reach nobody"


@pytest.mark.drill(destructive=False)
def test_dr_alarm_is_wired_to_notifications(ready_target: Target) -> None:
    """The DR region's health alarm notifies somebody: after a failover it is the one that
    pages (``dr.alarms.health``, on ``dr.sns_topic_arn`` when set)."""
    if not isinstance(ready_target, DrAlarmReadiness):
        pytest.skip(_lacks(ready_target, "DrAlarmReadiness"))
    notifies = ready_target.dr_alarm_notifies()
    if notifies is None:
        pytest.skip("no DR health alarm configured (targets.aws.dr.alarms.health)")
    assert notifies, "the DR region's health alarm notifies nobody"


@pytest.mark.drill(destructive=False)
def test_failover_record_points_at_a_healthy_primary(alarm_ready: AlarmReadiness) -> None:
    """The failover record's primary side is what answers, and it is healthy."""
    assert alarm_ready.primary_record_healthy()


@pytest.mark.drill(destructive=False)
def test_static_assets_replicate(ready_target: Target) -> None:
    """The primary bucket replicates into the DR region (the Static Assets RPO)."""
    if not isinstance(ready_target, StaticAssetsStack):
        pytest.skip(_lacks(ready_target, "StaticAssetsStack"))
    assert ready_target.static_assets_replicated()


@pytest.mark.drill(destructive=False)
def test_database_and_load_balancer_processes_on_the_host(ready_target: Target) -> None:
    """Host level, through testinfra: mariadbd and haproxy run, their ports listen."""
    if not isinstance(ready_target, LocalHostStack):
        pytest.skip(_lacks(ready_target, "LocalHostStack"))
    testinfra = pytest.importorskip(
        "testinfra", reason="pytest-testinfra is not installed: pip install 'drdrill[testinfra]'"
    )
    host: Any = testinfra.get_host("local://")  # what its ``host`` fixture gives by default
    ready_stack = ready_target
    assert host.process.filter(comm="mariadbd"), "no mariadbd process"
    assert host.process.filter(comm="haproxy"), "no haproxy process"
    for region in ("primary", "dr"):
        db_ip, db_port = ready_stack.db_address(region)
        assert host.socket(f"tcp://{db_ip}:{db_port}").is_listening, f"{region} db not listening"
    lb_ip, lb_port = ready_stack.region_ip("primary"), ready_stack.lb_port
    assert host.socket(f"tcp://{lb_ip}:{lb_port}").is_listening, "primary LB not listening"
