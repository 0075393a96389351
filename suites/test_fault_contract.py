"""Fault contract: every fault a target offers injects, is seen, and reverts to where it was.

On an AWS API emulator, where nothing recovers by itself, this is what can be drilled for real:
the faults' effect on the stack's state and their undo. (The sandbox's drills cover the same
faults with real recovery.)
"""

from __future__ import annotations

from typing import Any

import pytest

from drdrill.errors import SafetyError
from drdrill.observe import poll_until


@pytest.fixture
def aws_stack(target: Any) -> Any:
    """The AWS target (these contracts are what an emulator can show)."""
    return target


@pytest.mark.drill(targets=["aws"])
def test_stop_tasks_injects_and_reverts(aws_stack: Any, inject, timeline) -> None:
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


@pytest.mark.drill(targets=["aws"])
def test_region_down_scales_to_zero_and_back(aws_stack: Any, inject, timeline) -> None:
    """The primary service loses every task; the revert puts its desired count back."""
    desired = aws_stack.desired("primary")
    fault = inject(aws_stack.region_down("primary"))
    assert aws_stack.desired("primary") == 0
    assert aws_stack.running_tasks("primary") == 0
    inject.revert(fault)
    assert aws_stack.desired("primary") == desired


@pytest.mark.drill(targets=["aws"])
def test_failover_reboot_refused_on_a_single_az_database(aws_stack: Any, inject) -> None:
    """A reboot with failover on a database that is not Multi-AZ is refused before any call."""
    if aws_stack.database_multi_az("primary"):
        pytest.skip("the primary database is Multi-AZ: a failover reboot is allowed")
    before = len(aws_stack.aws.log.calls)
    with pytest.raises(SafetyError, match="not multi-az"):
        inject(aws_stack.reboot_db("primary", mode="crash"))
    sent = [c for c in aws_stack.aws.log.calls[before:] if c.operation == "RebootDBInstance"]
    assert sent == []
