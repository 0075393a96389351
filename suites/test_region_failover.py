"""Region failover: the primary region goes down under write load; each phase vs its objective.

Triggers, as the runbook's three options:
- ``automated``: the health alarm runs the DR automation by itself;
- ``script``: the on-call runs ``scripts/failover.sh`` (the manual one, unattended with --yes);
- ``lambda``: the on-call invokes the DR automation with the runbook's payload.

Every phase is watched from the moment of the fault, each condition in a thread of its own, so
an event is seen when it happens and not when the drill gets round to looking. Each observed
moment is bounded by the start of the last poll that missed it and the end of the poll that saw
it. The figures are checked against the sandbox's ground truth in the harness's own tests
(tests/sandbox/test_sandbox_stack.py), from sources the measurement does not read.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from drdrill.config import DrillConfig
from drdrill.drill_fixtures import Injector, ProbeSession, WriterSession
from drdrill.measure import Measurement, Measurements
from drdrill.observe import Watch, watching
from drdrill.targets.base import FailoverStack, GroundTruthTarget, ScriptedStack
from drdrill.timeline import PHASES, Event, Timeline

#: every RTO row of a failover, and the database's RPO
FAILOVER_FIGURES = [*PHASES, "Database"]


def _reported(
    stack: FailoverStack,
    timeline: Timeline,
    record: str,
    name: str,
    since: float,
    timeout_s: float,
) -> Event:
    """The stack's own record of an action it took (its API's answer, like an RDS event or a
    Lambda log line), put on the timeline as a reported event; waited for up to ``timeout_s``
    (``drills.restore_timeout``)."""
    deadline = time.monotonic() + timeout_s
    while not (found := stack.reported_since(since, record)):
        assert time.monotonic() < deadline, (
            f"the stack never reported '{record}' within {timeout_s:g} s (drills.restore_timeout)"
        )
        time.sleep(0.02)
    first = found[0]
    return timeline.report_stamped(name, first.utc, first.resolution_s, record=record)


def _trigger(stack: FailoverStack, trigger: str, outcome: dict[str, Any]) -> None:
    """Run the on-call's failover: the manual script unattended, or the Lambda."""
    try:
        if trigger == "script":
            assert isinstance(stack, ScriptedStack)
            stack.run_script("failover.sh", "--yes")
        else:
            result = stack.invoke_dr({"trigger": "manual", "reason": "disaster_recovery"})
            if result.get("status") != "completed":
                outcome["error"] = f"dr lambda: {result}"
    except Exception as exc:
        outcome["error"] = f"{type(exc).__name__}: {exc}"


