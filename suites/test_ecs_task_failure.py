"""ECS task failure: tasks stop, the load balancer routes around them, the service recovers."""

from __future__ import annotations

import time
from typing import Any

import pytest

from drdrill.observe import poll_until


@pytest.mark.drill(targets=["sandbox", "aws"])
@pytest.mark.parametrize(
    "stop", [{"count": 1}, {"percent": 50.0}], ids=["one-task", "half-the-tasks"]
)
def test_service_returns_to_desired_count(
    stack: Any, stop: dict[str, Any], probes, inject, timeline, measure, drill_config
) -> None:
    """Stop tasks in the primary region: ECS Scale-up timed, availability kept through the LB."""
    desired = stack.desired("primary")
    runner = probes.start(stack.endpoints("primary"))
    time.sleep(1.0)

    inject(stack.stop_tasks("primary", mode="kill", **stop))
    poll_until(
        timeline,
        "task_stopped_seen",
        lambda: (
            stack.running_tasks("primary") < desired or stack.healthy_targets("primary") < desired
        ),
        timeout_s=10,
    )
    steady = poll_until(
        timeline,
        "service_steady",
        lambda: (
            stack.running_tasks("primary") == desired
            and stack.healthy_targets("primary") == desired
        ),
        timeout_s=drill_config.drills.restore_timeout,
    )
    time.sleep(0.5)
    fault = timeline.get("fault_injected")
    # ground truth: the load balancer's watcher saw the replacement task healthy (it polls the
    # same state as the drill, so its event may come a poll after the drill's)
    truth_since = getattr(stack, "truth_since", None)  # only the sandbox logs ground truth
    healthy = [
        e.mono
        for e in (truth_since(fault.mono, "lb_target_healthy") if truth_since else [])
        if e.attrs.get("lb") == "alb-primary"
    ]
    truth = healthy[-1] - fault.mono if healthy else None
    measure.phase("ECS Scale-up", fault, steady, truth_s=truth)
    measure.verify()

    for stats in runner.stats():
        assert stats.availability is not None
        assert stats.availability >= drill_config.drills.min_availability, (
            f"{stats.url}: availability {stats.availability:.1f}% through the load balancer, "
            f"under {drill_config.drills.min_availability:g}%"
        )
