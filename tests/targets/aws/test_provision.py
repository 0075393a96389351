"""The pilot-light stack the AWS tests build in moto: checked by describing what is there."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drdrill.config import load_config
from drdrill.sandbox.aws.provision import (
    CONTAINER,
    PRIMARY_TASKS,
    ProvisionedStack,
    provision_stack,
    set_tasks_transition,
    stack_settings,
    suffixed,
    tasks_transition,
)
from drdrill.targets.aws.session import AwsClients
from drdrill.targets.aws.settings import AwsSettings, load_aws_settings

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "aws-visitor-analytics.yaml"


@pytest.fixture(scope="module", autouse=True)
def _restore_tasks_transition(moto_endpoint: str) -> Iterator[None]:
    """provision_stack pins the server-wide ecs::task transition: give others theirs back."""
    before = tasks_transition(moto_endpoint)
    try:
        yield
    finally:
        set_tasks_transition(moto_endpoint, before)


@pytest.fixture(scope="module")
def built(moto_endpoint: str) -> tuple[AwsClients, AwsSettings, ProvisionedStack]:
    """One stack for the module (building takes ~45 calls); tests only read it."""
    aws = AwsClients(endpoint_url=moto_endpoint)
    names = stack_settings()
    return aws, names, provision_stack(aws, names)


def test_primary_runs_its_tasks_and_dr_is_a_pilot_light(
    built: tuple[AwsClients, AwsSettings, ProvisionedStack],
) -> None:
    aws, names, stack = built
    for r, provisioned, desired in (
        (names.primary, stack.primary, PRIMARY_TASKS),
        (names.dr, stack.dr, 0),
    ):
        ecs = aws.client("ecs", r.region)
        cluster = ecs.describe_clusters(clusters=[r.ecs.cluster])["clusters"][0]
        assert (cluster["clusterArn"], cluster["status"]) == (provisioned.cluster_arn, "ACTIVE")
        service = ecs.describe_services(cluster=r.ecs.cluster, services=[r.ecs.service])[
            "services"
        ][0]
        assert service["desiredCount"] == desired
        assert service["runningCount"] == desired
        assert service["launchType"] == "FARGATE"
        assert service["loadBalancers"][0]["targetGroupArn"] == provisioned.target_group_arn
        assert service["loadBalancers"][0]["containerName"] == CONTAINER
        arns = [
            a
            for a in ecs.list_tasks(cluster=r.ecs.cluster)["taskArns"]
            if a.split("/")[-2] == r.ecs.cluster  # moto matches the cluster as a substring
        ]
        assert sorted(arns) == sorted(provisioned.task_arns)
        assert len(arns) == desired
    assert tasks_transition(aws.endpoint_url or "")["progression"] == "manual"
    ecs = aws.client("ecs", names.primary.region)
    # described again and again, the tasks stay RUNNING (moto's default would stop them)
    for _ in range(3):
        tasks = ecs.describe_tasks(
            cluster=names.primary.ecs.cluster, tasks=list(stack.primary.task_arns)
        )["tasks"]
        assert [(t["lastStatus"], t["desiredStatus"]) for t in tasks] == [
            ("RUNNING", "RUNNING")
        ] * 2
        assert {t["group"] for t in tasks} == {f"service:{names.primary.ecs.service}"}


def test_load_balancers_hold_the_running_tasks(
    built: tuple[AwsClients, AwsSettings, ProvisionedStack],
) -> None:
    aws, names, stack = built
    for r, provisioned in ((names.primary, stack.primary), (names.dr, stack.dr)):
        elb = aws.client("elbv2", r.region)
        lb = elb.describe_load_balancers(Names=[r.alb.name])["LoadBalancers"][0]
        assert lb["DNSName"] == provisioned.load_balancer_dns
        assert lb["DNSName"].endswith(f".{r.region}.elb.amazonaws.com")
        assert lb["Scheme"] == "internet-facing"
        listener = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"][0]
        assert listener["DefaultActions"][0]["TargetGroupArn"] == provisioned.target_group_arn
        group = elb.describe_target_groups(TargetGroupArns=[provisioned.target_group_arn])[
            "TargetGroups"
        ][0]
        assert (group["TargetGroupName"], group["HealthCheckPath"]) == (
            r.alb.target_group_name,
            "/health-simple.php",
        )
        health = elb.describe_target_health(TargetGroupArn=provisioned.target_group_arn)[
            "TargetHealthDescriptions"
        ]
        assert sorted(h["Target"]["Id"] for h in health) == sorted(provisioned.task_ips)
        assert {h["TargetHealth"]["State"] for h in health} <= {"healthy"}
    assert len(stack.primary.task_ips) == PRIMARY_TASKS
    assert stack.dr.task_ips == ()


def test_the_database_replicates_across_regions(
    built: tuple[AwsClients, AwsSettings, ProvisionedStack],
) -> None:
    aws, names, stack = built
    primary = aws.client("rds", names.primary.region).describe_db_instances(
        DBInstanceIdentifier=names.primary.rds.instance_id
    )["DBInstances"][0]
    replica = aws.client("rds", names.dr.region).describe_db_instances(
        DBInstanceIdentifier=names.dr.rds.instance_id
    )["DBInstances"][0]
    assert (primary["Engine"], primary["DBInstanceStatus"]) == ("mysql", "available")
    assert replica["DBInstanceStatus"] == "available"
    assert primary["ReadReplicaDBInstanceIdentifiers"] == [stack.dr.db_instance_arn]
    # cross-region: each side names the other by ARN
    assert replica["ReadReplicaSourceDBInstanceIdentifier"] == stack.primary.db_instance_arn
    assert stack.dr.db_instance_arn.split(":")[3] == names.dr.region
    assert replica["Endpoint"]["Address"] == stack.dr.db_endpoint


def test_dns_fails_over_between_the_two_load_balancers(
    built: tuple[AwsClients, AwsSettings, ProvisionedStack],
) -> None:
    aws, names, stack = built
    route53 = aws.client("route53", "us-east-1")
    zone = route53.get_hosted_zone(Id=stack.zone_id)["HostedZone"]
    assert zone["Name"] == names.route53.zone_name
    records: list[dict[str, Any]] = [
        r
        for r in route53.list_resource_record_sets(HostedZoneId=stack.zone_id)["ResourceRecordSets"]
        if r["Name"] == names.route53.record_name
    ]
    by_role = {r["Failover"]: r for r in records}
    assert set(by_role) == {"PRIMARY", "SECONDARY"}
    for role, provisioned, check_id in (
        ("PRIMARY", stack.primary, stack.health_check_ids[0]),
        ("SECONDARY", stack.dr, stack.health_check_ids[1]),
    ):
        record = by_role[role]
        assert record["Type"] == "A"
        assert record["AliasTarget"]["DNSName"] == provisioned.load_balancer_dns
        assert record["HealthCheckId"] == check_id
        check = route53.get_health_check(HealthCheckId=check_id)["HealthCheck"]
        config = check["HealthCheckConfig"]
        assert (config["Type"], config["FullyQualifiedDomainName"], config["ResourcePath"]) == (
            "HTTP",
            provisioned.load_balancer_dns,
            "/health-simple.php",
        )


def test_alarms_notify_the_on_call_topic(
    built: tuple[AwsClients, AwsSettings, ProvisionedStack],
) -> None:
    aws, names, stack = built
    for r, provisioned in ((names.primary, stack.primary), (names.dr, stack.dr)):
        alarms = aws.client("cloudwatch", r.region).describe_alarms(
            AlarmNames=[r.alarms.health or "", *r.alarms.guards]
        )["MetricAlarms"]
        by_name = {a["AlarmName"]: a for a in alarms}
        health = by_name[r.alarms.health or ""]
        assert health["AlarmArn"] == provisioned.health_alarm_arn
        assert health["AlarmActions"] == [provisioned.sns_topic_arn]
        assert health["MetricName"] == "HealthyHostCount"
        assert {a["AlarmArn"] for n, a in by_name.items() if n in r.alarms.guards} == set(
            provisioned.guard_alarm_arns
        )
        assert provisioned.sns_topic_arn == r.sns_topic_arn
        subscriptions = aws.client("sns", r.region).list_subscriptions_by_topic(
            TopicArn=provisioned.sns_topic_arn
        )["Subscriptions"]
        assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [
            ("email", "oncall@example.com")
        ]


def test_the_dr_automation_function_lives_in_the_primary_region(
    built: tuple[AwsClients, AwsSettings, ProvisionedStack],
) -> None:
    aws, names, stack = built
    function = names.primary.lambda_function or ""
    config = aws.client("lambda", names.primary.region).get_function(FunctionName=function)[
        "Configuration"
    ]
    assert config["FunctionArn"] == stack.primary.function_arn
    assert config["Environment"]["Variables"]["DR_REGION"] == names.dr.region
    assert config["Environment"]["Variables"]["REPLICA_ID"] == names.dr.rds.instance_id
    assert stack.dr.function_arn is None


def test_assets_replicate_to_the_dr_bucket(
    built: tuple[AwsClients, AwsSettings, ProvisionedStack],
) -> None:
    aws, names, stack = built
    for r in (names.primary, names.dr):
        s3 = aws.client("s3", r.region)
        bucket = r.s3.bucket or ""
        assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == r.region
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    replication = aws.client("s3", names.primary.region).get_bucket_replication(
        Bucket=stack.primary.bucket
    )["ReplicationConfiguration"]
    assert replication["Role"] == stack.replication_role_arn
    [rule] = replication["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["Destination"]["Bucket"] == f"arn:aws:s3:::{stack.dr.bucket}"


def test_the_returned_settings_point_at_what_was_built(
    built: tuple[AwsClients, AwsSettings, ProvisionedStack],
) -> None:
    aws, names, stack = built
    pointed = stack.settings
    assert pointed.endpoint_url == aws.endpoint_url
    assert pointed.route53.zone_id == stack.zone_id
    assert pointed.route53.record_name == names.route53.record_name
    assert pointed.primary.alb.target_group_arn == stack.primary.target_group_arn
    assert pointed.dr.alb.dns_name == stack.dr.load_balancer_dns
    assert pointed.primary.ecs == names.primary.ecs
    assert pointed.dr.rds == names.dr.rds


@pytest.mark.parametrize(
    "endpoint", [None, "https://ecs.eu-west-1.amazonaws.com", "http://10.0.0.5:5000"]
)
def test_only_an_emulator_on_loopback_is_built_in(endpoint: str | None) -> None:
    aws = AwsClients(endpoint_url=endpoint)
    with pytest.raises(ValueError, match="emulator on loopback only"):
        provision_stack(aws, stack_settings())
    assert aws.log.calls == []


def test_missing_names_are_refused_before_anything_is_created(moto_endpoint: str) -> None:
    aws = AwsClients(endpoint_url=moto_endpoint)
    names = stack_settings()
    without_bucket = AwsSettings.model_validate(
        {**names.model_dump(), "dr": {**names.dr.model_dump(), "s3": {"bucket": None}}}
    )
    with pytest.raises(ValueError, match=r"targets\.aws\.dr\.s3\.bucket"):
        provision_stack(aws, without_bucket)
    assert aws.log.calls == []


def test_the_example_configs_stack_can_be_built(moto_endpoint: str) -> None:
    example = load_aws_settings(load_config(EXAMPLE))
    suffix = uuid.uuid4().hex[:6]
    names = suffixed(example, suffix)
    assert names.route53.record_name == f"app.{suffix}.visitor-analytics.example.com."
    assert names.dr.rds.instance_id == f"visitor-analytics-db-replica-{suffix}"
    aws = AwsClients(endpoint_url=moto_endpoint)
    stack = provision_stack(aws, names)
    replica = aws.client("rds", "eu-central-1").describe_db_instances(
        DBInstanceIdentifier=names.dr.rds.instance_id
    )["DBInstances"][0]
    assert replica["ReadReplicaSourceDBInstanceIdentifier"] == stack.primary.db_instance_arn
    function = aws.client("lambda", "eu-west-1").get_function(
        FunctionName=f"visitor-analytics-dr-automation-{suffix}"
    )
    assert function["Configuration"]["FunctionArn"] == stack.primary.function_arn
    # the example's topics are its account's: the emulator's account is the same 123456789012
    assert stack.primary.sns_topic_arn == names.primary.sns_topic_arn
