"""A fresh sandbox raises no alarm at start-up, and its alarm still fires for a real failure.

The health alarm starts in ``INSUFFICIENT_DATA``, as a new CloudWatch alarm does, and evaluates
nothing until the primary has served once (:mod:`drdrill.sandbox.monitor`). The sandbox here
(block 12, a short temporary folder) checks its targets every second, so they take about two
seconds to be healthy while three failed alarm checks take 1.5 s: before the fix every start
went to ALARM, paged and, in automated mode, failed over. Then the primary region goes down and
the alarm must go off within its evaluation periods, notify, and run the DR automation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.sandbox.sandbox_project import SANDBOX_MARKS, short_folder, write_config

from drdrill.config import load_config
from drdrill.sandbox import control
from drdrill.targets.sandbox import SandboxTarget

BLOCK = 12
#: how long after ``up`` the stack must stay quiet (12 alarm periods)
QUIET_S = 6.0
#: the alarm's period and evaluation periods (the defaults, as in drdrill.yaml)
ALARM_PERIOD_S = 0.5
EVALUATION_PERIODS = 3
#: the targets' health checks: slower than the alarm, so that they are healthy only after the
#: alarm would have gone off (2 checks of 1 s against 3 of 0.5 s)
SANDBOX = (
    "mode: automated\n"
    "    timings: {health_check_interval: 1s, alarm_period: 0.5s, alarm_evaluation_periods: 3}"
)

pytestmark = SANDBOX_MARKS


@pytest.fixture(scope="module")
def stack() -> Iterator[SandboxTarget]:
    """A sandbox brought up by the test (automated mode), taken down at the end."""
    with short_folder("drdrill-alarm-") as folder:
        target = SandboxTarget(load_config(write_config(folder, BLOCK, sandbox_extra=SANDBOX)))
        if target.client.alive():
            pytest.fail(f"a sandbox already runs in block {BLOCK}: not ours to drive")
        try:
            target.start()
            yield target
        finally:
            control.down(target.settings, target.run_dir)


def wait_for(what: str, found: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := found()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)
    return value


def test_a_fresh_sandbox_raises_no_alarm_and_sends_no_notification(stack: SandboxTarget) -> None:
    (started,) = stack.truth_since(0.0, "sandbox_up")
    time.sleep(max(0.0, started.mono + QUIET_S - time.monotonic()))
    history = stack.alarm_history()
    assert [h["state"] for h in history] == ["OK"], history  # out of INSUFFICIENT_DATA, once
    changes = stack.truth_since(0.0, "alarm_state_changed")
    assert [(c.attrs["old"], c.attrs["new"]) for c in changes] == [("INSUFFICIENT_DATA", "OK")]
    # evaluated only once the primary served: after its load balancer had a healthy target
    first_healthy = min(
        e.mono for e in stack.truth_since(0.0, "lb_target_healthy") if e.component == "alb-primary"
    )
    assert changes[0].mono > first_healthy
    assert stack.truth_since(0.0, "sns_notification_sent") == []
    assert stack.truth_since(0.0, "sns_delivered") == []  # the pager was not paged
    assert not (stack.run_dir / "sns-notifications.log").exists()
    assert stack.truth_since(0.0, "automation_invoked") == []  # no failover at start-up
    status = stack.status()
    assert status["alarm"]["state"] == "OK" and status["failover"] == "primary"
    assert status["dns"]["active"] == "primary"
    assert stack.at_baseline()


def test_the_alarm_still_fires_when_the_primary_goes_down(stack: SandboxTarget) -> None:
    before = time.monotonic()
    stack.client.call("region_down", region="primary", mode="kill")
    (down,) = stack.truth_since(before, "region_down")
    raised = wait_for(
        "the alarm", lambda: stack.truth_since(before, "alarm_state_changed"), timeout=10
    )[0]
    assert (raised.attrs["old"], raised.attrs["new"]) == ("OK", "ALARM")
    # detection within its evaluation periods (and one more period of scheduling slack)
    detection = raised.mono - down.mono
    assert detection <= (EVALUATION_PERIODS + 1) * ALARM_PERIOD_S + 0.5, detection
    assert stack.alarm_history()[-1]["state"] == "ALARM"
    (sent,) = wait_for(
        "the notification", lambda: stack.truth_since(before, "sns_notification_sent")
    )
    delivered = wait_for("the page", lambda: stack.truth_since(before, "sns_delivered"))
    assert delivered[0].attrs["message_id"] == sent.attrs["message_id"]
    assert delivered[0].attrs["state"] == "ALARM"
    # automated mode: the alarm runs the DR automation, which fails over
    (invoked,) = wait_for("the automation", lambda: stack.truth_since(before, "automation_invoked"))
    assert invoked.mono >= raised.mono
    wait_for("the failover", lambda: stack.status()["dns"]["active"] == "dr", timeout=60)
