"""The runbook's two-region pilot-light stack, built in a moto server for the AWS tests.

:func:`provision_stack` creates, under the names an :class:`AwsSettings` gives: per region an ECS
cluster, task definition and service (primary 2 running tasks, DR 0), an ALB with a target group
holding the running tasks, a health alarm notifying an SNS topic (email subscription) and any
guard alarms; an RDS MySQL primary and its cross-region read replica; the DR automation function;
versioned S3 buckets replicating primary -> DR; a Route53 zone with PRIMARY/SECONDARY failover
alias records, each with an HTTP health check on its region's ALB.

It refuses any endpoint but a loopback one: this builds a stack in an emulator, never in AWS.

What moto does with it (moto 5.2): a service starts no tasks (create_service leaves runningCount
0 and pendingCount = desiredCount), so the tasks are started with RunTask in the service's group
``service:<name>``; every DescribeTasks moves a task one step down RUNNING -> DEACTIVATING ->
STOPPING -> DEPROVISIONING -> STOPPED unless the ``ecs::task`` state transition is changed, which
:func:`keep_tasks_running` does (for the whole server); any registered non-instance target is
``healthy`` whatever runs behind it; the Lambda function is stored but runs only with Docker;
an RDS instance has no ``StatusInfos`` (a real read replica reports its replication there), so
:func:`set_read_replication` supplies it, and provisioning makes the replica ``replicating``;
``ReplicaLag`` is whatever :func:`put_replica_lag` puts into CloudWatch.
"""

from __future__ import annotations

import io
import ipaddress
import json
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from drdrill.targets.aws.session import AwsClients
from drdrill.targets.aws.settings import AwsSettings, RegionSettings

#: moto's account
MOTO_ACCOUNT = "123456789012"
#: the runbook's container (``aws ecs execute-command ... --container apache``)
CONTAINER = "apache"
HEALTH_PATH = "/health-simple.php"
PRIMARY_TASKS = 2
#: a describe never moves a task on (moto's "manual" progression, after this many describes)
_NEVER = 1_000_000_000

_LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
_S3_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
# The DR automation as the runbook calls it; moto stores it and never runs it without Docker.
_HANDLER = """\
import os


def handler(event, context):
    # promote the replica, scale the DR service up, switch the record (the runbook's steps)
    return {
        "status": "accepted",
        "trigger": event.get("trigger"),
        "reason": event.get("reason"),
        "dr_region": os.environ.get("DR_REGION"),
    }
"""


@dataclass(frozen=True)
class ProvisionedRegion:
    """What one region got: ARNs, ids and addresses to point tests and configs at."""

    region: str
    cluster_arn: str
    service_arn: str
    task_definition_arn: str
    task_arns: tuple[str, ...]
    task_ips: tuple[str, ...]
    load_balancer_arn: str
    load_balancer_dns: str
    load_balancer_zone_id: str
    target_group_arn: str
    db_instance_arn: str
    db_endpoint: str
    health_alarm_arn: str
    guard_alarm_arns: tuple[str, ...]
    sns_topic_arn: str
    subscription_arns: tuple[str, ...]
    bucket: str
    function_arn: str | None


@dataclass(frozen=True)
class ProvisionedStack:
    """The whole stack, and the settings that point at it (ARNs and ids filled in)."""

    primary: ProvisionedRegion
    dr: ProvisionedRegion
    zone_id: str
    record_name: str
    #: health checks of the PRIMARY and the SECONDARY record
    health_check_ids: tuple[str, str]
    replication_role_arn: str
    settings: AwsSettings
    #: the settings it was built from: names only (zone, target groups, load balancers)
    names: AwsSettings | None = None


