"""Readiness (non-destructive, for the monthly compliance run): is the stack ready to fail over?

Nothing is injected. Host-level checks use pytest-testinfra's ``host`` fixture on the local
backend (the sandbox runs on this machine).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from drdrill.measure import Measurement
from drdrill.probes.lag import HeartbeatLagSampler, ensure_heartbeat_table


@pytest.fixture
def ready_stack(target: Any) -> Any:
    """The stack, brought to its baseline if a destructive drill changed it."""
    if getattr(target, "ensure_baseline", None) is None:
        pytest.skip(f"target '{target.name}' has no readiness checks yet")
    target.ensure_baseline()
    return target


@pytest.mark.drill(targets=["sandbox"], destructive=False)
def test_replication_runs_with_lag_within_rpo(ready_stack: Any, measure, timeline) -> None:
    """The DR replica applies the primary's writes, its lag (heartbeat row) within the RPO."""
    status = ready_stack.status()["regions"]["dr"]["rds"]["replication"]
    assert status and status.get("io") and status.get("sql"), f"replication not running: {status}"
    with ready_stack.db_connection("primary") as conn:
        ensure_heartbeat_table(conn)
    sampler = HeartbeatLagSampler(
        lambda: ready_stack.db_connection("primary"),
        lambda: ready_stack.db_connection("dr"),
        interval_s=0.1,
    )
    sampler.start()
    timeline.mark("lag_sampling_started")
    time.sleep(2.0)
    sampler.stop()
    stats = sampler.stats()
    assert stats.max_s is not None, "no lag sample"
    measure.record("Database", Measurement(stats.max_s, stats.max_uncertainty_s or 0.0), kind="rpo")
    measure.verify()


@pytest.mark.drill(targets=["sandbox"], destructive=False)
def test_dr_region_is_at_pilot_light(ready_stack: Any) -> None:
    """The DR service exists with a desired count of 0; its load balancer runs."""
    dr = ready_stack.status()["regions"]["dr"]
    assert dr["ecs"]["desired"] == 0 and dr["ecs"]["running"] == 0, dr["ecs"]
    assert dr["alb"]["running"], "the DR load balancer is not running"


@pytest.mark.drill(targets=["sandbox"], destructive=False)
def test_alarm_is_wired_to_notifications(ready_stack: Any) -> None:
    """The health alarm exists, is OK, and notifies (its SNS log is where it writes)."""
    alarm = ready_stack.status()["alarm"]
    assert alarm["state"] == "OK", alarm
    assert ready_stack.alarm_notifies(), "the alarm has no notification target"


@pytest.mark.drill(targets=["sandbox"], destructive=False)
def test_failover_record_points_at_a_healthy_primary(ready_stack: Any) -> None:
    """DNS answers the primary's load balancer, which has healthy targets."""
    assert ready_stack.dns_answer() == ready_stack.region_ip("primary")
    assert ready_stack.healthy_targets("primary") >= 1


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
