"""The ECS adapter against the moto server, judged by the state it leaves there.

What moto does, and how these tests live with it:
- ``CreateService`` starts no task (``runningCount`` 0, ``pendingCount`` = desired): the tests
  start the service's tasks themselves with ``RunTask(group="service:<name>")`` on FARGATE (no
  container instance needed), standing in for the ECS scheduler, replacements included.
- By default moto moves a task one step along its lifecycle on every ``DescribeTasks``
  (RUNNING -> DEACTIVATING -> STOPPING -> ...), so a task looked at once no longer runs: the
  module fixture pins the ``ecs::task`` state transition through moto's state-manager API.
- ``ListTasks`` ignores ``serviceName``; ``StopTask`` stops at once and nothing replaces it.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from drdrill.errors import DrillError, FaultError
from drdrill.observe import NotObserved
from drdrill.targets.aws import ecs
from drdrill.targets.aws.ecs import ServiceState
from drdrill.targets.aws.session import AwsClients
from drdrill.timeline import Clock, Timeline

PRIMARY = "eu-west-1"
AMI = "ami-12c6146b"


def _transition(endpoint: str, transition: dict[str, object] | None = None) -> dict[str, object]:
    """The ``ecs::task`` state transition of the moto server; set it first when given."""
    base = f"{endpoint}/moto-api/state-manager"
    if transition is not None:
        request = urllib.request.Request(
            f"{base}/set-transition",
            data=json.dumps({"model_name": "ecs::task", "transition": transition}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status in (200, 201)
    with urllib.request.urlopen(f"{base}/get-transition?model_name=ecs::task", timeout=10) as got:
        current: dict[str, object] = json.loads(got.read())
    return current


@pytest.fixture(scope="module", autouse=True)
def tasks_stay_running(moto_endpoint: str) -> Iterator[None]:
    """Tasks keep their state when described (as on AWS) until a StopTask.

    The setting is the whole (shared) server's: what was set before is put back afterwards.
    """
    before = _transition(moto_endpoint)
    pinned = {"progression": "manual", "times": 10**9}
    assert _transition(moto_endpoint, pinned) == pinned
    try:
        yield
    finally:
        _transition(moto_endpoint, before)


@dataclass(frozen=True)
class Service:
    """A service provisioned in moto for one test."""

    cluster: str
    name: str


def _start_tasks(aws: AwsClients, svc: Service, count: int) -> list[str]:
    """What the ECS scheduler would do: run tasks in the service's group."""
    answer = aws.client("ecs", PRIMARY).run_task(
        cluster=svc.cluster,
        taskDefinition=svc.name,
        count=count,
        launchType="FARGATE",
        group=f"service:{svc.name}",
        startedBy="ecs-svc/drdrill-test",
    )
    assert answer["failures"] == []
    return sorted(t["taskArn"] for t in answer["tasks"])


def _service(aws: AwsClients, desired: int = 3, tasks: int | None = None) -> Service:
    suffix = uuid.uuid4().hex[:10]
    svc = Service(cluster=f"drill-{suffix}", name=f"web-{suffix}")
    client = aws.client("ecs", PRIMARY)
    client.create_cluster(clusterName=svc.cluster)
    client.register_task_definition(
        family=svc.name,
        networkMode="bridge",
        containerDefinitions=[{"name": "web", "image": "nginx", "memory": 128}],
    )
    client.create_service(
        cluster=svc.cluster,
        serviceName=svc.name,
        taskDefinition=svc.name,
        desiredCount=desired,
        launchType="FARGATE",
    )
    _start_tasks(aws, svc, desired if tasks is None else tasks)
    return svc


def _statuses(aws: AwsClients, svc: Service, arns: list[str]) -> dict[str, tuple[str, str]]:
    found = aws.client("ecs", PRIMARY).describe_tasks(cluster=svc.cluster, tasks=arns)["tasks"]
    return {t["taskArn"]: (t["lastStatus"], t.get("stoppedReason", "")) for t in found}


def _all_tasks(aws: AwsClients, svc: Service) -> list[str]:
    arns = aws.client("ecs", PRIMARY).list_tasks(cluster=svc.cluster)["taskArns"]
    return sorted(arns)


