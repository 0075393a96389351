"""Region failover: the primary region goes down under write load; each phase vs its objective.

Triggers, as the runbook's three options:
- ``automated``: the health alarm runs the DR automation by itself;
- ``script``: the on-call runs ``scripts/failover.sh`` (the manual one, unattended with --yes);
- ``lambda``: the on-call invokes the DR automation with the runbook's payload.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import pytest

from drdrill.measure import Measurement
from drdrill.observe import poll_until
from drdrill.timeline import Timeline


def _reported(stack: Any, timeline: Timeline, truth_event: str, name: str, since: float) -> Any:
    """Put the sandbox's own record of an action on the timeline, as a reported event."""
    deadline = time.monotonic() + 60
    while not (found := stack.truth_since(since, truth_event)):
        assert time.monotonic() < deadline, f"the sandbox never logged '{truth_event}'"
        time.sleep(0.02)
    return timeline.report(name, found[0].utc)


def _trigger(stack: Any, trigger: str, outcome: dict[str, Any]) -> None:
    """Run the on-call's failover: the manual script unattended, or the Lambda."""
    try:
        if trigger == "script":
            stack.run_script("failover.sh", "--yes")
        else:
            result = stack.invoke_dr({"trigger": "manual", "reason": "disaster_recovery"})
            if result.get("status") != "completed":
                outcome["error"] = f"dr lambda: {result}"
    except Exception as exc:
        outcome["error"] = f"{type(exc).__name__}: {exc}"


def _truth_spans(stack: Any, since: float, dr_ip: str, moved: list[Any]) -> dict[str, float]:
    """Each phase as the sandbox's ground truth has it (truth.jsonl, and the clients' resolvers).

    DNS Update's truth is 0: the sandbox's server answers the new record from the moment it
    switches, so all of the measured span is the polling's delay.
    """
    events = stack.truth_since(since)

    def at(name: str, **attrs: Any) -> float:
        for e in events:
            if e.event == name and all(e.attrs.get(k) == v for k, v in attrs.items()):
                return float(e.mono)
        raise AssertionError(f"no '{name}' {attrs} in the ground truth")

    down = at("region_down")
    alarm = at("alarm_state_changed", new="ALARM")
    scale = at("ecs_scale_requested")
    want = stack.scale_to("dr")
    healthy = [
        e.mono
        for e in events
        if e.event == "lb_target_healthy" and e.mono >= scale and e.attrs.get("lb") == "alb-dr"
    ]
    clients = {e.attrs["client"]: e.mono for e in reversed(moved) if e.attrs["ip"] == dr_ip}
    return {
        "Detection": alarm - down,
        "Decision": at("failover_triggered") - alarm,
        "RDS Promotion": at("replica_writable") - at("rds_promotion_requested"),
        "ECS Scale-up": healthy[want - 1] - scale,
        "DNS Update": 0.0,
        "Total RTO": max(clients.values()) - down,
        "downtime": clients["probes"] - down,
    }


