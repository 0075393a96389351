"""CloudWatch Logs: what a function logged, with the time CloudWatch stamped on each line.

The DR automation's invocations are the ``START RequestId: <id>`` lines the Lambda runtime writes
to the function's log group (``/aws/lambda/<function>``) as each invocation starts; the record
changes it made are the Route53 change ids (``/change/C...``) it printed. Each line's time is the
event's own timestamp (milliseconds), as the runtime stamped it, not when we read it.

moto stores and filters what ``PutLogEvents`` puts; a Lambda runs no code there without Docker,
so nothing writes a function's log there by itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from drdrill.errors import DrillError
from drdrill.targets.aws.session import AwsClients

#: the filter pattern of the runtime's invocation lines (a quoted term: the exact phrase)
START_PATTERN = '"START RequestId"'
_START = re.compile(r"START RequestId: (\S+)")


def lambda_log_group(function: str) -> str:
    """The log group a Lambda function logs to by default."""
    return f"/aws/lambda/{function}"


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class LogLine:
    """One log event: where it was logged, when CloudWatch stamped it, and its text."""

    group: str
    stream: str
    utc: datetime
    message: str
    #: log events are stamped to the millisecond
    resolution_s: ClassVar[float] = 0.001


@dataclass(frozen=True)
class LambdaStart:
    """One invocation of a function as the runtime logged it when it started."""

    function: str
    request_id: str
    utc: datetime
    resolution_s: ClassVar[float] = 0.001


def lines(
    aws: AwsClients,
    region: str,
    group: str,
    since: datetime,
    pattern: str | None = None,
) -> list[LogLine]:
    """The group's log events stamped at or after ``since`` (matching ``pattern``, a CloudWatch
    Logs filter pattern), oldest first; ``[]`` when the group does not exist yet (a function
    that never ran has none)."""
    params: dict[str, Any] = {"logGroupName": group, "startTime": _ms(since)}
    if pattern is not None:
        params["filterPattern"] = pattern
    found: list[LogLine] = []
    try:
        pages = aws.client("logs", region).get_paginator("filter_log_events").paginate(**params)
        for page in pages:
            for event in page.get("events", []):
                stamped = datetime.fromtimestamp(int(event["timestamp"]) / 1000, tz=UTC)
                if stamped < since:  # an emulator may ignore startTime
                    continue
                found.append(
                    LogLine(
                        group=group,
                        stream=str(event.get("logStreamName", "")),
                        utc=stamped,
                        message=str(event.get("message", "")),
                    )
                )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return []
        first = str(exc).splitlines()[0]
        raise DrillError(f"cloudwatch log group '{group}' in {region}: {first}") from exc
    found.sort(key=lambda line: line.utc)
    return found


def lambda_starts(
    aws: AwsClients, region: str, function: str, since: datetime
) -> list[LambdaStart]:
    """The function's invocations that started at or after ``since``, oldest first, from the
    ``START RequestId`` lines of its log group."""
    starts: list[LambdaStart] = []
    for line in lines(aws, region, lambda_log_group(function), since, START_PATTERN):
        match = _START.search(line.message)
        if match is not None:
            starts.append(LambdaStart(function, match.group(1), line.utc))
    return starts