def stack_settings(suffix: str | None = None, endpoint_url: str | None = None) -> AwsSettings:
    """Settings naming every part of the stack, unique by ``suffix`` (a fresh one when None).

    The names are the runbook's with the suffix added, so tests sharing one moto server never
    meet each other's resources.
    """
    s = suffix or uuid.uuid4().hex[:8]
    base = f"visitor-analytics-{s}"

    def region(key: str, region_name: str, db: str) -> dict[str, Any]:
        return {
            "region": region_name,
            "ecs": {"cluster": base, "service": base},
            "alb": {"name": f"va-{key}-{s}", "target_group_name": f"va-{key}-tg-{s}"},
            "rds": {"instance_id": db},
            "alarms": {"health": f"{base}-{key}-health", "guards": [f"{base}-{key}-5xx"]},
            "sns_topic_arn": f"arn:aws:sns:{region_name}:{MOTO_ACCOUNT}:{base}-{key}-alerts",
            "s3": {"bucket": f"{base}-assets-{key}"},
        }

    primary = region("primary", "eu-west-1", f"{base}-db")
    primary["lambda_function"] = f"{base}-dr-automation"
    dr = region("dr", "eu-central-1", f"{base}-db-replica")
    return AwsSettings.model_validate(
        {
            "endpoint_url": endpoint_url,
            "primary": primary,
            "dr": dr,
            "route53": {
                "zone_name": f"{s}.visitor-analytics.example.com",
                "record_name": f"app.{s}.visitor-analytics.example.com",
            },
        }
    )


def suffixed(settings: AwsSettings, suffix: str) -> AwsSettings:
    """The same stack with ``-<suffix>`` after every name, in a zone ``<suffix>.<zone>``."""
    data = settings.model_dump()

    def rename(value: str | None) -> str | None:
        return None if value is None else f"{value}-{suffix}"

    for key in ("primary", "dr"):
        region = data[key]
        region["ecs"] = {
            k: rename(v) if k in ("cluster", "service") else v for k, v in region["ecs"].items()
        }
        for name in ("name", "target_group_name"):
            region["alb"][name] = rename(region["alb"][name])
        region["rds"]["instance_id"] = rename(region["rds"]["instance_id"])
        region["lambda_function"] = rename(region["lambda_function"])
        region["alarms"]["health"] = rename(region["alarms"]["health"])
        region["alarms"]["guards"] = [rename(g) for g in region["alarms"]["guards"]]
        region["sns_topic_arn"] = rename(region["sns_topic_arn"])
        region["s3"]["bucket"] = rename(region["s3"]["bucket"])
    zone, record = settings.route53.zone_name, settings.route53.record_name
    if zone is not None:
        # a zone of its own; the record moves with it when it lies inside
        data["route53"]["zone_name"] = f"{suffix}.{zone}"
        if record is not None and record.endswith(f".{zone}"):
            data["route53"]["record_name"] = f"{record.removesuffix(zone)}{suffix}.{zone}"
    return AwsSettings.model_validate(data)


def _state_manager(endpoint_url: str, path: str, body: dict[str, Any] | None = None) -> bytes:
    url = f"{endpoint_url.rstrip('/')}/moto-api/state-manager/{path}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="GET" if data is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        content: bytes = answer.read()
    return content


def tasks_transition(endpoint_url: str) -> dict[str, Any]:
    """The moto server's ``ecs::task`` state transition now."""
    answer = json.loads(_state_manager(endpoint_url, "get-transition?model_name=ecs::task"))
    return dict(answer)


def set_tasks_transition(endpoint_url: str, transition: dict[str, Any]) -> None:
    """Set the moto server's ``ecs::task`` state transition (to restore one saved earlier)."""
    _state_manager(
        endpoint_url, "set-transition", {"model_name": "ecs::task", "transition": transition}
    )


def keep_tasks_running(endpoint_url: str) -> dict[str, Any]:
    """Make the moto server keep RUNNING tasks RUNNING however often they are described; the
    transition it had before is returned, to restore.

    moto's default moves a task one state down (towards STOPPED) at every DescribeTasks. The
    setting is the whole server's; StopTask still stops a task at once.
    """
    before = tasks_transition(endpoint_url)
    set_tasks_transition(endpoint_url, {"progression": "manual", "times": _NEVER})
    return before