@pytest.mark.drill(phases=FAILOVER_FIGURES)
@pytest.mark.parametrize("trigger", ["automated", "script", "lambda"])
def test_region_failover(
    failover_stack: FailoverStack,
    trigger: str,
    probes: ProbeSession,
    writer: WriterSession,
    inject: Injector,
    timeline: Timeline,
    measure: Measurements,
    drill_config: DrillConfig,
) -> None:
    """Primary region down: detection, decision, promotion, scale-up, checks, DNS, total, RPO."""
    stack = failover_stack
    if trigger == "script":
        if not isinstance(stack, ScriptedStack):
            pytest.skip(f"target '{stack.name}' lacks the capability ScriptedStack (failover.sh)")
        problem = stack.script_problem("failover.sh")
        if problem is not None:  # asked before the fault: never a region down with no script
            pytest.skip(problem)
    timeout = drill_config.drills.restore_timeout
    # journaled like a fault: put back at the end, or by `drdrill recover` after a kill
    inject.change(stack.mode_change("automated" if trigger == "automated" else "manual"))
    public = probes.start()  # the runbook's endpoints through the public name (DNS)
    # the DR load balancer itself: down by design until DR is scaled (pilot light)
    dr_direct = probes.start(stack.endpoints("dr"), steady=False)
    writer.start()
    # a client's resolver honouring the record's TTL: DNS Update as clients see it
    resolver = stack.client_resolver("drill")
    want = stack.scale_to("dr")
    writable = stack.writable_probe("dr")
    time.sleep(1.5)

    inject(stack.region_down("primary", mode="kill"))  # steady state is checked first
    start = timeline.get("fault_injected")
    since = start.mono - start.uncertainty_s

    def reported(record: str, name: str) -> Event:
        return _reported(stack, timeline, record, name, since, timeout)

    with watching() as watches:
        alarm_seen = Watch(timeline, "alarm_seen", lambda: stack.alarm_state() == "ALARM", timeout)
        replica_writable = Watch(timeline, "replica_writable", writable, timeout, since=start)
        tasks_healthy = Watch(
            timeline, "dr_tasks_healthy", lambda: stack.healthy_targets("dr") >= want, timeout
        )
        dns_dr = Watch(
            timeline, "dns_answers_dr", lambda: stack.region_of(resolver.lookup()) == "dr", timeout
        )
        watches += [alarm_seen, replica_writable, tasks_healthy, dns_dr]

        # Detection: fault -> the alarm in ALARM, as its history (CloudWatch's) reports it
        alarm_seen.wait()
        fault_utc = start.utc - timedelta(seconds=start.uncertainty_s)
        (changed,) = [
            h
            for h in stack.alarm_history()
            if h["state"] == "ALARM" and datetime.fromisoformat(h["utc"]) >= fault_utc
        ][:1]
        alarm = timeline.report_stamped(
            "alarm_raised",
            datetime.fromisoformat(changed["utc"]),
            float(changed.get("resolution_s", 0.0)),
        )

        # Decision: the alarm -> the failover triggered. Automated: the automation's own
        # reaction, as the stack reports its invocation. Otherwise the on-call's: paged by the
        # alarm, they react after the configured delay and run the trigger in the background.
        outcome: dict[str, Any] = {}
        trigger_thread = None
        if trigger == "automated":
            triggered = reported("automation_invoked", "failover_started")
        else:
            time.sleep(drill_config.drills.oncall_delay)
            triggered = timeline.mark("failover_triggered", trigger=trigger)
            trigger_thread = threading.Thread(target=_trigger, args=(stack, trigger, outcome))
            trigger_thread.start()

        # RDS Promotion: promotion asked (the stack's record) -> the replica takes writes
        asked = reported("rds_promotion_requested", "promotion_asked")
        writable_at = replica_writable.wait()

        # ECS Scale-up: scale asked -> the desired tasks healthy behind the DR load balancer
        scale = reported("ecs_scale_requested", "scale_asked")
        healthy = tasks_healthy.wait()

        # Health Verification: scaled and healthy -> the post-failover checks pass against the
        # DR load balancer, on samples sent after it was healthy
        checks = probes.wait_restored(
            healthy, timeout_s=timeout, name="dr_checks_pass", runner=dr_direct, outage_first=False
        )

        # DNS Update: the record changed (the stack's record of the API call) -> a resolver
        # that honours the TTL answers DR
        switched = reported("dns_switch_requested", "dns_record_changed")
        answered = dns_dr.wait()

        # Total RTO: fault -> every endpoint passes through the public name and a write succeeds
        restored = probes.wait_restored(start, timeout_s=timeout, runner=public)
        first_write = writer.first_ack_after(restored)

        # Health Verification ends when the checks pass for good: a DR balancer whose checks
        # failed again after their first run of passes (requests timing out by turns on a busy
        # machine) was not yet verified; its relapses are on the timeline
        checks = probes.restored_for_good(
            checks, timeout_s=timeout, name="dr_checks_pass_for_good", runner=dr_direct
        )

    measure.phase("Detection", start, alarm)
    measure.phase("Decision", alarm, triggered)
    measure.phase("RDS Promotion", asked, writable_at)
    measure.phase("ECS Scale-up", scale, healthy)
    measure.phase("Health Verification", healthy, checks)
    measure.phase("DNS Update", switched, answered)
    end = max(restored, first_write, key=lambda e: e.mono)
    measure.phase("Total RTO", start, end)
    measure.phase("client downtime", start, restored, objective=None)
    time.sleep(1.0)
    if trigger_thread is not None:
        trigger_thread.join(timeout)
        assert outcome.get("error") is None, outcome["error"]

    # RPO: acknowledged writes missing from the promoted database (read once the writer drained)
    rpo = writer.verify()
    measure.record("Database", Measurement(rpo.data_loss_window_s), kind="rpo")
    if isinstance(stack, GroundTruthTarget):  # the sandbox logs what really happened
        stack.attach_truth(measure, trigger, drill="region_failover")
    measure.verify()

    # the runbook's post-failover checks
    assert stack.db_writable("dr"), "the promoted database does not take writes"
    assert stack.running_tasks("dr") == want, "the DR service is not at its scaled count"
    assert stack.region_of(stack.dns_answer()) == "dr", "the public name does not answer DR"
