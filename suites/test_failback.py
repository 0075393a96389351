"""Failback: after a failover, the primary region restored and service moved back to it.

The runbook's success criteria: the primary region fully operational, DR back at pilot light,
no acknowledged write lost (the writes made during DR come back), no service interruption.
"""

from __future__ import annotations

import time

import pytest

from drdrill.config import DrillConfig
from drdrill.drill_fixtures import Injector, ProbeSession, WriterSession
from drdrill.measure import Measurement, Measurements
from drdrill.observe import Watch, poll_until, watching
from drdrill.targets.base import (
    FailoverStack,
    GroundTruthTarget,
    ReplicaReadiness,
    ScriptedStack,
    WriteTarget,
)
from drdrill.timeline import Timeline


@pytest.mark.drill(phases=["Database"])
def test_failback_after_failover(
    failover_stack: FailoverStack,
    probes: ProbeSession,
    writer: WriterSession,
    inject: Injector,
    timeline: Timeline,
    measure: Measurements,
    drill_config: DrillConfig,
) -> None:
    """Fail over, restore the primary region, fail back under reads and writes."""
    stack = failover_stack
    for capability in (ScriptedStack, WriteTarget, ReplicaReadiness):
        if not isinstance(stack, capability):
            pytest.skip(f"target '{stack.name}' lacks the capability {capability.__name__}")
    assert isinstance(stack, ScriptedStack) and isinstance(stack, WriteTarget)
    assert isinstance(stack, ReplicaReadiness)
    problem = stack.script_problem("failback.sh")
    if problem is not None:  # asked before the fault: never a failover with no way back
        pytest.skip(problem)
    timeout = drill_config.drills.restore_timeout
    # what the runbook's failback brings about is watched for as long as the script may run,
    # and restore_timeout after: a slow script (aws CLI calls on a busy machine, RDS rebuilds on
    # a real account) is a slow failback, not one whose promotion never came
    script_timeout = 180.0
    inject.change(stack.mode_change("manual"))  # journaled: put back at the end
    outage = inject(stack.region_down("primary", mode="kill"))
    result = stack.invoke_dr({"trigger": "manual", "reason": "disaster_recovery"})
    assert result["status"] == "completed", result
    poll_until(
        timeline,
        "serving_from_dr",
        lambda: stack.region_of(stack.dns_answer()) == "dr",
        timeout_s=timeout,
    )
    inject.revert(outage)  # the primary region's processes are back; service stays on DR

    public = probes.start()
    writer.start()  # writes made during DR must come back to the primary
    resolver = stack.client_resolver("drill")  # a client's resolver, honouring the TTL
    writable = stack.writable_probe("primary")
    # the old primary comes back from the region outage still writable (a split brain the
    # failback resolves): the failback's promotion is the first writable after it was rebuilt
    # as a read-only replica
    rebuilt: list[bool] = []

    def promoted() -> bool:
        if writable():
            return bool(rebuilt)
        rebuilt.append(True)
        return False

    time.sleep(1.5)
    started = timeline.mark("failback_started")
    with watching() as watches:
        # watched from the start of the failback, each in its own thread
        primary_writable = Watch(
            timeline, "primary_writable", promoted, script_timeout + timeout, since=started
        )
        clients_moved = Watch(
            timeline,
            "dns_answers_primary",
            lambda: stack.region_of(resolver.lookup()) == "primary",
            script_timeout + timeout,
        )
        watches += [primary_writable, clients_moved]
        stack.run_script("failback.sh", timeout_s=script_timeout)
        done = timeline.mark("failback_script_done")
        writable_at = primary_writable.wait()
        serving = clients_moved.wait()
    time.sleep(1.5)  # reads and writes on the primary after the switch
    # the writer is stopped and drained before the primary is read: its last write in flight
    # is not taken for lost
    rpo = writer.verify(
        lambda: stack.present_markers(writer.run_id, region="primary"), before="failback_started"
    )

    # the runbook has no failback objective: these figures are for information
    measure.phase("failback", started, done, objective=None)
    measure.phase("failback: primary writable", started, writable_at, objective=None)
    measure.phase("failback: clients on primary", started, serving, objective=None)
    measure.record("Database", Measurement(rpo.data_loss_window_s), kind="rpo")
    if isinstance(stack, GroundTruthTarget):  # the sandbox logs what really happened
        stack.attach_truth(measure, drill="failback")
    measure.verify()

    assert rpo.acknowledged > 0
    assert rpo.lost_acknowledged == 0, f"acknowledged writes missing on the primary: {rpo.lost_ids}"
    for stats in public.stats():
        assert stats.availability is not None
        assert stats.availability >= drill_config.drills.min_availability, (
            f"{stats.url}: availability {stats.availability:.1f}% during failback"
        )
    # the runbook's failback success criteria: DR back at pilot light and replicating again
    assert stack.desired("dr") == 0 and stack.running_tasks("dr") == 0, "DR not at pilot light"
    assert not stack.db_writable("dr"), "the DR database still takes writes"
    replication = stack.replication_running()
    assert replication, f"DR does not replicate from the primary again: {replication.reason}"
    assert stack.healthy_targets("primary") >= 1
    assert stack.db_writable("primary")
    assert serving.mono >= started.mono
