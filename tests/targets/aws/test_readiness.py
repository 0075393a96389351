"""The aws target's readiness checks against a stack in a moto server: they fail when they
should, each with a one-line reason naming the replica and what is wrong.

moto publishes no ``ReplicaLag`` and reports no ``StatusInfos``: the tests supply both the way
RDS would (``put_replica_lag`` puts datapoints into moto's CloudWatch; ``set_read_replication``
sets the replica's ``read replication`` entry on moto's model of it). The target's own calls
(GetMetricStatistics, DescribeDBInstances) go to the moto server for real.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from drdrill.sandbox.aws.provision import (
    ProvisionedStack,
    put_replica_lag,
    set_read_replication,
)
from drdrill.targets.aws.target import AwsTarget
from drdrill.targets.base import DrAlarmReadiness, ReplicaReadiness
from drdrill.timeline import Timeline

from .aws_target import aws_target as target_of


@pytest.fixture
def aws_target(stack: ProvisionedStack, tmp_path: Path) -> AwsTarget:
    return target_of(tmp_path, stack)


def _replica(stack: ProvisionedStack) -> str:
    return stack.settings.dr.rds.instance_id


def test_the_aws_target_has_the_readiness_capability(aws_target: AwsTarget) -> None:
    assert isinstance(aws_target, ReplicaReadiness)


def test_a_current_replica_lag_is_a_figure(aws_target: AwsTarget, stack: ProvisionedStack) -> None:
    put_replica_lag(
        aws_target.aws, stack.dr.region, _replica(stack), [(timedelta(seconds=20), 2.0)]
    )
    timeline = Timeline()

    reading = aws_target.replica_lag(timeline, 60.0)

    assert (reading.value, reading.uncertainty) == (2.0, 1.0)
    assert not reading.lower_bound_only and reading.reason is None
    assert timeline.get("replica_lag_read").attrs["value"] == 2.0


def test_a_replica_lag_of_zero_is_no_negative_interval(
    aws_target: AwsTarget, stack: ProvisionedStack
) -> None:
    """A ReplicaLag of 0 (whole seconds) is a lag in [0, 1] s: seen on the sandbox's AWS path
    as 0.000 ± 1.000 s, [-1.000, 1.000] s in the report, a lag below zero."""
    put_replica_lag(
        aws_target.aws, stack.dr.region, _replica(stack), [(timedelta(seconds=20), 0.0)]
    )

    reading = aws_target.replica_lag(Timeline(), 60.0)

    assert (reading.value, reading.uncertainty) == (0.5, 0.5)


def test_replica_lag_of_minus_one_fails_with_the_reason(
    aws_target: AwsTarget, stack: ProvisionedStack
) -> None:
    """-1 is what CloudWatch holds while replication is not active; before the fix it passed as
    a lag of -1 s, well within any RPO."""
    replica = _replica(stack)
    put_replica_lag(aws_target.aws, stack.dr.region, replica, [(timedelta(seconds=20), -1.0)])

    reading = aws_target.replica_lag(Timeline(), 60.0)

    assert reading.value is None and reading.reason is not None
    assert "\n" not in reading.reason
    assert reading.reason.startswith(f"ReplicaLag for {replica} was -1 in the minute from ")
    assert reading.reason.endswith(" UTC: replication is not active")


def test_no_replica_lag_datapoint_in_the_window_fails_with_the_reason(
    aws_target: AwsTarget, stack: ProvisionedStack
) -> None:
    """Before the fix no datapoint was no reading at all, which the suite skipped."""
    replica = _replica(stack)
    # one datapoint, older than the window the check looks at
    put_replica_lag(aws_target.aws, stack.dr.region, replica, [(timedelta(minutes=8), 0.0)])

    reading = aws_target.replica_lag(Timeline(), 60.0)

    assert reading.value is None
    assert reading.reason == f"no ReplicaLag datapoints for {replica} in the last 5 minutes"


def test_a_replicating_replica_is_running(aws_target: AwsTarget) -> None:
    state = aws_target.replication_running()  # provisioning made it "replicating"
    assert state and state.reason is None


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ("stopped", "Replication stopped by the user"),
        ("error", "Replication has stopped because of an error: 1062"),
        ("terminated", None),
    ],
)
def test_a_replica_whose_replication_stopped_is_not_running(
    aws_target: AwsTarget, stack: ProvisionedStack, status: str, message: str | None
) -> None:
    """Before the fix a replica with a source counted as replicating, whatever its state."""
    replica = _replica(stack)
    set_read_replication(aws_target.aws, stack.dr.region, replica, status, message=message)
    before = len(aws_target.aws.log.calls)

    state = aws_target.replication_running()

    assert not state
    assert state.reason is not None and "\n" not in state.reason
    assert state.reason.startswith(
        f"rds instance '{replica}' ({stack.dr.region}): read replication is '{status}' (not normal)"
    )
    if message is not None:
        assert state.reason.endswith(f": {message}")
    calls = [c.operation for c in aws_target.aws.log.calls[before:]]
    assert calls == ["DescribeDBInstances"]  # read from RDS, not inferred


def test_the_dr_alarm_notifies_its_topics_subscriber(aws_target: AwsTarget) -> None:
    assert isinstance(aws_target, DrAlarmReadiness)
    before = len(aws_target.aws.log.calls)

    assert aws_target.dr_alarm_notifies() is True

    calls = [(c.operation, c.region) for c in aws_target.aws.log.calls[before:]]
    assert ("DescribeAlarms", "eu-central-1") in calls  # asked of the DR region
    assert ("ListSubscriptionsByTopic", "eu-central-1") in calls


def test_a_dr_alarm_on_another_topic_than_dr_sns_topic_arn_notifies_nobody(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    """``dr.sns_topic_arn`` was documented and ignored: the alarm must notify that topic."""
    other = target_of(tmp_path, stack).aws.client("sns", stack.dr.region)
    topic = str(other.create_topic(Name="someone-elses-alerts")["TopicArn"])
    other.subscribe(TopicArn=topic, Protocol="email", Endpoint="elsewhere@example.test")

    target = target_of(tmp_path, stack, dr={"sns_topic_arn": topic})

    assert target.dr_alarm_notifies() is False


def test_without_a_dr_health_alarm_there_is_nothing_to_check(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    """The runbook's name is the default; ``health: null`` says the DR region has none."""
    target = target_of(tmp_path, stack, dr={"alarms": {"health": None}})
    assert target.dr_alarm_notifies() is None
