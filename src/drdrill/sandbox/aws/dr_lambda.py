"""The runbook's DR automation written as its Lambda function is: Python against boto3.

:func:`handler` is what AWS runs (``dr_lambda.handler``): it reads its settings from the
function's environment and calls the AWS API with the function's own credentials. The sandbox's
AWS API runs the same code through :func:`failover` with boto3 clients pointed at its endpoint,
so that an ``Invoke`` of the DR function, or the health alarm's notification through SNS,
fails the sandbox over by the calls a real function makes, each of which the sandbox acts on
for real (``PromoteReadReplica`` promotes the replica's ``mariadbd``, ``UpdateService`` starts
tasks, a Route53 record change moves what clients resolve).

The steps are the runbook's: promote the DR replica and wait until it is ``available`` and no
longer a replica; scale the DR service to its failover count; wait for that many healthy targets
behind the DR load balancer; point the primary failover record at the DR load balancer. The
record change's ``ChangeInfo`` is logged as one JSON line, where the AWS target finds its id.

Environment (the function's configuration):

``DR_REGION``, ``DB_REPLICA``, ``CLUSTER``, ``SERVICE``, ``DR_DESIRED``, ``DR_TARGET_GROUP_ARN``,
``HOSTED_ZONE_ID``, ``RECORD_NAME``, ``DR_ALB_DNS``, ``DR_ALB_ZONE_ID``; optional ``POLL_S``
(how often a wait asks, default 5 s: the sandbox sets 0.05 s) and ``WAIT_TIMEOUT_S`` (600 s).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

#: the settings the function needs from its environment
REQUIRED = (
    "DR_REGION",
    "DB_REPLICA",
    "CLUSTER",
    "SERVICE",
    "DR_DESIRED",
    "DR_TARGET_GROUP_ARN",
    "HOSTED_ZONE_ID",
    "RECORD_NAME",
    "DR_ALB_DNS",
    "DR_ALB_ZONE_ID",
)

LOG = logging.getLogger("dr_lambda")


class FailoverFailed(RuntimeError):
    """A step of the failover did not complete (the function's error)."""


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point: the failover with the function's environment and credentials."""
    import boto3

    return failover(event, os.environ, boto3.session.Session(), LOG)


def primary_health_check(route53: Any, zone_id: str, name: str) -> str | None:
    """The health check of the primary failover record ``name`` (None without one)."""
    wanted = name.rstrip(".") + "."
    answer = route53.list_resource_record_sets(
        HostedZoneId=zone_id, StartRecordName=wanted, StartRecordType="A"
    )
    for record in answer["ResourceRecordSets"]:
        if record["Name"] == wanted and record.get("SetIdentifier") == "primary":
            check = record.get("HealthCheckId")
            return str(check) if check else None
    return None


def point_record_at(
    route53: Any, zone_id: str, name: str, alb: tuple[str, str], comment: str
) -> dict[str, Any]:
    """UPSERT the primary failover record ``name`` as an alias of the load balancer ``alb``
    (DNS name, hosted zone id), keeping its health check (an UPSERT replaces the whole record);
    Route53's ``ChangeInfo``."""
    record: dict[str, Any] = {
        "Name": name,
        "Type": "A",
        "SetIdentifier": "primary",
        "Failover": "PRIMARY",
        "AliasTarget": {"HostedZoneId": alb[1], "DNSName": alb[0], "EvaluateTargetHealth": True},
    }
    check = primary_health_check(route53, zone_id, name)
    if check:
        record["HealthCheckId"] = check
    answer = route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Comment": comment,
            "Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}],
        },
    )
    info: dict[str, Any] = answer["ChangeInfo"]
    return info


def trigger_of(event: Mapping[str, Any]) -> str:
    """Who invoked the function: ``alarm`` for an SNS notification (the health alarm's), else
    the payload's ``trigger`` (the runbook's manual invocation says ``manual``)."""
    records = event.get("Records")
    first = records[0] if isinstance(records, list) and records else None
    if isinstance(first, Mapping) and first.get("EventSource") == "aws:sns":
        return "alarm"
    return str(event.get("trigger", "manual"))


def failover(
    event: Mapping[str, Any],
    env: Mapping[str, str],
    session: Any,
    log: logging.Logger,
    endpoint_url: str | None = None,
) -> dict[str, Any]:
    """Fail over to the DR region by the runbook's steps; the outcome as the function returns
    it. ``session`` is a boto3 session; ``endpoint_url`` sends every call there (the sandbox).
    """
    missing = [key for key in REQUIRED if not env.get(key)]
    if missing:
        raise FailoverFailed(f"the function's environment lacks {', '.join(missing)}")
    region, replica = env["DR_REGION"], env["DB_REPLICA"]
    want = int(env["DR_DESIRED"])
    poll = float(env.get("POLL_S", "5"))
    timeout = float(env.get("WAIT_TIMEOUT_S", "600"))

    def client(service: str, region_name: str = region) -> Any:
        return session.client(service, region_name=region_name, endpoint_url=endpoint_url)

    rds, ecs, elbv2 = client("rds"), client("ecs"), client("elbv2")
    route53 = client("route53", "us-east-1")
    trigger = trigger_of(event)
    log.info(json.dumps({"failover": "started", "trigger": trigger, "reason": event.get("reason")}))

    def wait(what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise FailoverFailed(f"gave up waiting {timeout:g} s for {what}")
            time.sleep(poll)

    # 1. the DR replica promoted: available and no longer a read replica
    def replica_state() -> dict[str, Any]:
        found: dict[str, Any] = rds.describe_db_instances(DBInstanceIdentifier=replica)[
            "DBInstances"
        ][0]
        return found

    if replica_state().get("ReadReplicaSourceDBInstanceIdentifier"):
        rds.promote_read_replica(DBInstanceIdentifier=replica)
        log.info(json.dumps({"step": "promote", "instance": replica}))
    wait(
        f"{replica} to be promoted",
        lambda: (
            (state := replica_state())["DBInstanceStatus"] == "available"
            and not state.get("ReadReplicaSourceDBInstanceIdentifier")
        ),
    )

    # 2. the DR service at its failover count
    ecs.update_service(cluster=env["CLUSTER"], service=env["SERVICE"], desiredCount=want)
    log.info(json.dumps({"step": "scale", "service": env["SERVICE"], "desired": want}))

    # 3. that many healthy targets behind the DR load balancer
    def healthy() -> int:
        answer = elbv2.describe_target_health(TargetGroupArn=env["DR_TARGET_GROUP_ARN"])
        return sum(
            1 for d in answer["TargetHealthDescriptions"] if d["TargetHealth"]["State"] == "healthy"
        )

    wait(f"{want} healthy targets", lambda: healthy() >= want)
    log.info(json.dumps({"step": "wait_healthy", "healthy": want}))

    # 4. the primary failover record pointed at the DR load balancer
    info = point_record_at(
        route53,
        env["HOSTED_ZONE_ID"],
        env["RECORD_NAME"],
        (env["DR_ALB_DNS"], env["DR_ALB_ZONE_ID"]),
        f"DR failover ({trigger})",
    )
    log.info(json.dumps({"ChangeInfo": {"Id": info["Id"], "Status": info["Status"]}}))
    return {"status": "completed", "trigger": trigger, "change": info["Id"], "healthy": want}
