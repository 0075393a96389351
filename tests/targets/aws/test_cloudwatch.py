"""CloudWatch adapter against the moto server: an ALB alarm that notifies an SNS topic.

moto 5.2 does not implement DescribeAlarmHistory (its server answers 500), so
``alarm_history`` is tested on moto for its error only; how it reads history items is tested
on items shaped as the CloudWatch API reference documents them.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from drdrill.errors import DrillError
from drdrill.targets.aws import cloudwatch
from drdrill.targets.aws.cloudwatch import AlarmChange
from drdrill.targets.aws.session import AwsClients

PRIMARY = "eu-west-1"
DR = "eu-central-1"


def _alarm(aws: AwsClients, region: str = PRIMARY) -> tuple[str, str]:
    """A fresh alarm whose ALARM and OK actions notify a fresh topic: (alarm, topic arn)."""
    suffix = uuid.uuid4().hex[:8]
    topic = aws.client("sns", region).create_topic(Name=f"dr-alerts-{suffix}")["TopicArn"]
    name = f"visitor-analytics-unhealthy-hosts-{suffix}"
    aws.client("cloudwatch", region).put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/ApplicationELB",
        MetricName="UnHealthyHostCount",
        Dimensions=[{"Name": "LoadBalancer", "Value": "app/visitor-analytics/0123456789abcdef"}],
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=2,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        AlarmActions=[topic],
        OKActions=[topic],
    )
    return name, str(topic)


def test_alarm_actions_name_the_topic(aws: AwsClients) -> None:
    name, topic = _alarm(aws)
    assert cloudwatch.alarm_actions(aws, PRIMARY, name) == [topic]


def test_put_alarm_state_then_alarm_state(aws: AwsClients) -> None:
    name, _ = _alarm(aws)
    # moto starts a new alarm OK ("Unchecked: Initial alarm creation"); AWS: INSUFFICIENT_DATA
    assert cloudwatch.alarm_state(aws, PRIMARY, name) == "OK"
    cloudwatch.put_alarm_state(aws, PRIMARY, name, "ALARM", "drdrill: forced for a drill")
    assert cloudwatch.alarm_state(aws, PRIMARY, name) == "ALARM"
    described = aws.client("cloudwatch", PRIMARY).describe_alarms(AlarmNames=[name])
    assert described["MetricAlarms"][0]["StateReason"] == "drdrill: forced for a drill"
    cloudwatch.put_alarm_state(aws, PRIMARY, name, "OK", "drdrill: drill over")
    assert cloudwatch.alarm_state(aws, PRIMARY, name) == "OK"


def test_alarms_are_regional(aws: AwsClients) -> None:
    name, _ = _alarm(aws, DR)
    assert cloudwatch.alarm_state(aws, DR, name) == "OK"
    with pytest.raises(DrillError, match=f"cloudwatch alarm '{name}' not found in {PRIMARY}"):
        cloudwatch.alarm_state(aws, PRIMARY, name)


def test_an_unknown_alarm_is_an_error(aws: AwsClients) -> None:
    with pytest.raises(DrillError, match="cloudwatch alarm 'no-such-alarm' not found"):
        cloudwatch.alarm_actions(aws, PRIMARY, "no-such-alarm")
    with pytest.raises(DrillError, match="cloudwatch alarm 'no-such-alarm' not found"):
        cloudwatch.put_alarm_state(aws, PRIMARY, "no-such-alarm", "ALARM", "x")


def test_put_alarm_state_refuses_an_unknown_state_and_sends_nothing(aws: AwsClients) -> None:
    with pytest.raises(DrillError, match="state 'RED' is not one of"):
        cloudwatch.put_alarm_state(aws, PRIMARY, "whatever", "RED", "x")
    assert aws.log.calls == []


def test_put_alarm_state_in_a_dry_run_is_not_sent(moto_endpoint: str, aws: AwsClients) -> None:
    name, _ = _alarm(aws)
    dry = AwsClients(endpoint_url=moto_endpoint, dry_run=True)
    cloudwatch.put_alarm_state(dry, PRIMARY, name, "ALARM", "drdrill: dry run")
    assert [(c.operation, c.sent) for c in dry.log.calls] == [("SetAlarmState", False)]
    assert cloudwatch.alarm_state(aws, PRIMARY, name) == "OK"


def test_alarm_history_on_moto_is_an_error_naming_the_alarm(aws: AwsClients) -> None:
    name, _ = _alarm(aws)
    cloudwatch.put_alarm_state(aws, PRIMARY, name, "ALARM", "drdrill: forced")
    # moto 5.2: "The describe_alarm_history action has not been implemented" -> HTTP 500
    with pytest.raises(DrillError) as caught:
        cloudwatch.alarm_history(aws, PRIMARY, name)
    message = str(caught.value)
    assert message.startswith(f"cloudwatch alarm '{name}' in {PRIMARY}: history unavailable: ")
    assert "(500)" in message and "\n" not in message
    assert "DescribeAlarmHistory" in {c.operation for c in aws.log.calls}


def _item(when: str, old: str, new: str, reason: str) -> dict[str, object]:
    """A StateUpdate item as DescribeAlarmHistory returns it (boto3 parses the timestamp)."""
    data = {
        "version": "1.0",
        "oldState": {"stateValue": old, "stateReason": "before"},
        "newState": {"stateValue": new, "stateReason": reason},
    }
    return {
        "AlarmName": "a",
        "AlarmType": "MetricAlarm",
        "Timestamp": datetime.fromisoformat(when),
        "HistoryItemType": "StateUpdate",
        "HistorySummary": f"Alarm updated from {old} to {new}",
        "HistoryData": json.dumps(data),
    }


def test_state_change_reads_a_history_item() -> None:
    item = _item(
        "2026-03-01T10:00:05.123+01:00",
        "OK",
        "ALARM",
        "Threshold Crossed: 2 datapoints [3.0, 2.0] were greater than or equal to 1.0",
    )
    assert cloudwatch.state_change(item) == AlarmChange(
        utc=datetime(2026, 3, 1, 9, 0, 5, 123000, tzinfo=UTC),
        old="OK",
        new="ALARM",
        reason="Threshold Crossed: 2 datapoints [3.0, 2.0] were greater than or equal to 1.0",
    )


def test_state_change_falls_back_on_the_summary_and_skips_other_items() -> None:
    item = _item("2026-03-01T09:00:00+00:00", "ALARM", "OK", "x")
    item["HistoryData"] = "not json"
    change = cloudwatch.state_change(item)
    assert change is not None and (change.old, change.new, change.reason) == ("ALARM", "OK", "")
    item["HistoryItemType"] = "ConfigurationUpdate"
    assert cloudwatch.state_change(item) is None
