"""ECS task failure: tasks stop, the load balancer routes around them, the service recovers."""

from __future__ import annotations

import time
from typing import Any

import pytest

from drdrill.config import DrillConfig
from drdrill.drill_fixtures import Injector, ProbeSession
from drdrill.measure import Measurements
from drdrill.observe import expect_effect, poll_until
from drdrill.targets.base import GroundTruthTarget, PlatformRecords, ServiceStack
from drdrill.timeline import Event, Timeline


def _ecs_record(
    stack: PlatformRecords, timeline: Timeline, measure: Measurements, fault: Event
) -> None:
    """ECS's own record of the tasks since the fault: the first stop and the last start on the
    timeline, and the replacement as ECS timed it, for information (ECS Scale-up also needs the
    load balancer to call the replacements healthy, which AWS does not stamp)."""
    stopped = stack.platform_records(fault.mono, "task_stopped")
    started = stack.platform_records(fault.mono, "task_started")
    if not stopped or not started:
        return
    first, last = stopped[0], started[-1]
    stop = timeline.report_stamped(
        "task_stopped_reported", first.utc, first.resolution_s, record="task_stopped"
    )
    start = timeline.report_stamped(
        "replacement_started_reported", last.utc, last.resolution_s, record="task_started"
    )
    measure.phase("task replacement (ECS's record)", stop, start, objective=None)


@pytest.mark.drill(phases=["ECS Scale-up"])
@pytest.mark.parametrize(
    "stop", [{"count": 1}, {"percent": 50.0}], ids=["one-task", "half-the-tasks"]
)
def test_service_returns_to_desired_count(
    service_stack: ServiceStack,
    stop: dict[str, Any],
    probes: ProbeSession,
    inject: Injector,
    timeline: Timeline,
    measure: Measurements,
    drill_config: DrillConfig,
) -> None:
    """Stop tasks in the primary region: ECS Scale-up timed, availability kept through the LB."""
    desired = service_stack.desired("primary")
    runner = probes.start(service_stack.endpoints("primary"))
    time.sleep(1.0)

    inject(service_stack.stop_tasks("primary", mode="kill", **stop))
    fault = timeline.get("fault_injected")
    expect_effect(
        timeline,
        "task_stopped_seen",
        lambda: (
            service_stack.running_tasks("primary") < desired
            or service_stack.healthy_targets("primary") < desired
        ),
        timeout_s=drill_config.drills.effect_timeout,
        fault=fault,
        what="fewer running or healthy tasks than desired",
    )
    steady = poll_until(
        timeline,
        "service_steady",
        lambda: (
            service_stack.running_tasks("primary") == desired
            and service_stack.healthy_targets("primary") == desired
        ),
        timeout_s=drill_config.drills.restore_timeout,
    )
    time.sleep(0.5)
    measure.phase("ECS Scale-up", fault, steady)
    if isinstance(service_stack, PlatformRecords):  # ECS's own times beside what was observed
        _ecs_record(service_stack, timeline, measure, fault)
    if isinstance(service_stack, GroundTruthTarget):  # the sandbox logs what really happened
        service_stack.attach_truth(measure, drill="task_failure")
    measure.verify()

    for stats in runner.stats():
        assert stats.availability is not None
        assert stats.availability >= drill_config.drills.min_availability, (
            f"{stats.url}: availability {stats.availability:.1f}% through the load balancer, "
            f"under {drill_config.drills.min_availability:g}%"
        )