@pytest.mark.drill(targets=["sandbox"])
@pytest.mark.parametrize("trigger", ["automated", "script", "lambda"])
def test_region_failover(
    stack: Any, trigger: str, probes, writer, inject, timeline, measure, drill_config
) -> None:
    """Primary region down: detection, decision, promotion, scale-up, checks, DNS, total, RPO."""
    timeout = drill_config.drills.restore_timeout
    stack.set_mode("automated" if trigger == "automated" else "manual")
    public = probes.start()  # the runbook's endpoints through the public name (DNS)
    dr_direct = probes.start(stack.endpoints("dr"))  # the DR load balancer itself
    writer.start()
    time.sleep(1.5)

    fault = inject(stack.region_down("primary", mode="kill"))
    start = timeline.get("fault_injected")

    # Detection: the alarm goes to ALARM. We see it by polling (observed); the alarm's own
    # history says when it changed (reported, like CloudWatch's), and that is what we time.
    poll_until(timeline, "alarm_seen", lambda: stack.alarm_state() == "ALARM", timeout_s=timeout)
    (changed,) = [
        h for h in stack.alarm_history() if h["state"] == "ALARM" and h["mono"] >= start.mono
    ][:1]
    alarm = timeline.report("alarm_raised", datetime.fromisoformat(changed["utc"]))

    # Decision: from the alarm to the failover being triggered. The on-call's trigger runs in
    # the background so that the drill watches each step as it happens.
    outcome: dict[str, Any] = {}
    trigger_thread = None
    if trigger != "automated":
        timeline.mark("failover_triggered", trigger=trigger)
        trigger_thread = threading.Thread(target=_trigger, args=(stack, trigger, outcome))
        trigger_thread.start()
    triggered = _reported(stack, timeline, "failover_triggered", "failover_started", start.mono)

    # RDS Promotion: promotion asked -> the replica takes writes
    asked = _reported(stack, timeline, "rds_promotion_requested", "promotion_asked", start.mono)
    writable = poll_until(
        timeline,
        "replica_writable",
        lambda: stack.db_writable("dr"),
        timeout_s=timeout,
        since=asked,
    )

    # ECS Scale-up: scale asked -> the desired tasks healthy behind the DR load balancer
    scale = _reported(stack, timeline, "ecs_scale_requested", "scale_asked", start.mono)
    want = stack.scale_to("dr")
    healthy = poll_until(
        timeline,
        "dr_tasks_healthy",
        lambda: stack.healthy_targets("dr") >= want,
        timeout_s=timeout,
        since=scale,
    )

    # Health Verification: healthy targets -> every check passes against the DR load balancer
    checks = probes.wait_restored(scale, timeout_s=timeout, name="dr_checks_pass", runner=dr_direct)

    # DNS Update: record changed -> the resolver answers DR
    switched = _reported(stack, timeline, "dns_record_switched", "dns_record_changed", start.mono)
    dr_ip = stack.region_ip("dr")
    answered = poll_until(
        timeline,
        "dns_answers_dr",
        lambda: stack.dns_answer() == dr_ip,
        timeout_s=timeout,
        since=switched,
    )

    # Total RTO: fault -> every endpoint passes through the public name and a write succeeds
    restored = probes.wait_restored(start, timeout_s=timeout, runner=public)
    first_write = writer.first_ack_after(restored)
    # when the clients really moved to DR (their resolvers log it)
    moved = stack.put_client_dns_switches(timeline, since=start.mono)
    truth = _truth_spans(stack, start.mono, dr_ip, moved)
    measure.phase("Detection", start, alarm, truth_s=truth["Detection"])
    measure.phase("Decision", alarm, triggered, truth_s=truth["Decision"])
    measure.phase("RDS Promotion", asked, writable, truth_s=truth["RDS Promotion"])
    measure.phase("ECS Scale-up", scale, healthy, truth_s=truth["ECS Scale-up"])
    measure.phase("Health Verification", healthy, checks)
    measure.phase("DNS Update", switched, answered, truth_s=truth["DNS Update"])
    end = max(restored, first_write, key=lambda e: e.mono)
    measure.phase("Total RTO", start, end, truth_s=truth["Total RTO"])
    measure.phase("client downtime", start, restored, objective=None, truth_s=truth["downtime"])
    time.sleep(1.0)
    if trigger_thread is not None:
        trigger_thread.join(timeout)
        assert outcome.get("error") is None, outcome["error"]

    # RPO: acknowledged writes missing from the promoted database
    rpo = writer.verify()
    measure.record("Database", Measurement(rpo.data_loss_window_s), kind="rpo")
    measure.verify()

    # the runbook's post-failover checks
    assert stack.db_writable("dr"), "the promoted database does not take writes"
    assert stack.running_tasks("dr") == want, "the DR service is not at its scaled count"
    assert stack.dns_answer() == dr_ip
    inject.revert(fault)  # the primary region's processes come back (failback is its own drill)
