"""The ELBv2 adapter against the moto server: target health as the load balancer reports it.

moto's health is static: an ``ip`` target is always ``healthy``; an ``instance`` target follows
its EC2 instance (stopped -> ``unused``, reason ``Target.InvalidState``); deregistering removes
a target at once (no ``draining``).
"""

from __future__ import annotations

import uuid

import pytest

from drdrill.errors import DrillError
from drdrill.targets.aws import elbv2
from drdrill.targets.aws.elbv2 import TargetHealth
from drdrill.targets.aws.session import AwsClients

PRIMARY = "eu-west-1"
#: an AMI id moto knows in every region
AMI = "ami-12c6146b"


def _vpc(aws: AwsClients) -> str:
    vpc = aws.client("ec2", PRIMARY).create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    return str(vpc)


def _target_group(aws: AwsClients, vpc: str, target_type: str) -> str:
    name = f"tg-{uuid.uuid4().hex[:12]}"
    group = aws.client("elbv2", PRIMARY).create_target_group(
        Name=name, Protocol="HTTP", Port=80, VpcId=vpc, TargetType=target_type
    )
    return str(group["TargetGroups"][0]["TargetGroupArn"])


def test_ip_targets_are_listed_with_their_ports_and_state(aws: AwsClients) -> None:
    group = _target_group(aws, _vpc(aws), "ip")
    aws.client("elbv2", PRIMARY).register_targets(
        TargetGroupArn=group,
        Targets=[{"Id": "10.0.1.10", "Port": 8080}, {"Id": "10.0.1.11", "Port": 8081}],
    )

    targets = elbv2.target_health(aws, PRIMARY, group)

    assert sorted(targets, key=lambda t: t.id) == [
        TargetHealth("10.0.1.10", 8080, "healthy", None),
        TargetHealth("10.0.1.11", 8081, "healthy", None),
    ]
    assert elbv2.healthy_count(aws, PRIMARY, group) == 2


def test_a_stopped_instance_target_is_not_counted_healthy(aws: AwsClients) -> None:
    ec2 = aws.client("ec2", PRIMARY)
    group = _target_group(aws, _vpc(aws), "instance")
    instances = [
        i["InstanceId"] for i in ec2.run_instances(ImageId=AMI, MinCount=3, MaxCount=3)["Instances"]
    ]
    aws.client("elbv2", PRIMARY).register_targets(
        TargetGroupArn=group, Targets=[{"Id": i} for i in instances]
    )
    ec2.stop_instances(InstanceIds=[instances[0]])

    by_id = {t.id: t for t in elbv2.target_health(aws, PRIMARY, group)}

    assert set(by_id) == set(instances)
    assert by_id[instances[0]].state == "unused"
    assert by_id[instances[0]].reason == "Target.InvalidState"
    assert [by_id[i].state for i in instances[1:]] == ["healthy", "healthy"]
    assert elbv2.healthy_count(aws, PRIMARY, group) == 2


def test_a_deregistered_target_leaves_the_list(aws: AwsClients) -> None:
    group = _target_group(aws, _vpc(aws), "ip")
    client = aws.client("elbv2", PRIMARY)
    client.register_targets(
        TargetGroupArn=group,
        Targets=[{"Id": "10.0.2.1", "Port": 80}, {"Id": "10.0.2.2", "Port": 80}],
    )
    client.deregister_targets(TargetGroupArn=group, Targets=[{"Id": "10.0.2.1", "Port": 80}])

    assert [t.id for t in elbv2.target_health(aws, PRIMARY, group)] == ["10.0.2.2"]
    assert elbv2.healthy_count(aws, PRIMARY, group) == 1


def test_an_empty_group_has_no_healthy_target(aws: AwsClients) -> None:
    group = _target_group(aws, _vpc(aws), "ip")

    assert elbv2.target_health(aws, PRIMARY, group) == []
    assert elbv2.healthy_count(aws, PRIMARY, group) == 0


def test_a_missing_group_is_a_drill_error_naming_it(aws: AwsClients) -> None:
    missing = (
        "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/nope/0123456789abcdef"
    )

    with pytest.raises(DrillError, match=r"target group '.*targetgroup/nope/.*' \(eu-west-1\)"):
        elbv2.target_health(aws, PRIMARY, missing)


def test_calls_are_logged_as_read_only_elb_actions(aws: AwsClients) -> None:
    group = _target_group(aws, _vpc(aws), "ip")
    before = len(aws.log.calls)

    elbv2.healthy_count(aws, PRIMARY, group)

    made = aws.log.calls[before:]
    assert [(c.action, c.sent) for c in made] == [
        ("elasticloadbalancing:DescribeTargetHealth", True)
    ]