class FakeTime:
    """A monotonic clock that moves only when the code under test sleeps."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def mono(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def timeline(self) -> Timeline:
        return Timeline(Clock(mono=self.mono, wall=lambda: 1_700_000_000.0 + self.now))


def test_running_tasks_are_the_services_own_running_ones(aws: AwsClients) -> None:
    svc = _service(aws, desired=3)
    mine = _all_tasks(aws, svc)
    client = aws.client("ecs", PRIMARY)
    # a task of the same cluster outside the service, and one of the service stopped by hand
    client.run_task(cluster=svc.cluster, taskDefinition=svc.name, count=1, launchType="FARGATE")
    client.stop_task(cluster=svc.cluster, task=mine[0], reason="by hand")

    running = ecs.running_tasks(aws, PRIMARY, svc.cluster, svc.name)

    assert len(_all_tasks(aws, svc)) == 4
    assert running == mine[1:]


def test_stop_tasks_by_count_leaves_them_stopped(aws: AwsClients) -> None:
    svc = _service(aws, desired=3)
    before = ecs.running_tasks(aws, PRIMARY, svc.cluster, svc.name)

    stopped = ecs.stop_tasks(aws, PRIMARY, svc.cluster, svc.name, count=2, reason="dr drill 42")

    assert len(stopped) == 2
    assert set(stopped) <= set(before)
    statuses = _statuses(aws, svc, before)
    assert {arn: statuses[arn] for arn in stopped} == {
        arn: ("STOPPED", "dr drill 42") for arn in stopped
    }
    left = ecs.running_tasks(aws, PRIMARY, svc.cluster, svc.name)
    assert left == sorted(set(before) - set(stopped))
    assert statuses[left[0]][0] == "RUNNING"
    stop_calls = [c for c in aws.log.calls if c.operation == "StopTask"]
    assert sorted(c.params["task"] for c in stop_calls) == sorted(stopped)
    assert all(c.sent and c.params["cluster"] == svc.cluster for c in stop_calls)


@pytest.mark.parametrize(
    ("tasks", "percent", "expected"),
    [(4, 50.0, 2), (4, 10.0, 1), (3, 100.0, 3), (3, 34.0, 2)],
)
def test_stop_tasks_by_percent_rounds_up(
    aws: AwsClients, tasks: int, percent: float, expected: int
) -> None:
    svc = _service(aws, desired=tasks)

    stopped = ecs.stop_tasks(aws, PRIMARY, svc.cluster, svc.name, percent=percent)

    assert len(stopped) == expected
    assert len(ecs.running_tasks(aws, PRIMARY, svc.cluster, svc.name)) == tasks - expected
    assert {s for s, _ in _statuses(aws, svc, stopped).values()} == {"STOPPED"}


def test_stop_more_than_run_stops_them_all(aws: AwsClients) -> None:
    svc = _service(aws, desired=2)

    assert len(ecs.stop_tasks(aws, PRIMARY, svc.cluster, svc.name, count=5)) == 2
    assert ecs.running_tasks(aws, PRIMARY, svc.cluster, svc.name) == []


@pytest.mark.parametrize(
    ("count", "percent", "message"),
    [
        (None, None, "give count or percent"),
        (1, 50.0, "give count or percent"),
        (0, None, "at least 1, not 0"),
        (None, 0.0, r"in \(0, 100\], not 0"),
        (None, 150.0, r"in \(0, 100\], not 150"),
    ],
)
def test_stop_tasks_refuses_a_bad_amount_and_sends_nothing(
    aws: AwsClients, count: int | None, percent: float | None, message: str
) -> None:
    svc = _service(aws, desired=2)

    with pytest.raises(FaultError, match=rf"ecs service '{svc.name}' .*{message}"):
        ecs.stop_tasks(aws, PRIMARY, svc.cluster, svc.name, count=count, percent=percent)

    assert not [c for c in aws.log.calls if c.operation == "StopTask"]
    assert len(ecs.running_tasks(aws, PRIMARY, svc.cluster, svc.name)) == 2


def test_dry_run_stop_tasks_sends_nothing_and_logs_the_plan(aws: AwsClients) -> None:
    svc = _service(aws, desired=3)
    before = ecs.running_tasks(aws, PRIMARY, svc.cluster, svc.name)
    aws.dry_run = True

    would = ecs.stop_tasks(aws, PRIMARY, svc.cluster, svc.name, count=1)

    aws.dry_run = False
    assert len(would) == 1
    assert ecs.running_tasks(aws, PRIMARY, svc.cluster, svc.name) == before
    assert {s for s, _ in _statuses(aws, svc, before).values()} == {"RUNNING"}
    [plan] = [c for c in aws.log.calls if c.operation == "StopTask"]
    assert not plan.sent
    assert plan.describe() == (
        f"would call ecs.StopTask(cluster={svc.cluster!r}, reason='drdrill drill', "
        f"task={would[0]!r}) in {PRIMARY}"
    )


def test_update_desired_count_is_seen_by_describe_services(aws: AwsClients) -> None:
    svc = _service(aws, desired=3)
    assert ecs.desired_count(aws, PRIMARY, svc.cluster, svc.name) == 3

    ecs.update_desired_count(aws, PRIMARY, svc.cluster, svc.name, 6)

    described = aws.client("ecs", PRIMARY).describe_services(
        cluster=svc.cluster, services=[svc.name]
    )["services"][0]
    assert described["desiredCount"] == 6
    assert ecs.desired_count(aws, PRIMARY, svc.cluster, svc.name) == 6


def test_a_negative_desired_count_is_refused(aws: AwsClients) -> None:
    svc = _service(aws, desired=1)

    with pytest.raises(FaultError, match="desired count must be at least 0, not -1"):
        ecs.update_desired_count(aws, PRIMARY, svc.cluster, svc.name, -1)

    assert not [c for c in aws.log.calls if c.operation == "UpdateService"]


def test_a_missing_service_or_cluster_is_a_drill_error(aws: AwsClients) -> None:
    svc = _service(aws, desired=1)

    with pytest.raises(
        DrillError, match=r"ecs service 'nope' \(cluster '.*', eu-west-1\) not found"
    ):
        ecs.desired_count(aws, PRIMARY, svc.cluster, "nope")
    with pytest.raises(DrillError, match=r"ecs service 'web' \(cluster 'no-such-cluster'.*Cluster"):
        ecs.desired_count(aws, PRIMARY, "no-such-cluster", "web")


def _alb_targets(aws: AwsClients, healthy: int, stopped: int) -> tuple[str, list[str]]:
    """A target group of instance targets, ``stopped`` of them on stopped instances."""
    ec2 = aws.client("ec2", PRIMARY)
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    group = aws.client("elbv2", PRIMARY).create_target_group(
        Name=f"tg-{uuid.uuid4().hex[:12]}", Protocol="HTTP", Port=80, VpcId=vpc
    )["TargetGroups"][0]["TargetGroupArn"]
    total = healthy + stopped
    ids = [
        i["InstanceId"]
        for i in ec2.run_instances(ImageId=AMI, MinCount=total, MaxCount=total)["Instances"]
    ]
    aws.client("elbv2", PRIMARY).register_targets(
        TargetGroupArn=group, Targets=[{"Id": i} for i in ids]
    )
    if stopped:
        ec2.stop_instances(InstanceIds=ids[healthy:])
    return group, ids[healthy:]


def test_service_state_counts_tasks_and_healthy_targets(aws: AwsClients) -> None:
    svc = _service(aws, desired=3)
    group, _ = _alb_targets(aws, healthy=2, stopped=1)
    ecs.stop_tasks(aws, PRIMARY, svc.cluster, svc.name, count=1)

    state = ecs.service_state(aws, PRIMARY, svc.cluster, svc.name, target_group_arn=group)

    assert state == ServiceState(desired=3, running=2, pending=0, healthy_targets=2)
    assert not state.steady
    assert ecs.service_state(aws, PRIMARY, svc.cluster, svc.name) == ServiceState(3, 2, 0, None)


def test_wait_steady_observes_the_replacement_and_the_steady_service(aws: AwsClients) -> None:
    svc = _service(aws, desired=3)
    [stopped] = ecs.stop_tasks(aws, PRIMARY, svc.cluster, svc.name, count=1)
    fake = FakeTime()
    timeline = fake.timeline()
    replaced: list[str] = []

    def sleep(seconds: float) -> None:
        fake.sleep(seconds)
        if len(fake.sleeps) == 2:  # the scheduler replaces the task during the second wait
            replaced.extend(_start_tasks(aws, svc, 1))

    state = ecs.wait_steady(
        aws, PRIMARY, svc.cluster, svc.name, timeline=timeline, interval_s=5.0, sleep=sleep
    )

    assert state == ServiceState(3, 3, 0, None)
    assert fake.sleeps == [5.0, 5.0]
    assert stopped not in ecs.running_tasks(aws, PRIMARY, svc.cluster, svc.name)
    event = timeline.get("ecs_task_replaced")
    assert (event.mono, event.uncertainty_s, event.attrs["task"]) == (110.0, 5.0, replaced[0])
    assert str(event.source) == "observed"
    steady = timeline.get("ecs_service_steady")
    assert (steady.mono, steady.uncertainty_s) == (110.0, 5.0)
    assert dict(steady.attrs) == {
        "desired": 3,
        "running": 3,
        "healthy_targets": None,
        "region": PRIMARY,
        "cluster": svc.cluster,
        "service": svc.name,
    }


def test_wait_steady_on_a_steady_service_returns_at_the_first_poll(aws: AwsClients) -> None:
    svc = _service(aws, desired=2)
    fake = FakeTime()
    timeline = fake.timeline()

    state = ecs.wait_steady(
        aws, PRIMARY, svc.cluster, svc.name, timeline=timeline, sleep=fake.sleep
    )

    assert state.steady
    assert fake.sleeps == []
    assert [(e.name, e.mono, e.uncertainty_s) for e in timeline] == [
        ("ecs_service_steady", 100.0, 0.0)
    ]


def test_wait_steady_waits_for_healthy_targets_and_a_raised_count(aws: AwsClients) -> None:
    svc = _service(aws, desired=2)
    group, stopped_instances = _alb_targets(aws, healthy=2, stopped=1)
    ecs.update_desired_count(aws, PRIMARY, svc.cluster, svc.name, 3)
    fake = FakeTime()
    timeline = fake.timeline()

    def sleep(seconds: float) -> None:
        fake.sleep(seconds)
        if len(fake.sleeps) == 1:  # the third task starts, but its target is not healthy yet
            _start_tasks(aws, svc, 1)
        if len(fake.sleeps) == 3:
            aws.client("ec2", PRIMARY).start_instances(InstanceIds=stopped_instances)

    state = ecs.wait_steady(
        aws,
        PRIMARY,
        svc.cluster,
        svc.name,
        target_group_arn=group,
        timeline=timeline,
        interval_s=2.0,
        sleep=sleep,
    )

    assert state == ServiceState(3, 3, 0, 3)
    assert fake.sleeps == [2.0, 2.0, 2.0]
    assert timeline.get("ecs_task_replaced").mono == 102.0
    assert timeline.get("ecs_service_steady").mono == 106.0
    assert timeline.get("ecs_service_steady").attrs["healthy_targets"] == 3


def test_wait_steady_gives_up_after_its_timeout(aws: AwsClients) -> None:
    svc = _service(aws, desired=3)
    ecs.stop_tasks(aws, PRIMARY, svc.cluster, svc.name, count=1)
    fake = FakeTime()
    timeline = fake.timeline()

    with pytest.raises(
        NotObserved, match=r"not steady after 30 s \(desired 3, running 2, pending 0\)"
    ):
        ecs.wait_steady(
            aws,
            PRIMARY,
            svc.cluster,
            svc.name,
            timeline=timeline,
            timeout_s=30.0,
            interval_s=10.0,
            sleep=fake.sleep,
        )

    assert fake.sleeps == [10.0, 10.0, 10.0]
    assert timeline.events == []
