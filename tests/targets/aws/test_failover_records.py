"""The failover's reported events on AWS, each read back from moto's own record after the test
made the API call the DR automation would make, each with AWS's time for it.

Where moto keeps no record, the test supplies it the way the target reads it, and says so:
- a Lambda runs no code in moto without Docker, so nothing writes the function's log: the test
  writes the runtime's ``START RequestId`` line and the change the function would print;
- moto's DescribeEvents never holds a promotion: the test puts RDS's event onto moto's model
  after the real PromoteReadReplica call;
- moto writes no service event: the test puts ECS's ``has started N tasks`` onto moto's model
  after the real UpdateService call;
- moto's GetChange makes its answer up (any id INSYNC, submitted when asked): the record's id is
  the real change's, its time only bounded from below.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.fake_clock import FakeClock

from drdrill.errors import DrillError
from drdrill.sandbox.aws.provision import (
    ProvisionedStack,
    put_function_log,
    put_rds_event,
    put_service_event,
    put_task_times,
)
from drdrill.targets.aws import ecs, lambda_, logs, rds, route53
from drdrill.targets.aws.failover import RecordSwitchSeen, ScaleRequest
from drdrill.targets.aws.session import AwsClients
from drdrill.targets.aws.target import AwsTarget
from drdrill.targets.base import PlatformRecords

from .aws_target import aws_target


def _target(tmp_path: Path, stack: ProvisionedStack) -> AwsTarget:
    target = aws_target(tmp_path, stack)
    target.records.min_interval_s = 0.0  # each look asks moto again
    return target


def _function(stack: ProvisionedStack) -> tuple[str, str]:
    p = stack.settings.primary
    assert p.lambda_function
    return p.region, p.lambda_function


def test_automation_invoked_is_the_functions_start_line(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    target = _target(tmp_path, stack)
    aws = AwsClients(endpoint_url=moto_endpoint)
    region, function = _function(stack)
    since = time.monotonic()
    now = datetime.now(UTC)
    before = now - timedelta(minutes=5)  # an earlier invocation: not this drill's
    started = now + timedelta(milliseconds=250)
    # the runtime's lines (moto runs no function code without Docker)
    put_function_log(
        aws,
        region,
        function,
        [
            (before, "START RequestId: old-one Version: $LATEST"),
            (started, "START RequestId: 8f1d-drill Version: $LATEST"),
            (started + timedelta(seconds=2), "END RequestId: 8f1d-drill"),
        ],
    )

    found = target.reported_since(since, "automation_invoked")

    assert len(found) == 1
    (record,) = found
    assert isinstance(record, logs.LambdaStart)
    assert record.request_id == "8f1d-drill"
    # the log's own millisecond time, not when it was read
    assert abs((record.utc - started).total_seconds()) < 0.002
    # on the drill's timeline it lands where the wall clock says (a clock of a fixed offset:
    # with the real one, two reads on a loaded runner may be far apart)
    clock = FakeClock()
    event = clock.timeline().report("failover_started", record.utc)
    assert event.mono == pytest.approx(record.utc.timestamp() - (clock.wall() - clock.mono()))


def test_automation_invoked_includes_our_own_invocation(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    target = _target(tmp_path, stack)
    since = time.monotonic()
    sent_after = datetime.now(UTC)
    # moto invokes but runs nothing without Docker: a function error, after the invocation
    with pytest.raises(DrillError, match="failed"):
        target.invoke_dr()
    answered_before = datetime.now(UTC)

    (record,) = target.reported_since(since, "automation_invoked")

    assert isinstance(record, lambda_.Invocation)
    assert record.request_id
    assert sent_after <= record.utc <= record.answered_utc <= answered_before
    assert record.resolution_s == (record.answered_utc - record.utc).total_seconds()


def test_rds_promotion_requested_is_rds_event_on_the_replica(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    target = _target(tmp_path, stack)
    aws = AwsClients(endpoint_url=moto_endpoint)
    dr = stack.settings.dr
    since = time.monotonic()
    assert target.reported_since(since, "rds_promotion_requested") == []

    rds.promote_read_replica(aws, dr.region, dr.rds.instance_id)
    asked = datetime.now(UTC)
    # RDS's events of the promotion, which moto does not record: supplied on its model
    put_rds_event(aws, dr.region, dr.rds.instance_id, "Finished DB instance backup", asked)
    put_rds_event(
        aws,
        dr.region,
        dr.rds.instance_id,
        "Replication for the Read Replica has been manually stopped.",
        asked + timedelta(milliseconds=10),
    )
    put_rds_event(
        aws,
        dr.region,
        dr.rds.instance_id,
        "Promoted Read Replica to a stand-alone database instance",
        asked + timedelta(seconds=40),
    )

    found = target.reported_since(since, "rds_promotion_requested")

    assert [type(r) for r in found] == [rds.RdsEvent, rds.RdsEvent]
    promotion = found[0]
    assert isinstance(promotion, rds.RdsEvent)
    assert promotion.utc == asked + timedelta(milliseconds=10)  # the first of the promotion
    assert "manually stopped" in promotion.message


def test_ecs_scale_requested_from_the_service_events_and_our_own_update(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    target = _target(tmp_path, stack)
    aws = AwsClients(endpoint_url=moto_endpoint)
    dr = stack.settings.dr
    since = time.monotonic()

    # the automation's UpdateService (a real call), then ECS's scheduler's event (supplied)
    ecs.update_desired_count(aws, dr.region, dr.ecs.cluster, dr.ecs.service, 2)
    started = datetime.now(UTC)
    put_service_event(
        aws,
        dr.region,
        dr.ecs.cluster,
        dr.ecs.service,
        f"(service {dr.ecs.service}) has started 2 tasks: (task 1a2b) (task 3c4d).",
        started,
    )
    put_service_event(
        aws,
        dr.region,
        dr.ecs.cluster,
        dr.ecs.service,
        f"(service {dr.ecs.service}) has reached a steady state.",
        started + timedelta(seconds=30),
    )
    (record,) = target.reported_since(since, "ecs_scale_requested")
    assert isinstance(record, ecs.ServiceEvent)
    # ECS's own time, to its millisecond
    assert abs((record.utc - started).total_seconds()) < 0.001
    assert "has started 2 tasks" in record.message

    # drdrill's own UpdateService of the DR service counts too, from when it was sent
    sent_after = datetime.now(UTC)
    target.scale("dr", 3)
    found = target.reported_since(since, "ecs_scale_requested")
    assert len(found) == 2
    own = found[1]
    assert isinstance(own, ScaleRequest) and own.desired == 3
    assert own.utc >= sent_after
    assert ecs.desired_count(aws, dr.region, dr.ecs.cluster, dr.ecs.service) == 3


def test_dns_switch_requested_is_route53s_change_the_automation_logged(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    target = _target(tmp_path, stack)
    aws = AwsClients(endpoint_url=moto_endpoint)
    region, function = _function(stack)
    since = time.monotonic()
    before = datetime.now(UTC)

    # the record change the automation makes (a real call) ...
    change_id = route53.change_record(
        aws, stack.zone_id, f"switch.{stack.record_name}", "A", ["192.0.2.20"], 60
    )
    # ... and the line it prints with the response (moto runs no function code)
    put_function_log(
        aws,
        region,
        function,
        [(datetime.now(UTC), f"switched: {{'ChangeInfo': {{'Id': '{change_id}'}}}}")],
    )

    (record,) = target.reported_since(since, "dns_switch_requested")

    assert isinstance(record, route53.RecordChange)
    assert record.id == change_id.removeprefix("/change/")
    assert record.utc >= before  # moto: the time of the GetChange, which follows the change


def test_dns_switch_requested_from_the_lambdas_answer(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    target = _target(tmp_path, stack)
    since = time.monotonic()
    # an invocation answered with the change it made (moto's answer supplied, as Docker is not
    # there to run the function)
    target.records.note_invocation(
        lambda_.Invocation(
            function="dr",
            request_id="r-1",
            utc=datetime.now(UTC),
            answered_utc=datetime.now(UTC),
            answer={"status": "completed", "dns": {"ChangeInfo": {"Id": "/change/C0FFEE42"}}},
        )
    )
    (record,) = target.reported_since(since, "dns_switch_requested")
    assert isinstance(record, route53.RecordChange) and record.id == "C0FFEE42"


def test_records_before_the_drill_are_not_its_own(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    target = _target(tmp_path, stack)
    aws = AwsClients(endpoint_url=moto_endpoint)
    dr = stack.settings.dr
    earlier = datetime.now(UTC) - timedelta(seconds=30)
    put_rds_event(aws, dr.region, dr.rds.instance_id, "Promoting read replica", earlier)
    put_service_event(
        aws, dr.region, dr.ecs.cluster, dr.ecs.service, "has started 2 tasks", earlier
    )
    since = time.monotonic()
    assert target.reported_since(since, "rds_promotion_requested") == []
    assert target.reported_since(since, "ecs_scale_requested") == []
    # 31 s earlier they are
    assert len(target.reported_since(since - 31, "rds_promotion_requested")) == 1


def test_an_unknown_record_is_a_one_line_error(stack: ProvisionedStack, tmp_path: Path) -> None:
    with pytest.raises(DrillError, match=r"no record 'alarm_raised' \(known: automation_invoked"):
        _target(tmp_path, stack).reported_since(time.monotonic(), "alarm_raised")


def test_aws_is_asked_at_most_once_an_interval(stack: ProvisionedStack, tmp_path: Path) -> None:
    target = aws_target(tmp_path, stack)
    target.records.min_interval_s = 3600.0
    since = time.monotonic()
    before = len(target.aws.log.calls)
    for _ in range(5):
        target.reported_since(since, "rds_promotion_requested")
    calls = [c for c in target.aws.log.calls[before:] if c.operation == "DescribeEvents"]
    assert len(calls) == 1


def test_task_times_are_ecs_stopped_at_and_started_at_of_the_primary_service(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    """The ECS drill's ``task_stopped``/``task_started`` are ECS's own stamps of the service's
    tasks (moto stamps a stopped task's ``stoppedAt``; its replacement comes from a real
    ``UpdateService`` here, as moto replaces nothing by itself)."""
    target = _target(tmp_path, stack)
    aws = AwsClients(endpoint_url=moto_endpoint)
    p = stack.settings.primary
    since = time.monotonic()
    assert target.platform_records(since, "task_stopped") == []
    assert isinstance(target, PlatformRecords)
    before = datetime.now(UTC) - timedelta(seconds=1)

    victim, other = ecs.running_tasks(aws, p.region, p.ecs.cluster, p.ecs.service)[:2]
    aws.client("ecs", p.region).stop_task(cluster=p.ecs.cluster, task=victim, reason="drill")
    # ECS stamps to the millisecond: a time after the drill's start, whole milliseconds
    soon = datetime.now(UTC) + timedelta(milliseconds=2)
    stopped_at = soon.replace(microsecond=soon.microsecond // 1000 * 1000 or 1000)
    # ECS's stamps, which moto does not write: supplied on its model (the calls stay real)
    put_task_times(aws, p.region, p.ecs.cluster, victim, started=before - timedelta(hours=1))
    put_task_times(aws, p.region, p.ecs.cluster, victim, stopped=stopped_at)
    put_task_times(aws, p.region, p.ecs.cluster, other, started=stopped_at + timedelta(seconds=3))

    stops = target.platform_records(since, "task_stopped")
    starts = target.platform_records(since, "task_started")

    assert [(t.task_arn, t.reason) for t in stops if isinstance(t, ecs.TaskTime)] == [
        (victim, "drill")
    ]
    assert stops[0].utc == stopped_at and stops[0].resolution_s == 0.001
    # the victim started before the drill: only the task started since counts
    assert [t.task_arn for t in starts if isinstance(t, ecs.TaskTime)] == [other]
    assert starts[0].utc == stopped_at + timedelta(seconds=3)


def test_db_restarted_is_rds_event_of_the_primary_back_from_its_reboot(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    target = _target(tmp_path, stack)
    aws = AwsClients(endpoint_url=moto_endpoint)
    p = stack.settings.primary
    since = time.monotonic()
    asked = datetime.now(UTC)
    put_rds_event(aws, p.region, p.rds.instance_id, "DB instance shutdown", asked)
    put_rds_event(
        aws, p.region, p.rds.instance_id, "DB instance restarted", asked + timedelta(seconds=4)
    )
    put_rds_event(
        aws,
        p.region,
        p.rds.instance_id,
        "Multi-AZ instance failover completed",
        asked + timedelta(seconds=9),
    )
    # the replica's events are not the primary's
    put_rds_event(
        aws,
        stack.settings.dr.region,
        stack.settings.dr.rds.instance_id,
        "DB instance restarted",
        asked + timedelta(seconds=1),
    )

    found = target.platform_records(since, "db_restarted")

    assert [r.message for r in found if isinstance(r, rds.RdsEvent)] == [
        "DB instance restarted",
        "Multi-AZ instance failover completed",
    ]
    assert found[0].utc == asked + timedelta(seconds=4)


def _point_primary_record_at(aws: AwsClients, stack: ProvisionedStack, dns: str, zone: str) -> None:
    """What the runbook's failover does to the record (an UPSERT of the PRIMARY alias)."""
    aws.client("route53", "us-east-1").change_resource_record_sets(
        HostedZoneId=stack.zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": stack.record_name,
                        "Type": "A",
                        "SetIdentifier": "primary",
                        "Failover": "PRIMARY",
                        "AliasTarget": {
                            "HostedZoneId": zone,
                            "DNSName": dns,
                            "EvaluateTargetHealth": True,
                        },
                    },
                }
            ]
        },
    )


