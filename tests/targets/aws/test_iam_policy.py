"""docs/iam-policy.json allows every call the adapters make, and nothing the drills do not need.

Every adapter function runs once against a stack in moto through one logged client factory;
the actions it used are compared with the policy's. A call that fails on moto (no alarm history,
no Lambda runtime, no Aurora cluster here) is still logged before it is sent, so it counts.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

from drdrill.errors import DrillError
from drdrill.targets.aws import cloudwatch, ecs, elbv2, lambda_, rds, route53, s3, sns, sts
from drdrill.targets.aws.session import AwsClients

from .provision import (
    ProvisionedStack,
)

POLICY = Path(__file__).resolve().parents[3] / "docs" / "iam-policy.json"


def _policy_actions() -> set[str]:
    document = json.loads(POLICY.read_text())
    actions: set[str] = set()
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        actions.update(statement["Action"])
    return actions


def test_every_adapter_call_is_allowed_by_the_policy(
    stack: ProvisionedStack, moto_endpoint: str
) -> None:
    aws = AwsClients(endpoint_url=moto_endpoint)
    s = stack.settings
    p, d = s.primary, s.dr
    calls: list[Callable[[], object]] = [
        lambda: sts.account_id(aws),
        lambda: ecs.running_tasks(aws, p.region, p.ecs.cluster, p.ecs.service),
        lambda: ecs.service_state(
            aws, p.region, p.ecs.cluster, p.ecs.service, stack.primary.target_group_arn
        ),
        lambda: ecs.stop_tasks(aws, p.region, p.ecs.cluster, p.ecs.service, count=1),
        lambda: ecs.update_desired_count(aws, p.region, p.ecs.cluster, p.ecs.service, 2),
        lambda: elbv2.target_health(aws, p.region, stack.primary.target_group_arn),
        lambda: rds.describe_instance(aws, p.region, p.rds.instance_id),
        lambda: rds.replica_lag(aws, d.region, d.rds.instance_id),
        lambda: rds.reboot_instance(aws, p.region, p.rds.instance_id),
        lambda: rds.promote_read_replica(aws, d.region, d.rds.instance_id),
        lambda: rds.failover_cluster(aws, p.region, "no-such-cluster"),
        lambda: rds.cluster_writer(aws, p.region, "no-such-cluster"),
        lambda: route53.failover_records(aws, stack.zone_id, stack.record_name),
        lambda: route53.health_check_status(aws, stack.health_check_ids[0]),
        lambda: route53.wait_insync(
            aws,
            route53.change_record(
                aws, stack.zone_id, f"drill.{stack.record_name}", "A", ["127.0.0.1"], 60
            ),
            timeout_s=5,
            interval_s=0.1,
        ),
        lambda: cloudwatch.alarm_state(aws, p.region, p.alarms.health or ""),
        lambda: cloudwatch.alarm_actions(aws, p.region, p.alarms.health or ""),
        lambda: cloudwatch.alarm_history(aws, p.region, p.alarms.health or ""),
        lambda: cloudwatch.put_alarm_state(aws, p.region, p.alarms.health or "", "OK", "drill"),
        lambda: lambda_.invoke(aws, p.region, p.lambda_function or "", {"trigger": "manual"}),
        lambda: sns.subscriptions(aws, p.region, stack.primary.sns_topic_arn),
        lambda: s3.replication(aws, p.region, stack.primary.bucket),
        lambda: s3.versioning(aws, p.region, stack.primary.bucket),
        lambda: s3.object_replication_status(aws, p.region, stack.primary.bucket, "index.html"),
    ]
    for call in calls:
        with contextlib.suppress(DrillError):  # moto's gaps; the call was made all the same
            call()
    used = aws.log.actions()
    allowed = _policy_actions()
    assert used - allowed == set(), f"calls the policy does not allow: {sorted(used - allowed)}"
    assert allowed - used == set(), f"policy actions no adapter uses: {sorted(allowed - used)}"