def set_read_replication(
    aws: AwsClients,
    region: str,
    db_id: str,
    status: str,
    *,
    normal: bool | None = None,
    message: str | None = None,
) -> None:
    """Make the moto server report the instance's ``read replication`` StatusInfos entry, as RDS
    does for a read replica (``normal`` defaults to ``status == "replicating"``).

    moto (5.2) never reports StatusInfos, but its DescribeDBInstances serializes whatever the
    instance's model holds as ``status_infos``: the entry is set on moto's own model, and the
    adapters' DescribeDBInstances calls stay real. That needs the moto server to run in this
    process (the tests' ThreadedMotoServer); a RuntimeError when the answer does not show it.
    """
    from moto.backends import get_backend

    _require_emulator(aws)
    entry: dict[str, Any] = {
        "StatusType": "read replication",
        "Normal": status == "replicating" if normal is None else normal,
        "Status": status,
    }
    if message is not None:
        entry["Message"] = message
    instance = get_backend("rds")[MOTO_ACCOUNT][region].databases[db_id]
    # an attribute moto's model does not declare, read by its response serializer
    setattr(instance, "status_infos", [entry])  # noqa: B010
    seen = aws.client("rds", region).describe_db_instances(DBInstanceIdentifier=db_id)
    if seen["DBInstances"][0].get("StatusInfos") != [entry]:
        raise RuntimeError(
            f"moto at {aws.endpoint_url} does not run in this process: cannot set StatusInfos"
        )


def put_replica_lag(
    aws: AwsClients, region: str, db_id: str, points: list[tuple[timedelta, float]]
) -> None:
    """Put ``ReplicaLag`` datapoints for ``db_id``, each ``(how long ago, seconds)``, as RDS
    publishes them (-1 while replication is not active)."""
    _require_emulator(aws)
    now = datetime.now(UTC)
    aws.client("cloudwatch", region).put_metric_data(
        Namespace="AWS/RDS",
        MetricData=[
            {
                "MetricName": "ReplicaLag",
                "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": db_id}],
                "Timestamp": now - ago,
                "Value": value,
                "Unit": "Seconds",
            }
            for ago, value in points
        ],
    )


def _require_emulator(aws: AwsClients) -> str:
    """The endpoint when it is on loopback; ValueError for anything that could be AWS."""
    url = aws.endpoint_url
    host = urlsplit(url).hostname if url else None
    loopback = host == "localhost"
    if host is not None and not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if url is None or not loopback:
        raise ValueError(f"provision_stack builds in an emulator on loopback only, not {url!r}")
    return url


def _need(value: str | None, key: str) -> str:
    if value is None:
        raise ValueError(f"provision_stack needs targets.aws.{key}")
    return value


def _role(aws: AwsClients, name: str, trust: dict[str, Any]) -> str:
    iam = aws.client("iam", "us-east-1")
    answer = iam.create_role(RoleName=name[:64], AssumeRolePolicyDocument=json.dumps(trust))
    return str(answer["Role"]["Arn"])


def _network(aws: AwsClients, region: str) -> tuple[str, list[str], str]:
    """The default VPC's id, two of its subnets (in two zones) and its default security group."""
    ec2 = aws.client("ec2", region)
    subnets = [s for s in ec2.describe_subnets()["Subnets"] if s.get("DefaultForAz")]
    subnets.sort(key=lambda s: s["AvailabilityZone"])
    vpc = str(subnets[0]["VpcId"])
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["default"]}, {"Name": "vpc-id", "Values": [vpc]}]
    )["SecurityGroups"]
    group = next(str(g["GroupId"]) for g in groups if g["VpcId"] == vpc)
    return vpc, [str(s["SubnetId"]) for s in subnets[:2]], group


@dataclass(frozen=True)
class _Alb:
    arn: str
    dns: str
    zone_id: str
    target_group_arn: str


