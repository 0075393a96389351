"""ELBv2: the health of a target group's targets, as the load balancer sees them."""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import ClientError

from drdrill.errors import DrillError
from drdrill.targets.aws.session import AwsClients


@dataclass(frozen=True)
class TargetHealth:
    """One registered target and its state (``healthy``, ``unhealthy``, ``draining``, ...)."""

    id: str
    port: int | None
    state: str
    #: the load balancer's reason code (``Target.FailedHealthChecks``); None when healthy
    reason: str | None = None


def target_health(aws: AwsClients, region: str, target_group_arn: str) -> list[TargetHealth]:
    """Every target registered in the group, in the order the API lists them."""
    try:
        answer = aws.client("elbv2", region).describe_target_health(TargetGroupArn=target_group_arn)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise DrillError(
            f"target group '{target_group_arn}' ({region}): "
            f"{error.get('Code', 'error')}: {error.get('Message', str(exc))}"
        ) from exc
    targets = []
    for item in answer.get("TargetHealthDescriptions", []):
        target = item.get("Target", {})
        health = item.get("TargetHealth", {})
        port = target.get("Port")
        targets.append(
            TargetHealth(
                id=str(target["Id"]),
                port=int(port) if port is not None else None,
                state=str(health.get("State", "unknown")),
                reason=health.get("Reason"),
            )
        )
    return targets


def healthy_count(aws: AwsClients, region: str, target_group_arn: str) -> int:
    """How many of the group's targets are ``healthy``."""
    return sum(1 for t in target_health(aws, region, target_group_arn) if t.state == "healthy")
