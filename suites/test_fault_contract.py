"""Fault contract: every fault a target offers injects, is seen, and reverts to where it was.

On an AWS API emulator, where nothing recovers by itself, this is what can be drilled for real:
the faults' effect on the stack's state and their undo. (The sandbox's drills cover the same
faults with real recovery.)
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest

from drdrill.drill_fixtures import Injector
from drdrill.errors import SafetyError
from drdrill.observe import poll_until
from drdrill.targets.base import Target
from drdrill.timeline import Timeline

if TYPE_CHECKING:  # boto3 is an extra (drdrill[aws]): not needed to drill the sandbox
    from drdrill.targets.aws.target import AwsTarget


@pytest.fixture
def aws_stack(target: Target) -> AwsTarget:
    """The AWS target (these contracts are what an emulator can show)."""
    # an AWS target's module is loaded once one exists; without it, this is no AWS target
    module = sys.modules.get("drdrill.targets.aws.target")
    if module is None or not isinstance(target, module.AwsTarget):
        pytest.skip(f"the fault contracts are the aws target's, not '{target.name}'s")
    aws: AwsTarget = target
    if aws.settings.fault_backend == "fis":
        pytest.skip("the fault contracts check the api backend's faults: FIS injects these")
    return aws


@pytest.mark.drill()
def test_stop_tasks_injects_and_reverts(
    aws_stack: AwsTarget, inject: Injector, timeline: Timeline
) -> None:
    """Stopping a task shows in the service's running tasks; the revert restores its desired."""
    desired = aws_stack.desired("primary")
    running = aws_stack.running_tasks("primary")
    assert running >= 1, "no running task to stop"
    fault = inject(aws_stack.stop_tasks("primary", count=1))
    poll_until(
        timeline,
        "task_stopped_seen",
        lambda: aws_stack.running_tasks("primary") == running - 1,
        timeout_s=30,
    )
    inject.revert(fault)
    assert aws_stack.desired("primary") == desired


@pytest.mark.drill()
def test_region_down_scales_to_zero_and_back(
    aws_stack: AwsTarget, inject: Injector, timeline: Timeline
) -> None:
    """The primary service loses every task; the revert puts its desired count back."""
    desired = aws_stack.desired("primary")
    fault = inject(aws_stack.region_down("primary"))
    assert aws_stack.desired("primary") == 0
    assert aws_stack.running_tasks("primary") == 0
    inject.revert(fault)
    assert aws_stack.desired("primary") == desired


@pytest.mark.drill()
def test_failover_reboot_refused_on_a_single_az_database(
    aws_stack: AwsTarget, inject: Injector
) -> None:
    """A reboot with failover on a database that is not Multi-AZ is refused before any call."""
    if aws_stack.database_multi_az("primary"):
        pytest.skip("the primary database is Multi-AZ: a failover reboot is allowed")
    before = len(aws_stack.aws.log.calls)
    with pytest.raises(SafetyError, match="not multi-az"):
        inject(aws_stack.reboot_db("primary", mode="crash"))
    sent = [c for c in aws_stack.aws.log.calls[before:] if c.operation == "RebootDBInstance"]
    assert sent == []