def _alb(aws: AwsClients, r: RegionSettings, vpc: str, subnets: list[str], group: str) -> _Alb:
    elb = aws.client("elbv2", r.region)
    lb = elb.create_load_balancer(
        Name=_need(r.alb.name, f"{r.region}.alb.name"),
        Subnets=subnets,
        SecurityGroups=[group],
        Scheme="internet-facing",
        Type="application",
    )["LoadBalancers"][0]
    tg = elb.create_target_group(
        Name=_need(r.alb.target_group_name, f"{r.region}.alb.target_group_name"),
        Protocol="HTTP",
        Port=80,
        VpcId=vpc,
        TargetType="ip",  # awsvpc tasks register by address
        HealthCheckPath=HEALTH_PATH,
        HealthCheckIntervalSeconds=10,
        HealthyThresholdCount=2,
        UnhealthyThresholdCount=2,
    )["TargetGroups"][0]
    elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
    )
    return _Alb(
        arn=str(lb["LoadBalancerArn"]),
        dns=str(lb["DNSName"]),
        zone_id=str(lb["CanonicalHostedZoneId"]),
        target_group_arn=str(tg["TargetGroupArn"]),
    )


@dataclass(frozen=True)
class _Ecs:
    cluster_arn: str
    service_arn: str
    task_definition_arn: str
    task_arns: tuple[str, ...]
    task_ips: tuple[str, ...]


def _ecs(
    aws: AwsClients,
    r: RegionSettings,
    desired: int,
    target_group_arn: str,
    subnets: list[str],
    group: str,
    start_tasks: bool = True,
) -> _Ecs:
    ecs = aws.client("ecs", r.region)
    cluster = ecs.create_cluster(clusterName=r.ecs.cluster)["cluster"]
    task_def = ecs.register_task_definition(
        family=r.ecs.service,
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": CONTAINER,
                "image": "public.ecr.aws/docker/library/php:8.2-apache",
                "essential": True,
                # moto's RunTask fails (500, TypeError) without container-level cpu and memory
                "cpu": 256,
                "memory": 512,
                "portMappings": [{"containerPort": 80, "protocol": "tcp"}],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": f"/ecs/{r.ecs.service}",
                        "awslogs-region": r.region,
                        "awslogs-stream-prefix": "ecs",
                    },
                },
            }
        ],
    )["taskDefinition"]
    network = {"awsvpcConfiguration": {"subnets": subnets, "securityGroups": [group]}}
    service = ecs.create_service(
        cluster=r.ecs.cluster,
        serviceName=r.ecs.service,
        taskDefinition=task_def["taskDefinitionArn"],
        desiredCount=desired,
        launchType="FARGATE",
        networkConfiguration=network,
        loadBalancers=[
            {"targetGroupArn": target_group_arn, "containerName": CONTAINER, "containerPort": 80}
        ],
    )["service"]
    tasks: list[dict[str, Any]] = []
    if desired and start_tasks:
        # moto's scheduler starts nothing: start the service's tasks as ECS would
        tasks = ecs.run_task(
            cluster=r.ecs.cluster,
            taskDefinition=task_def["taskDefinitionArn"],
            count=desired,
            launchType="FARGATE",
            group=f"service:{r.ecs.service}",
            startedBy=str(service["deployments"][0]["id"]),
            networkConfiguration=network,
        )["tasks"]
        # UpdateService is what sets moto's runningCount (to the desired count)
        ecs.update_service(cluster=r.ecs.cluster, service=r.ecs.service, desiredCount=desired)
    ips = tuple(_task_ip(task) for task in tasks)
    if ips:
        aws.client("elbv2", r.region).register_targets(
            TargetGroupArn=target_group_arn, Targets=[{"Id": ip, "Port": 80} for ip in ips]
        )
    return _Ecs(
        cluster_arn=str(cluster["clusterArn"]),
        service_arn=str(service["serviceArn"]),
        task_definition_arn=str(task_def["taskDefinitionArn"]),
        task_arns=tuple(str(t["taskArn"]) for t in tasks),
        task_ips=ips,
    )


