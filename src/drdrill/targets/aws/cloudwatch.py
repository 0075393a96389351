"""CloudWatch alarms: their state, their state history (the Detection phase's ``reported``
times) and their actions (the SNS topics they notify); and a metric's latest datapoint (the
readiness checks read RDS's ``ReplicaLag`` with it).

Whether the alarm starts the failover by itself is whether its actions are enabled: its SNS
notification is what invokes the DR automation.

Emulator limits: moto (5.2) does not implement ``DescribeAlarmHistory`` (the server answers
500), so :func:`alarm_history` raises there; it keeps no history a drill could read. A new
alarm starts ``OK`` in moto, ``INSUFFICIENT_DATA`` on AWS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from drdrill.errors import DrillError
from drdrill.targets.aws.session import AwsClients

#: The states an alarm can be in.
STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")
# A history item's summary when its data cannot be read: "Alarm updated from OK to ALARM"
_SUMMARY = re.compile(r"from (\w+) to (\w+)")


@dataclass(frozen=True)
class AlarmChange:
    """One state change of an alarm, as CloudWatch reports it."""

    utc: datetime
    old: str
    new: str
    reason: str


def _alarm(aws: AwsClients, region: str, name: str) -> Mapping[str, Any]:
    try:
        response = aws.client("cloudwatch", region).describe_alarms(
            AlarmNames=[name], AlarmTypes=["MetricAlarm", "CompositeAlarm"]
        )
    except ClientError as exc:
        raise DrillError(f"cloudwatch alarm '{name}' in {region}: {exc}") from exc
    # match the name ourselves: emulators may ignore the filter
    alarms: list[Mapping[str, Any]] = [
        *response.get("MetricAlarms", []),
        *response.get("CompositeAlarms", []),
    ]
    for alarm in alarms:
        if alarm.get("AlarmName") == name:
            return alarm
    raise DrillError(f"cloudwatch alarm '{name}' not found in {region}")


def alarm_state(aws: AwsClients, region: str, name: str) -> str:
    """The alarm's state now: ``OK``, ``ALARM`` or ``INSUFFICIENT_DATA``."""
    return str(_alarm(aws, region, name)["StateValue"])


def alarm_actions(aws: AwsClients, region: str, name: str) -> list[str]:
    """The ARNs the alarm notifies when it goes into ALARM (SNS topics, mostly)."""
    return [str(arn) for arn in _alarm(aws, region, name).get("AlarmActions", [])]


def actions_enabled(aws: AwsClients, region: str, name: str) -> bool:
    """Whether the alarm runs its actions (notifies its SNS topics) when its state changes."""
    return bool(_alarm(aws, region, name).get("ActionsEnabled", True))


def set_actions_enabled(aws: AwsClients, region: str, name: str, enabled: bool) -> None:
    """Let the alarm run its actions, or keep it from running them (Enable/DisableAlarmActions):
    the alarm still changes state either way."""
    client = aws.client("cloudwatch", region)
    try:
        if enabled:
            client.enable_alarm_actions(AlarmNames=[name])
        else:
            client.disable_alarm_actions(AlarmNames=[name])
    except ClientError as exc:
        raise DrillError(f"cloudwatch alarm '{name}' in {region}: {exc}") from exc