def test_an_automation_that_lets_out_no_change_id_is_timed_from_the_record_set(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    """Before the fix a DR Lambda that printed no Route53 change id (most do not) failed the
    drill after 60 s: "the stack never reported 'dns_switch_requested'"."""
    target = _target(tmp_path, stack)
    target.records.change_id_grace_s = 0.3
    aws = AwsClients(endpoint_url=moto_endpoint)
    since = time.monotonic()
    assert target.reported_since(since, "dns_switch_requested") == []  # a look: on primary
    looked = datetime.now(UTC)

    _point_primary_record_at(
        aws, stack, "DualStack." + stack.dr.load_balancer_dns + ".", stack.dr.load_balancer_zone_id
    )
    switched = datetime.now(UTC)
    # seen on DR, but a change id may still come: not yet
    assert target.reported_since(since, "dns_switch_requested") == []
    time.sleep(0.4)
    (record,) = target.reported_since(since, "dns_switch_requested")

    assert isinstance(record, RecordSwitchSeen)
    # between the look that saw primary and the one that saw DR: the switch lies inside
    assert record.utc <= looked <= switched <= record.seen_utc
    assert record.resolution_s == (record.seen_utc - record.utc).total_seconds() < 5


def test_a_change_id_within_the_grace_wins_over_the_record_set(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    target = _target(tmp_path, stack)
    target.records.change_id_grace_s = 30.0
    aws = AwsClients(endpoint_url=moto_endpoint)
    since = time.monotonic()
    _point_primary_record_at(aws, stack, stack.dr.load_balancer_dns, stack.dr.load_balancer_zone_id)
    assert target.reported_since(since, "dns_switch_requested") == []
    change = route53.change_record(
        aws, stack.zone_id, f"x.{stack.record_name}", "A", ["192.0.2.9"], 60
    )
    target.records.note_output(change, "failover.sh")
    (record,) = target.reported_since(since, "dns_switch_requested")
    assert isinstance(record, route53.RecordChange)