def _task_ip(task: dict[str, Any]) -> str:
    for attachment in task.get("attachments", []):
        for detail in attachment.get("details", []):
            if detail.get("name") == "privateIPv4Address":
                return str(detail["value"])
    raise ValueError(f"task {task['taskArn']} has no private address")


def _alerts(aws: AwsClients, r: RegionSettings, email: str) -> tuple[str, tuple[str, ...]]:
    sns = aws.client("sns", r.region)
    arn = _need(r.sns_topic_arn, f"{r.region}.sns_topic_arn")
    if arn.split(":")[3] != r.region:
        raise ValueError(f"sns topic {arn} is not in {r.region}")
    topic = str(sns.create_topic(Name=arn.rsplit(":", 1)[1])["TopicArn"])
    # email only: moto delivers http(s) notifications for real, and no test may reach out
    sub = sns.subscribe(
        TopicArn=topic, Protocol="email", Endpoint=email, ReturnSubscriptionArn=True
    )
    return topic, (str(sub["SubscriptionArn"]),)


def _alarms(
    aws: AwsClients, r: RegionSettings, alb: _Alb, topic: str
) -> tuple[str, tuple[str, ...]]:
    cloudwatch = aws.client("cloudwatch", r.region)
    dimensions = [
        {"Name": "TargetGroup", "Value": alb.target_group_arn.split(":")[-1]},
        {"Name": "LoadBalancer", "Value": alb.arn.split(":loadbalancer/")[-1]},
    ]
    health = _need(r.alarms.health, f"{r.region}.alarms.health")
    # Detection: fewer healthy targets than one for two periods, missing data counted as bad
    cloudwatch.put_metric_alarm(
        AlarmName=health,
        AlarmDescription="no healthy task behind the load balancer",
        Namespace="AWS/ApplicationELB",
        MetricName="HealthyHostCount",
        Dimensions=dimensions,
        Statistic="Minimum",
        Period=60,
        EvaluationPeriods=2,
        Threshold=1,
        ComparisonOperator="LessThanThreshold",
        TreatMissingData="breaching",
        AlarmActions=[topic],
        OKActions=[topic],
    )
    for guard in r.alarms.guards:
        cloudwatch.put_metric_alarm(
            AlarmName=guard,
            AlarmDescription="drill guard: too many 5xx through the load balancer",
            Namespace="AWS/ApplicationELB",
            MetricName="HTTPCode_ELB_5XX_Count",
            Dimensions=dimensions[1:],
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=50,
            ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching",
            AlarmActions=[topic],
        )
    names = [health, *r.alarms.guards]
    found = cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]
    arns = {str(a["AlarmName"]): str(a["AlarmArn"]) for a in found}
    return arns[health], tuple(arns[g] for g in r.alarms.guards)


def _function(aws: AwsClients, r: RegionSettings, settings: AwsSettings) -> str | None:
    if r.lambda_function is None:
        return None
    role = _role(aws, f"{r.lambda_function}-role", _LAMBDA_TRUST)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("index.py", _HANDLER)
    answer = aws.client("lambda", r.region).create_function(
        FunctionName=r.lambda_function,
        Runtime="python3.12",
        Role=role,
        Handler="index.handler",
        Code={"ZipFile": archive.getvalue()},
        Timeout=300,
        Environment={
            "Variables": {
                "PRIMARY_REGION": settings.primary.region,
                "DR_REGION": settings.dr.region,
                "CLUSTER": settings.dr.ecs.cluster,
                "SERVICE": settings.dr.ecs.service,
                "REPLICA_ID": settings.dr.rds.instance_id,
            }
        },
    )
    return str(answer["FunctionArn"])