def put_alarm_state(aws: AwsClients, region: str, name: str, state: str, reason: str) -> None:
    """Force the alarm into ``state`` (it runs its actions as if the metric had crossed).

    CloudWatch sets it back at its next evaluation: a drill that forces an alarm reads the
    state (and the history) right away.
    """
    if state not in STATES:
        raise DrillError(f"cloudwatch alarm '{name}': state {state!r} is not one of {STATES}")
    try:
        aws.client("cloudwatch", region).set_alarm_state(
            AlarmName=name, StateValue=state, StateReason=reason
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFound":
            raise DrillError(f"cloudwatch alarm '{name}' not found in {region}") from exc
        raise DrillError(f"cloudwatch alarm '{name}' in {region}: {exc}") from exc


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


def state_change(item: Mapping[str, Any]) -> AlarmChange | None:
    """The state change one ``DescribeAlarmHistory`` item records; None for another kind
    of item (a configuration update, an action)."""
    if item.get("HistoryItemType") != "StateUpdate":
        return None
    old = new = reason = ""
    try:
        data = json.loads(item.get("HistoryData") or "")
    except ValueError:
        data = None
    if isinstance(data, dict):
        old = str((data.get("oldState") or {}).get("stateValue", ""))
        new = str((data.get("newState") or {}).get("stateValue", ""))
        reason = str((data.get("newState") or {}).get("stateReason", ""))
    if not (old and new):
        match = _SUMMARY.search(str(item.get("HistorySummary", "")))
        if match is None:
            return None
        old, new = match.groups()
    return AlarmChange(utc=_utc(item["Timestamp"]), old=old, new=new, reason=reason)


def _history_items(aws: AwsClients, region: str, name: str) -> Iterator[Mapping[str, Any]]:
    paginator = aws.client("cloudwatch", region).get_paginator("describe_alarm_history")
    pages = paginator.paginate(
        AlarmName=name,
        AlarmTypes=["MetricAlarm", "CompositeAlarm"],
        HistoryItemType="StateUpdate",
    )
    for page in pages:
        yield from page.get("AlarmHistoryItems", [])


def alarm_history(aws: AwsClients, region: str, name: str) -> list[AlarmChange]:
    """The alarm's state changes CloudWatch still holds (14 days), oldest first."""
    changes: list[AlarmChange] = []
    try:
        for item in _history_items(aws, region, name):
            if item.get("AlarmName", name) != name:  # the filter may be ignored
                continue
            change = state_change(item)
            if change is not None:
                changes.append(change)
    except ClientError as exc:
        # the first line only: an emulator's or a proxy's 5xx carries a whole HTML page
        first = str(exc).splitlines()[0]
        raise DrillError(
            f"cloudwatch alarm '{name}' in {region}: history unavailable: {first}"
        ) from exc
    changes.sort(key=lambda c: c.utc)
    return changes


@dataclass(frozen=True)
class Datapoint:
    """One period of a metric's statistics: its start and the smallest and largest value in it."""

    utc: datetime
    minimum: float
    maximum: float


def _statistics(
    aws: AwsClients,
    region: str,
    namespace: str,
    metric: str,
    dimensions: Mapping[str, str],
    start: datetime,
    end: datetime,
    period_s: int,
    statistics: list[str],
) -> list[dict[str, Any]]:
    """``GetMetricStatistics``' datapoints; a ClientError as one line naming the metric."""
    where = ", ".join(f"{k}={v}" for k, v in dimensions.items())
    label = f"cloudwatch metric {namespace} {metric} ({where}) in {region}"
    try:
        answer = aws.client("cloudwatch", region).get_metric_statistics(
            Namespace=namespace,
            MetricName=metric,
            Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
            StartTime=start,
            EndTime=end,
            Period=period_s,
            Statistics=statistics,
        )
    except ClientError as exc:
        first = str(exc).splitlines()[0]
        raise DrillError(f"{label}: {first}") from exc
    return list(answer.get("Datapoints", []))


def latest_datapoint(
    aws: AwsClients,
    region: str,
    namespace: str,
    metric: str,
    dimensions: Mapping[str, str],
    *,
    minutes: int = 5,
    period_s: int = 60,
    now: datetime | None = None,
) -> Datapoint | None:
    """The metric's latest period (minimum and maximum) in the last ``minutes``; None when
    CloudWatch holds no datapoint in that window."""
    end = now or datetime.now(UTC)
    start = end - timedelta(minutes=minutes)
    points = _statistics(
        aws, region, namespace, metric, dimensions, start, end, period_s, ["Minimum", "Maximum"]
    )
    if not points:
        return None
    latest = max(points, key=lambda p: _utc(p["Timestamp"]))
    return Datapoint(
        utc=_utc(latest["Timestamp"]),
        minimum=float(latest["Minimum"]),
        maximum=float(latest["Maximum"]),
    )


def maximum_between(
    aws: AwsClients,
    region: str,
    namespace: str,
    metric: str,
    dimensions: Mapping[str, str],
    start: datetime,
    end: datetime,
    *,
    period_s: int = 60,
) -> float | None:
    """The metric's largest value in the periods from ``start`` (floored to its period) to
    ``end``; None when CloudWatch holds no datapoint there (the metric is off, or not yet
    published)."""
    floor = start - timedelta(seconds=start.timestamp() % period_s)
    until = max(end, floor + timedelta(seconds=period_s))
    points = _statistics(
        aws, region, namespace, metric, dimensions, floor, until, period_s, ["Maximum"]
    )
    if not points:
        return None
    return max(float(point["Maximum"]) for point in points)
