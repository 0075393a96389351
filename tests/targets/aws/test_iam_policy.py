"""docs/iam-policy.json allows every call the adapters make, and nothing the drills do not need.

Every adapter function runs once against a stack in moto through one logged client factory;
the actions it used are compared with the policy's. A call that fails on moto (no alarm history,
no Lambda runtime, no Aurora cluster here) is still logged before it is sent, so it counts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from drdrill.config import load_config
from drdrill.errors import DrillError
from drdrill.sandbox.aws.provision import (
    MOTO_ACCOUNT,
    ProvisionedStack,
    _state_manager,
    names_only_settings,
)
from drdrill.targets.aws import (
    cloudwatch,
    ecs,
    elbv2,
    lambda_,
    logs,
    rds,
    route53,
    s3,
    sns,
    sts,
)
from drdrill.targets.aws.names import StackNames
from drdrill.targets.aws.session import AwsClients
from drdrill.targets.aws.target import AwsTarget

POLICY = Path(__file__).resolve().parents[3] / "docs" / "iam-policy.json"


def _policy_actions() -> set[str]:
    document = json.loads(POLICY.read_text())
    actions: set[str] = set()
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        actions.update(statement["Action"])
    return actions


#: actions the policy needs that no API call of ours names (and why)
NOT_CALLED = {
    # S3 answers HeadObject of a missing key with 403, not 404, without it
    "s3:ListBucket": "HeadObject of a marker not replicated yet",
    # tags given when an FIS template or experiment is created are authorised separately
    "fis:TagResource": "CreateExperimentTemplate and StartExperiment with tags",
    # FIS assumes the configured role: handing it over is a separate permission
    "iam:PassRole": "CreateExperimentTemplate with roleArn",
}


def _fis_actions(stack: ProvisionedStack, tmp_path: Path) -> set[str]:
    """The actions an FIS-backed fault calls: one injected and reverted through the target."""
    data = stack.settings.model_dump(mode="json", exclude_none=True)
    data["fis"] = {"role_arn": f"arn:aws:iam::{MOTO_ACCOUNT}:role/drdrill-fis"}
    data["fault_backend"] = "fis"
    config = tmp_path / "drdrill.yaml"
    config.write_text(yaml.safe_dump({"target": "aws", "targets": {"aws": data}}))
    target = AwsTarget(load_config(config))
    fault = target.stop_tasks("primary", count=1)
    # moto moves an experiment on at every read, where FIS keeps it running until stopped:
    # two reads a state leave it running for the undo to stop (as tests/targets/aws/test_fis.py)
    model = "fis::experiment"
    endpoint = stack.settings.endpoint_url or ""
    before = json.loads(_state_manager(endpoint, f"get-transition?model_name={model}"))
    slow = {"model_name": model, "transition": {"progression": "manual", "times": 2}}
    _state_manager(endpoint, "set-transition", slow)
    try:
        with contextlib.suppress(DrillError):
            fault.inject()
        # as `drdrill recover` would: only the journal record, the experiment found by its tag
        again = dataclasses.replace(type(fault).from_record(fault.to_record()), clients=target.aws)
        with contextlib.suppress(DrillError):
            again.revert()
    finally:
        _state_manager(endpoint, "set-transition", {"model_name": model, "transition": before})
    return target.aws.log.actions()


def test_every_adapter_call_is_allowed_by_the_policy(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    aws = AwsClients(endpoint_url=moto_endpoint)
    s = stack.settings
    p, d = s.primary, s.dr
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    check = stack.health_check_ids[0]
    calls: list[Callable[[], object]] = [
        lambda: sts.account_id(aws),
        lambda: ecs.running_tasks(aws, p.region, p.ecs.cluster, p.ecs.service),
        lambda: ecs.service_state(
            aws, p.region, p.ecs.cluster, p.ecs.service, stack.primary.target_group_arn
        ),
        lambda: ecs.stop_tasks(aws, p.region, p.ecs.cluster, p.ecs.service, count=1),
        lambda: ecs.update_desired_count(aws, p.region, p.ecs.cluster, p.ecs.service, 2),
        lambda: ecs.tasks_started_events(aws, d.region, d.ecs.cluster, d.ecs.service, hour_ago),
        lambda: elbv2.target_health(aws, p.region, stack.primary.target_group_arn),
        lambda: rds.describe_instance(aws, p.region, p.rds.instance_id),
        lambda: rds.replica_lag(aws, d.region, d.rds.instance_id),
        lambda: rds.reboot_instance(aws, p.region, p.rds.instance_id),
        lambda: rds.promote_read_replica(aws, d.region, d.rds.instance_id),
        lambda: rds.failover_cluster(aws, p.region, "no-such-cluster"),
        lambda: rds.cluster_writer(aws, p.region, "no-such-cluster"),
        lambda: rds.promotion_events(aws, d.region, d.rds.instance_id, hour_ago),
        lambda: route53.failover_records(aws, stack.zone_id, stack.record_name),
        lambda: route53.health_check_status(aws, stack.health_check_ids[0]),
        lambda: route53.set_health_check_inverted(
            aws, check, route53.health_check_inverted(aws, check)
        ),
        lambda: route53.get_change(aws, "C2682N5HXP0BZ4"),
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
        lambda: cloudwatch.set_actions_enabled(aws, p.region, p.alarms.health or "", False),
        lambda: cloudwatch.set_actions_enabled(aws, p.region, p.alarms.health or "", True),
        lambda: logs.lambda_starts(aws, p.region, p.lambda_function or "", hour_ago),
        lambda: lambda_.invoke(aws, p.region, p.lambda_function or "", {"trigger": "manual"}),
        lambda: sns.subscriptions(aws, p.region, stack.primary.sns_topic_arn),
        lambda: s3.replication(aws, p.region, stack.primary.bucket),
        lambda: s3.versioning(aws, p.region, stack.primary.bucket),
        lambda: s3.object_replication_status(aws, p.region, stack.primary.bucket, "index.html"),
    ]
    names = StackNames(aws, names_only_settings(stack), "drdrill.yaml")
    marker = "drdrill-iam-check/1"
    calls += [
        names.zone_id,
        lambda: names.target_group_arn("primary"),
        lambda: names.alb_dns("dr"),
        lambda: s3.put_object(aws, p.region, stack.primary.bucket, marker, b"1"),
        lambda: s3.head_object(aws, p.region, stack.primary.bucket, marker),
        lambda: s3.replicated_prefixes(aws, p.region, stack.primary.bucket, stack.dr.bucket),
        lambda: s3.delete_prefix(aws, p.region, stack.primary.bucket, "drdrill-iam-check/"),
    ]
    for call in calls:
        with contextlib.suppress(DrillError):  # moto's gaps; the call was made all the same
            call()
    used = aws.log.actions() | _fis_actions(stack, tmp_path)
    allowed = _policy_actions() - set(NOT_CALLED)
    assert used - allowed == set(), f"calls the policy does not allow: {sorted(used - allowed)}"
    assert allowed - used == set(), f"policy actions no adapter uses: {sorted(allowed - used)}"