def _databases(
    aws: AwsClients, settings: AwsSettings, multi_az: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    primary = aws.client("rds", settings.primary.region).create_db_instance(
        DBInstanceIdentifier=settings.primary.rds.instance_id,
        Engine="mysql",
        EngineVersion="8.0.35",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="admin",
        MasterUserPassword="not-a-secret-1",
        DBName="visitor_analytics",
        BackupRetentionPeriod=7,  # a source of read replicas must keep backups
        MultiAZ=multi_az,
    )["DBInstance"]
    replica = aws.client("rds", settings.dr.region).create_db_instance_read_replica(
        DBInstanceIdentifier=settings.dr.rds.instance_id,
        SourceDBInstanceIdentifier=primary["DBInstanceArn"],  # cross-region: by ARN
        SourceRegion=settings.primary.region,
        DBInstanceClass="db.t3.micro",
    )["DBInstance"]
    return primary, replica


#: the id of the assets bucket's replication rule (S3's metrics name it)
ASSETS_RULE_ID = "assets-to-dr"


def _buckets(aws: AwsClients, settings: AwsSettings) -> str:
    source = _need(settings.primary.s3.bucket, "primary.s3.bucket")
    destination = _need(settings.dr.s3.bucket, "dr.s3.bucket")
    for r, bucket in ((settings.primary, source), (settings.dr, destination)):
        s3 = aws.client("s3", r.region)
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": r.region})
        # replication needs versioning on both sides
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    role = _role(aws, f"{source}-replication", _S3_TRUST)
    aws.client("s3", settings.primary.region).put_bucket_replication(
        Bucket=source,
        ReplicationConfiguration={
            "Role": role,
            "Rules": [
                {
                    "ID": ASSETS_RULE_ID,
                    "Status": "Enabled",
                    "Priority": 1,
                    "Filter": {},
                    "DeleteMarkerReplication": {"Status": "Enabled"},
                    "Destination": {"Bucket": f"arn:aws:s3:::{destination}"},
                }
            ],
        },
    )
    return role


def _dns(
    aws: AwsClients, settings: AwsSettings, albs: tuple[_Alb, _Alb]
) -> tuple[str, tuple[str, str]]:
    route53 = aws.client("route53", "us-east-1")
    zone_name = _need(settings.route53.zone_name, "route53.zone_name")
    record = _need(settings.route53.record_name, "route53.record_name")
    if not record.endswith(f".{zone_name}"):
        raise ValueError(f"record {record} is not inside zone {zone_name}")
    zone = route53.create_hosted_zone(Name=zone_name, CallerReference=uuid.uuid4().hex)
    zone_id = str(zone["HostedZone"]["Id"]).removeprefix("/hostedzone/")
    checks: list[str] = []
    changes: list[dict[str, Any]] = []
    for role, alb in zip(("PRIMARY", "SECONDARY"), albs, strict=True):
        check = route53.create_health_check(
            CallerReference=uuid.uuid4().hex,
            HealthCheckConfig={
                "Type": "HTTP",
                "FullyQualifiedDomainName": alb.dns,
                "Port": 80,
                "ResourcePath": HEALTH_PATH,
                "RequestInterval": 10,
                "FailureThreshold": 3,
            },
        )["HealthCheck"]
        checks.append(str(check["Id"]))
        changes.append(
            {
                "Action": "CREATE",
                "ResourceRecordSet": {
                    "Name": record,
                    "Type": "A",
                    "SetIdentifier": role.lower(),
                    "Failover": role,
                    "HealthCheckId": check["Id"],
                    "AliasTarget": {
                        "HostedZoneId": alb.zone_id,
                        "DNSName": alb.dns,
                        "EvaluateTargetHealth": True,
                    },
                },
            }
        )
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Comment": "visitor-analytics failover", "Changes": changes},
    )
    return zone_id, (checks[0], checks[1])


