"""ECS: a service's tasks, stopping some of them, its desired count, and waiting for it to settle.

A service's tasks are found by listing and then checking each task ourselves (its group is
``service:<name>``, it is meant to run and it runs): emulators ignore ``ListTasks`` filters, and
on real AWS a stopped task stays ``RUNNING`` for its stop timeout with ``desiredStatus`` already
``STOPPED``, which a drill must not count.

When a service was scaled up is ECS's own record: the service's events (``has started N tasks``,
the scheduler acting on the new desired count), which ECS keeps (the last 100) with their times.
moto (5.2) keeps an empty event list and never writes to it.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from drdrill.errors import DrillError, FaultError
from drdrill.observe import NotObserved
from drdrill.targets.aws import elbv2
from drdrill.targets.aws.session import AwsClients
from drdrill.timeline import Timeline, stamp_resolution

#: task states on the way to RUNNING (the ECS task lifecycle)
PENDING_STATES = frozenset({"PROVISIONING", "PENDING", "ACTIVATING"})

#: DescribeTasks takes at most this many tasks a call
_DESCRIBE_BATCH = 100


@dataclass(frozen=True)
class ServiceState:
    """What a service has: tasks wanted, running, starting, and healthy targets behind its ALB."""

    desired: int
    running: int
    pending: int
    #: healthy targets in the service's target group; None when no target group was asked about
    healthy_targets: int | None = None

    @property
    def steady(self) -> bool:
        """Every wanted task runs, none is starting, and (with a target group) each is healthy."""
        healthy = self.healthy_targets is None or self.healthy_targets >= self.desired
        return self.running == self.desired and self.pending == 0 and healthy

    def describe(self) -> str:
        """``desired 3, running 2, pending 1, healthy 2`` for messages."""
        text = f"desired {self.desired}, running {self.running}, pending {self.pending}"
        if self.healthy_targets is not None:
            text += f", healthy {self.healthy_targets}"
        return text


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """An AWS error as a DrillError naming the resource (the API's own words after it)."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "error")
        message = error.get("Message", str(exc))
        raise DrillError(f"{what}: {code}: {message}") from exc


def _name(cluster: str, service: str, region: str) -> str:
    return f"ecs service '{service}' (cluster '{cluster}', {region})"


def _describe_service(aws: AwsClients, region: str, cluster: str, service: str) -> dict[str, Any]:
    what = _name(cluster, service, region)
    with _errors(what):
        answer = aws.client("ecs", region).describe_services(cluster=cluster, services=[service])
    found: list[dict[str, Any]] = answer.get("services", [])
    if not found:
        raise DrillError(f"{what} not found")
    return found[0]


def _service_tasks(
    aws: AwsClients, region: str, cluster: str, service: str
) -> list[dict[str, Any]]:
    """The service's tasks that are meant to run (starting or running), described."""
    client = aws.client("ecs", region)
    arns: list[str] = []
    with _errors(_name(cluster, service, region)):
        pages = client.get_paginator("list_tasks").paginate(
            cluster=cluster, serviceName=service, desiredStatus="RUNNING"
        )
        for page in pages:
            arns.extend(page.get("taskArns", []))
        tasks: list[dict[str, Any]] = []
        for start in range(0, len(arns), _DESCRIBE_BATCH):
            batch = arns[start : start + _DESCRIBE_BATCH]
            tasks.extend(client.describe_tasks(cluster=cluster, tasks=batch).get("tasks", []))
    group = f"service:{service}"
    return [t for t in tasks if t.get("group") == group and t.get("desiredStatus") == "RUNNING"]


def _running(tasks: list[dict[str, Any]]) -> list[str]:
    return sorted(str(t["taskArn"]) for t in tasks if t.get("lastStatus") == "RUNNING")


def running_tasks(aws: AwsClients, region: str, cluster: str, service: str) -> list[str]:
    """The arns of the service's running tasks (sorted), not counting ones being stopped."""
    return _running(_service_tasks(aws, region, cluster, service))


def _how_many(running: int, count: int | None, percent: float | None, what: str) -> int:
    if (count is None) == (percent is None):
        raise FaultError(f"{what}: give count or percent of tasks to stop (one of them)")
    if count is not None:
        if count < 1:
            raise FaultError(f"{what}: count of tasks to stop must be at least 1, not {count}")
        return min(count, running)
    assert percent is not None
    if not 0 < percent <= 100:
        raise FaultError(f"{what}: percent of tasks to stop must be in (0, 100], not {percent:g}")
    # rounded up: "stop 10%" of a small service still stops one task
    return min(math.ceil(running * percent / 100 - 1e-9), running)


def stop_tasks(
    aws: AwsClients,
    region: str,
    cluster: str,
    service: str,
    *,
    count: int | None = None,
    percent: float | None = None,
    reason: str = "drdrill drill",
) -> list[str]:
    """Stop ``count`` (or ``percent``, rounded up) of the service's running tasks.

    Exactly one of ``count`` and ``percent`` is given; more than are running stops them all.
    Returns the arns stopped (in a dry run: the arns that would be; nothing is sent).
    """
    what = _name(cluster, service, region)
    running = running_tasks(aws, region, cluster, service)
    chosen = running[: _how_many(len(running), count, percent, what)]
    client = aws.client("ecs", region)
    with _errors(what):
        for arn in chosen:
            client.stop_task(cluster=cluster, task=arn, reason=reason)
    return chosen


def desired_count(aws: AwsClients, region: str, cluster: str, service: str) -> int:
    """The service's desired task count."""
    return int(_describe_service(aws, region, cluster, service)["desiredCount"])


def update_desired_count(
    aws: AwsClients, region: str, cluster: str, service: str, desired: int
) -> None:
    """Set the service's desired task count (the ECS scale-up or scale-down of a failover)."""
    what = _name(cluster, service, region)
    if desired < 0:
        raise FaultError(f"{what}: desired count must be at least 0, not {desired}")
    with _errors(what):
        aws.client("ecs", region).update_service(
            cluster=cluster, service=service, desiredCount=desired
        )


def _sample(
    aws: AwsClients, region: str, cluster: str, service: str, target_group_arn: str | None
) -> tuple[ServiceState, list[str]]:
    desired = desired_count(aws, region, cluster, service)
    tasks = _service_tasks(aws, region, cluster, service)
    running = _running(tasks)
    pending = sum(1 for t in tasks if t.get("lastStatus") in PENDING_STATES)
    healthy = (
        None if target_group_arn is None else elbv2.healthy_count(aws, region, target_group_arn)
    )
    return ServiceState(desired, len(running), pending, healthy), running


def service_state(
    aws: AwsClients,
    region: str,
    cluster: str,
    service: str,
    target_group_arn: str | None = None,
) -> ServiceState:
    """The service's counts now; healthy targets too when its target group is given.

    Running and pending are counted from the tasks themselves (not the service's
    ``runningCount``), the same way as :func:`running_tasks`.
    """
    return _sample(aws, region, cluster, service, target_group_arn)[0]


def wait_steady(
    aws: AwsClients,
    region: str,
    cluster: str,
    service: str,
    *,
    target_group_arn: str | None = None,
    timeline: Timeline | None = None,
    timeout_s: float = 600.0,
    interval_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> ServiceState:
    """Poll until the service is steady (:attr:`ServiceState.steady`); return that state.

    On the timeline (when given) each task that starts running after the first poll is an
    observed ``ecs_task_replaced`` (attr ``task``), and the first steady poll an observed
    ``ecs_service_steady``. An event is stamped at the start of the poll that saw it, with the
    gap back to the previous poll as its uncertainty (back to the start of the wait for the
    first poll). Time comes from the timeline's clock, else ``time.monotonic``.
    Raises :class:`~drdrill.observe.NotObserved` after ``timeout_s``.
    """
    clock = timeline.clock.mono if timeline is not None else time.monotonic
    started = clock()
    last = started
    seen: set[str] | None = None
    while True:
        at = clock()
        state, running = _sample(aws, region, cluster, service, target_group_arn)
        if seen is None:
            seen = set(running)
        else:
            for arn in running:
                if arn not in seen and timeline is not None:
                    timeline.observe(
                        "ecs_task_replaced",
                        at,
                        at - last,
                        task=arn,
                        region=region,
                        cluster=cluster,
                        service=service,
                    )
            seen.update(running)
        if state.steady:
            if timeline is not None:
                timeline.observe(
                    "ecs_service_steady",
                    at,
                    at - last,
                    desired=state.desired,
                    running=state.running,
                    healthy_targets=state.healthy_targets,
                    region=region,
                    cluster=cluster,
                    service=service,
                )
            return state
        last = at
        if at - started >= timeout_s:
            raise NotObserved(
                f"{_name(cluster, service, region)} not steady after {timeout_s:g} s "
                f"({state.describe()})"
            )
        sleep(max(0.0, interval_s - (clock() - at)))


#: the service event ECS writes when its scheduler starts tasks for a (new) desired count
STARTED_TASKS = re.compile(r"has started \d+ tasks?")


@dataclass(frozen=True)
class ServiceEvent:
    """One event of a service, as ECS recorded it."""

    id: str
    utc: datetime
    message: str

    @property
    def resolution_s(self) -> float:
        """How finely ECS stamped it: a millisecond, or a second when its time has no fraction."""
        return stamp_resolution(self.utc)


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


def service_events(aws: AwsClients, region: str, cluster: str, service: str) -> list[ServiceEvent]:
    """The events ECS keeps of the service, oldest first."""
    found = [
        ServiceEvent(str(e.get("id", "")), _utc(e["createdAt"]), str(e.get("message", "")))
        for e in _describe_service(aws, region, cluster, service).get("events", [])
    ]
    found.sort(key=lambda e: e.utc)
    return found


def tasks_started_events(
    aws: AwsClients, region: str, cluster: str, service: str, since: datetime
) -> list[ServiceEvent]:
    """The service's ``has started N tasks`` events at or after ``since``, oldest first."""
    return [
        e
        for e in service_events(aws, region, cluster, service)
        if e.utc >= since and STARTED_TASKS.search(e.message)
    ]


@dataclass(frozen=True)
class TaskTime:
    """A moment in one task's life as ECS recorded it: ``startedAt`` or ``stoppedAt``."""

    task_arn: str
    utc: datetime
    #: ECS's ``stoppedReason`` for a stop, "" for a start
    reason: str = ""

    @property
    def resolution_s(self) -> float:
        """How finely ECS stamped it: a millisecond, or a second when its time has no fraction."""
        return stamp_resolution(self.utc)


def task_times(
    aws: AwsClients, region: str, cluster: str, service: str, since: datetime
) -> tuple[list[TaskTime], list[TaskTime]]:
    """The service's tasks started and stopped at or after ``since``, each list oldest first:
    ECS's ``startedAt`` and ``stoppedAt`` of every task of the service it still lists (it keeps
    stopped tasks for about an hour), running or stopped."""
    client = aws.client("ecs", region)
    group = f"service:{service}"
    arns: list[str] = []
    tasks: list[dict[str, Any]] = []
    with _errors(_name(cluster, service, region)):
        for status in ("RUNNING", "STOPPED"):
            pages = client.get_paginator("list_tasks").paginate(
                cluster=cluster, serviceName=service, desiredStatus=status
            )
            for page in pages:
                arns.extend(a for a in page.get("taskArns", []) if a not in arns)
        for start in range(0, len(arns), _DESCRIBE_BATCH):
            batch = arns[start : start + _DESCRIBE_BATCH]
            tasks.extend(client.describe_tasks(cluster=cluster, tasks=batch).get("tasks", []))
    started: list[TaskTime] = []
    stopped: list[TaskTime] = []
    for task in tasks:
        if task.get("group") != group:  # an emulator may ignore the filter
            continue
        arn = str(task["taskArn"])
        if task.get("startedAt") is not None and _utc(task["startedAt"]) >= since:
            started.append(TaskTime(arn, _utc(task["startedAt"])))
        if task.get("stoppedAt") is not None and _utc(task["stoppedAt"]) >= since:
            reason = str(task.get("stoppedReason", ""))
            stopped.append(TaskTime(arn, _utc(task["stoppedAt"]), reason))
    started.sort(key=lambda t: t.utc)
    stopped.sort(key=lambda t: t.utc)
    return started, stopped