def provision_stack(
    aws: AwsClients,
    names: AwsSettings,
    *,
    alert_email: str = "oncall@example.com",
    desired: tuple[int, int] = (PRIMARY_TASKS, 0),
    start_tasks: bool = True,
    multi_az: bool = False,
) -> ProvisionedStack:
    """Build the pilot-light stack ``names`` describes in the emulator ``aws`` points at.

    ``desired`` is the (primary, DR) services' desired counts. With ``start_tasks`` the
    primary's tasks are started with RunTask (moto starts none); the sandbox leaves that to its
    reconciler, whose tasks are its scheduler's real processes.

    Every name the settings leave empty that the stack needs (ALB and target group names,
    alarms, topics, buckets, the zone and record) is a ValueError before anything is created.
    """
    _require_emulator(aws)
    for r in (names.primary, names.dr):
        for value, key in (
            (r.alb.name, "alb.name"),
            (r.alb.target_group_name, "alb.target_group_name"),
            (r.alarms.health, "alarms.health"),
            (r.sns_topic_arn, "sns_topic_arn"),
            (r.s3.bucket, "s3.bucket"),
        ):
            _need(value, f"{'primary' if r is names.primary else 'dr'}.{key}")
    _need(names.route53.zone_name, "route53.zone_name")
    _need(names.route53.record_name, "route53.record_name")
    keep_tasks_running(_require_emulator(aws))

    regions: list[ProvisionedRegion] = []
    albs: list[_Alb] = []
    primary_db, replica = _databases(aws, names, multi_az)
    for r, count, db in (
        (names.primary, desired[0], primary_db),
        (names.dr, desired[1], replica),
    ):
        vpc, subnets, group = _network(aws, r.region)
        alb = _alb(aws, r, vpc, subnets, group)
        albs.append(alb)
        ecs = _ecs(aws, r, count, alb.target_group_arn, subnets, group, start_tasks)
        topic, subscriptions = _alerts(aws, r, alert_email)
        health_arn, guard_arns = _alarms(aws, r, alb, topic)
        regions.append(
            ProvisionedRegion(
                region=r.region,
                cluster_arn=ecs.cluster_arn,
                service_arn=ecs.service_arn,
                task_definition_arn=ecs.task_definition_arn,
                task_arns=ecs.task_arns,
                task_ips=ecs.task_ips,
                load_balancer_arn=alb.arn,
                load_balancer_dns=alb.dns,
                load_balancer_zone_id=alb.zone_id,
                target_group_arn=alb.target_group_arn,
                db_instance_arn=str(db["DBInstanceArn"]),
                db_endpoint=str(db["Endpoint"]["Address"]),
                health_alarm_arn=health_arn,
                guard_alarm_arns=guard_arns,
                sns_topic_arn=topic,
                subscription_arns=subscriptions,
                bucket=_need(r.s3.bucket, "s3.bucket"),
                function_arn=_function(aws, r, names),
            )
        )
    # a healthy replica, as RDS reports one (moto reports nothing)
    set_read_replication(aws, names.dr.region, names.dr.rds.instance_id, "replicating")
    replication_role = _buckets(aws, names)
    zone_id, checks = _dns(aws, names, (albs[0], albs[1]))
    primary, dr = regions
    return ProvisionedStack(
        primary=primary,
        dr=dr,
        zone_id=zone_id,
        record_name=_need(names.route53.record_name, "route53.record_name"),
        health_check_ids=checks,
        replication_role_arn=replication_role,
        settings=_pointed(names, aws, primary, dr, zone_id),
        names=names,
    )


def names_only_settings(stack: ProvisionedStack) -> AwsSettings:
    """Settings for ``stack`` as a team that names its resources writes them: the hosted zone
    by ``zone_name``, each target group by ``target_group_name``, each load balancer by
    ``name``, and no ARN nor id anywhere (the SNS topics are left out: an ARN is their only
    name, and the readiness check then takes any topic the alarm notifies)."""
    if stack.names is None:
        raise ValueError("the stack was not built by provision_stack")
    data = stack.names.model_dump()
    data["endpoint_url"] = stack.settings.endpoint_url
    for key in ("primary", "dr"):
        data[key]["sns_topic_arn"] = None
    return AwsSettings.model_validate(data)


def _pointed(
    names: AwsSettings,
    aws: AwsClients,
    primary: ProvisionedRegion,
    dr: ProvisionedRegion,
    zone_id: str,
) -> AwsSettings:
    """``names`` pointing at what was built: target groups by ARN, ALB DNS names, the zone id."""
    data = names.model_dump()
    data["endpoint_url"] = aws.endpoint_url
    for key, built in (("primary", primary), ("dr", dr)):
        data[key]["alb"]["target_group_arn"] = built.target_group_arn
        data[key]["alb"]["target_group_name"] = None
        data[key]["alb"]["dns_name"] = built.load_balancer_dns
        data[key]["sns_topic_arn"] = built.sns_topic_arn
    data["route53"]["zone_id"] = zone_id
    data["route53"]["zone_name"] = None
    return AwsSettings.model_validate(data)


# --- records AWS keeps of a failover, where moto keeps none --------------------------------


def put_rds_event(aws: AwsClients, region: str, db_id: str, message: str, when: datetime) -> None:
    """Make the moto server hold an RDS event on the instance, as RDS records one (moto's
    DescribeEvents is real but it records no promotion): the event goes onto moto's own model,
    in this process, and the adapters' DescribeEvents calls stay real."""
    _require_emulator(aws)
    record_rds_event(region, db_id, message, "read replica", when)


def record_rds_event(region: str, db_id: str, message: str, category: str, when: datetime) -> None:
    """Put an RDS event on moto's model of the instance (in this process), as RDS records one."""
    from moto.backends import get_backend
    from moto.rds.models import Event

    backend = get_backend("rds")[MOTO_ACCOUNT][region]
    instance = backend.databases[db_id]
    # moto's Event takes only the kinds it emits itself: built bare, with what it serializes
    event = object.__new__(Event)
    event.source_identifier = db_id
    event.source_type = "db-instance"
    event.message = message
    event.event_categories = [category]
    event.source_arn = instance.arn
    event.date = when
    backend.events.append(event)


def put_service_event(
    aws: AwsClients, region: str, cluster: str, service: str, message: str, when: datetime
) -> None:
    """Make the moto server hold a service event, as ECS's scheduler writes one (moto keeps an
    empty event list and never writes to it): put onto moto's own model, in this process;
    DescribeServices stays real."""
    from moto.backends import get_backend

    _require_emulator(aws)
    model = get_backend("ecs")[MOTO_ACCOUNT][region].services[f"{cluster}:{service}"]
    model.events.append({"id": uuid.uuid4().hex, "createdAt": when, "message": message})


def put_task_times(
    aws: AwsClients,
    region: str,
    cluster: str,
    task_arn: str,
    started: datetime | None = None,
    stopped: datetime | None = None,
) -> None:
    """Make the moto server hold a task's ``startedAt``/``stoppedAt`` as ECS stamps them (moto
    stamps neither): put onto moto's own model, in this process; DescribeTasks stays real."""
    from moto.backends import get_backend

    _require_emulator(aws)
    tasks = get_backend("ecs")[MOTO_ACCOUNT][region].tasks[cluster]
    model: Any = tasks[task_arn] if task_arn in tasks else tasks[task_arn.rsplit("/", 1)[-1]]
    if started is not None:
        model.started_at = started
    if stopped is not None:
        model.stopped_at = stopped


def put_function_log(
    aws: AwsClients, region: str, function: str, lines: list[tuple[datetime, str]]
) -> None:
    """Write log lines into a function's log group, as the Lambda runtime and the function
    would (moto runs no function code without Docker): real CloudWatch Logs calls."""
    import contextlib

    _require_emulator(aws)
    logs = aws.client("logs", region)
    group = f"/aws/lambda/{function}"
    stream = f"2026/01/01/[$LATEST]{uuid.uuid4().hex}"
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[
            {"timestamp": int(when.timestamp() * 1000), "message": text} for when, text in lines
        ],
    )
