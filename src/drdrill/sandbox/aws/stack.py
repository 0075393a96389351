"""The sandbox's stack in its AWS API: built once at ``sandbox up``, then kept true.

:func:`serve` starts the endpoint, builds the runbook's pilot-light stack in it under the
runbook's names (:func:`names`), hooks the reconciler to the supervisor's processes and returns
what a drill needs to point the AWS target at it (:func:`target_section`).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from moto.backends import get_backend
from moto.moto_api._internal import mock_random

from drdrill.sandbox.aws.assets import CopyReceiver, send_copy
from drdrill.sandbox.aws.endpoint import AwsEndpoint, Call
from drdrill.sandbox.aws.failover import (
    DrFunction,
    install_cross_region_replica_delete,
    listen_to_record_changes,
    stop_listening,
)
from drdrill.sandbox.aws.healthcheck import FailoverRouting, HealthCheckers
from drdrill.sandbox.aws.provision import (
    ASSETS_RULE_ID,
    ProvisionedRegion,
    ProvisionedStack,
    provision_stack,
)
from drdrill.sandbox.aws.reconcile import ACCOUNT, BucketReplication, Reconciler, RegionPlane
from drdrill.targets.aws.session import AwsClients
from drdrill.targets.aws.settings import AwsSettings

if TYPE_CHECKING:
    from drdrill.sandbox.automation import DrAutomation
    from drdrill.sandbox.settings import RegionKey, SandboxSettings

#: the credentials every client of the sandbox's endpoint uses (moto takes any)
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "sandbox",
    "AWS_SECRET_ACCESS_KEY": "sandbox",
    "AWS_DEFAULT_REGION": "eu-west-1",
}
#: the DR function's own: its execution role's, which Lambda puts in the function's environment
#: (a key id of its own, so that the API's log tells the function's calls from everyone else's)
FUNCTION_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "ASIASANDBOXDRLAMBDA",
    "AWS_SECRET_ACCESS_KEY": "sandbox-dr-lambda",
    "AWS_SESSION_TOKEN": "sandbox-dr-lambda-role",
}
#: moto's random ids are seeded with this before the stack is built
SEED = 20261130
#: the runbook's resources are named after its application
BASE = "visitor-analytics"


def names(settings: SandboxSettings) -> AwsSettings:
    """The runbook's names for the sandbox's stack (regions as the sandbox names them)."""
    zone = settings.app_name.split(".", 1)[1]

    def region(key: str, region_name: str, db: str) -> dict[str, Any]:
        return {
            "region": region_name,
            "ecs": {"cluster": BASE, "service": BASE},
            "alb": {"name": f"{BASE}-{key}", "target_group_name": f"{BASE}-{key}"},
            "rds": {"instance_id": db},
            "alarms": {"health": f"{BASE}-{key}-health", "guards": []},
            "sns_topic_arn": f"arn:aws:sns:{region_name}:{ACCOUNT}:{BASE}-alerts",
            "s3": {"bucket": f"{BASE}-assets-{region_name}"},
        }

    primary = region("primary", settings.primary.name, f"{BASE}-db")
    primary["lambda_function"] = f"{BASE}-dr-automation"
    dr = region("dr", settings.dr.name, f"{BASE}-db-replica")
    dr["ecs"]["scale_to"] = settings.dr.scale_to
    return AwsSettings.model_validate(
        {
            "primary": primary,
            "dr": dr,
            "route53": {"zone_name": zone, "record_name": settings.app_name},
        }
    )


@dataclass
class SandboxAws:
    """The endpoint, the stack built in it and the reconciler keeping it true."""

    endpoint: AwsEndpoint
    stack: ProvisionedStack
    reconciler: Reconciler
    function: DrFunction | None = None
    #: Route53's checkers of the failover record's health checks (GetHealthCheckStatus)
    checkers: HealthCheckers | None = None
    #: the DR region's end of S3's copies across the inter-region link
    receiver: CopyReceiver | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    def notify_alarm(self, delay_s: float, reason: str) -> None:
        """The health alarm's action, as CloudWatch takes it: after ``delay_s`` (the sandbox's
        ``timings.automation_delay``), a notification to the alerts topic, whose ``lambda``
        subscription runs the DR function (in the background)."""
        primary = self.stack.primary
        alarm = self.stack.settings.primary.alarms.health or ""

        def publish() -> None:
            if self._stopping.wait(delay_s):
                return  # the sandbox is going down
            message = {
                "AlarmName": alarm,
                "NewStateValue": "ALARM",
                "NewStateReason": reason,
                "StateChangeTime": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "Region": primary.region,
                "AlarmArn": primary.health_alarm_arn,
            }
            try:
                AwsClients(endpoint_url=self.endpoint.url).client("sns", primary.region).publish(
                    TopicArn=primary.sns_topic_arn,
                    Subject=f'ALARM: "{alarm}" in {primary.region}',
                    Message=json.dumps(message),
                )
            except Exception as exc:  # the failover then never starts: say why
                self.reconciler.errors = [
                    *self.reconciler.errors[-9:],
                    f"alarm notification: {type(exc).__name__}: {exc}",
                ]

        threading.Thread(target=publish, name="alarm-to-sns", daemon=True).start()

    def stop(self) -> None:
        """Stop mirroring, then serving."""
        self._stopping.set()
        if self.checkers is not None:
            if self.checkers.routing is not None:
                stop_listening(self.checkers.routing.on_record_change)
            self.checkers.stop()
        self.reconciler.stop()
        if self.receiver is not None:
            self.receiver.stop()
        if self.function is not None:
            self.function.close()
        self.endpoint.stop()


def _store_replica(bucket: str, key: str, data: bytes) -> None:
    """A copy that crossed the link, put in the DR bucket as S3 puts a replica."""
    copy = get_backend("s3")[ACCOUNT]["global"].put_object(bucket, key, data)
    copy.sandbox_replication_status = "REPLICA"  # type: ignore[attr-defined]


def route53_backend() -> Any:
    """moto's Route53 (global) of the sandbox's account."""
    return get_backend("route53")[ACCOUNT]["global"]


def serve(
    settings: SandboxSettings,
    schedulers: Mapping[RegionKey, Any],
    lbs: Mapping[RegionKey, Any],
    reboot_db: Callable[[RegionKey, str], Any] | None = None,
    db_running: Callable[[RegionKey], bool] | None = None,
    monitor: Any = None,
    replication: Callable[[RegionKey], Any] | None = None,
    region_up: Callable[[RegionKey], bool] | None = None,
    automation: DrAutomation | None = None,
    set_mode: Callable[[str], Any] | None = None,
    mode: str = "manual",
    on_call: Callable[[Call], object] | None = None,
    route_dns: Callable[[RegionKey, str], object] | None = None,
    copies_via: tuple[str, int] | None = None,
) -> SandboxAws:
    """Start the endpoint on ``127.0.0.1:<ports.aws>``, build the stack, start reconciling.

    ``copies_via``, when given, is the inter-region link's end in the primary region that
    carries S3's copies to the DR region's receiver (on ``<dr>.s3_ip:<ports.aws>``): each copy
    then takes the link's latency and waits out its partitions. Without it copies are made in
    place.

    ``route_dns(region, why)``, when given (``targets.sandbox.route53_routing``), points the
    sandbox's DNS where Route53's failover routing answers, on the health checks' statuses.

    ``monitor`` is the primary's health monitor: the primary health alarm's state and history;
    ``replication`` reads a region's database's ``SHOW SLAVE STATUS`` (StatusInfos,
    ReplicaLag): DR's as the pilot light, the primary's while a failback rebuilds it as one.
    """
    install_cross_region_replica_delete()
    endpoint = AwsEndpoint("127.0.0.1", settings.port("aws"))
    endpoint.app.on_call = on_call
    endpoint.start()
    stopping = threading.Event()
    receiver: CopyReceiver | None = None
    try:
        for key, value in CREDENTIALS.items():
            os.environ.setdefault(key, value)
        aws = AwsClients(endpoint_url=endpoint.url)
        # the same ids at every start (target group ARNs, the zone): a config written at one
        # `sandbox up` stays true after the stack is reset
        mock_random.seed(SEED)
        stack = provision_stack(
            aws,
            names(settings),
            desired=(settings.primary.desired, settings.dr.desired),
            start_tasks=False,
            # a crash reboot is the sandbox's Multi-AZ failover: ForceFailover is allowed
            multi_az=True,
        )
        built = stack.settings
        planes: dict[str, RegionPlane] = {}
        built_regions: tuple[tuple[RegionKey, ProvisionedRegion], ...] = (
            ("primary", stack.primary),
            ("dr", stack.dr),
        )
        for key, region in built_regions:
            r = built.primary if key == "primary" else built.dr
            planes[key] = RegionPlane(
                key=key,
                region=region.region,
                cluster=r.ecs.cluster,
                service=r.ecs.service,
                target_group_arn=region.target_group_arn,
                scheduler=schedulers[key],
                lb=lbs[key],
                db_instance_id=r.rds.instance_id,
                reboot_db=None if reboot_db is None else partial(reboot_db, key),
                db_running=None if db_running is None else partial(db_running, key),
                alarm_name=r.alarms.health or "",
                monitor=monitor if key == "primary" else None,
                replication=None if replication is None else partial(replication, key),
                load_balancer_arn=region.load_balancer_arn,
            )
        up = region_up or (lambda key: True)
        destination = built.dr.s3.bucket or ""
        carry = None
        if copies_via is not None:
            # each copy crosses the inter-region link as bytes, to the DR region's receiver
            receiver = CopyReceiver(
                (settings.dr.s3_ip, settings.port("aws")),
                partial(_store_replica, destination),
                accepting=lambda: up("dr"),
            )
            receiver.start()
            carry = partial(send_copy, copies_via, stop=stopping.is_set)
        assets = BucketReplication(
            source=built.primary.s3.bucket or "",
            destination=destination,
            delay_s=settings.timings.s3_replication_delay,
            # S3 copies while both regions are up (no copy out of, or into, a region down)
            link_up=lambda: up("primary") and up("dr"),
            region=built.primary.region,
            rule_id=ASSETS_RULE_ID,
            carry=carry,
        )
        reconciler = Reconciler(
            endpoint.app,
            planes,
            cloudwatch=lambda region: aws.client("cloudwatch", region),
            assets=assets,
        )
        if automation is not None and set_mode is not None:
            # the DR function's code (dr_lambda) reads this environment, as on AWS
            code = {
                "DR_REGION": stack.dr.region,
                "DB_REPLICA": built.dr.rds.instance_id,
                "CLUSTER": built.dr.ecs.cluster,
                "SERVICE": built.dr.ecs.service,
                "DR_DESIRED": str(settings.dr.scale_to),
                "DR_TARGET_GROUP_ARN": stack.dr.target_group_arn,
                "HOSTED_ZONE_ID": stack.zone_id,
                "RECORD_NAME": stack.record_name,
                "DR_ALB_DNS": stack.dr.load_balancer_dns,
                "DR_ALB_ZONE_ID": stack.dr.load_balancer_zone_id,
                "POLL_S": "0.05",
                "WAIT_TIMEOUT_S": "60",
            }
            lambda_ = aws.client("lambda", stack.primary.region)
            lambda_.update_function_configuration(
                FunctionName=built.primary.lambda_function or "",
                Handler="dr_lambda.handler",
                Environment={"Variables": code},
            )
            # the alarm's notification invokes it: alarm -> SNS -> Lambda
            lambda_.add_permission(
                FunctionName=built.primary.lambda_function or "",
                StatementId="alerts-topic",
                Action="lambda:InvokeFunction",
                Principal="sns.amazonaws.com",
                SourceArn=stack.primary.sns_topic_arn,
            )
            aws.client("sns", stack.primary.region).subscribe(
                TopicArn=stack.primary.sns_topic_arn,
                Protocol="lambda",
                Endpoint=stack.primary.function_arn or "",
            )
            function = DrFunction(
                endpoint.app,
                region=stack.primary.region,
                function=built.primary.lambda_function or "",
                dr_region=stack.dr.region,
                replica_id=built.dr.rds.instance_id,
                zone_id=stack.zone_id,
                record_name=stack.record_name,
                dr_alb=(stack.dr.load_balancer_dns, stack.dr.load_balancer_zone_id),
                alarm=(stack.primary.region, built.primary.alarms.health or ""),
                set_mode=set_mode,
                route53=lambda: aws.client("route53", "us-east-1"),
                primary_alb=(stack.primary.load_balancer_dns, stack.primary.load_balancer_zone_id),
                step=automation.step,
                dns_changed=automation.dns_changed,
                code=code,
                credentials=FUNCTION_CREDENTIALS,
                endpoint_url=endpoint.url,
                primary_id=built.primary.rds.instance_id,
                failback_step=automation.failback_step,
                writer_region=lambda: automation.sandbox.writer_region,
            )
            function.match_mode(mode)
            automation.listeners.append(function.on_automation)
            reconciler.each_pass.append(function.sync_mode)
        else:
            function = None
        reconciler.start()
        checkers = HealthCheckers(
            lambda: route53_backend().health_checks,
            {
                stack.primary.load_balancer_dns: (lbs["primary"].bind_ip, lbs["primary"].port),
                stack.dr.load_balancer_dns: (lbs["dr"].bind_ip, lbs["dr"].port),
            },
            interval=settings.timings.health_check_interval,
        )
        checkers.start()
        if route_dns is not None:
            routing = FailoverRouting(
                lambda: [
                    r
                    for r in route53_backend().zones[stack.zone_id].rrsets
                    if str(r.name).rstrip(".") == stack.record_name.rstrip(".")
                ],
                lambda: route53_backend().health_checks,
                checkers,
                {stack.primary.load_balancer_dns: "primary", stack.dr.load_balancer_dns: "dr"},
                route_dns,
            )
            checkers.each_pass.append(routing.evaluate)
            listen_to_record_changes(routing.on_record_change)
            checkers.routing = routing
            routing.evaluate()
    except BaseException:
        stopping.set()
        if receiver is not None:
            receiver.stop()
        endpoint.stop()
        raise
    return SandboxAws(
        endpoint=endpoint,
        stack=stack,
        reconciler=reconciler,
        function=function,
        checkers=checkers,
        receiver=receiver,
        _stopping=stopping,
    )


def target_section(
    aws: SandboxAws,
    settings: SandboxSettings,
    db: Mapping[RegionKey, tuple[str, int, str, str, str]],
) -> dict[str, Any]:
    """``targets.aws`` for a drill of this sandbox through its AWS API.

    ``db`` is each region's (host, port, user, password, database) of the app's database.
    """
    data: dict[str, Any] = aws.stack.settings.model_dump(mode="json", exclude_none=True)
    data["endpoint_url"] = aws.endpoint.url
    data["dns"] = {"name_servers": [settings.dns_ip], "port": settings.port("dns")}
    data["blast_radius"] = {"max_tasks_percent": 100}
    data["http_port"] = settings.port("lb")
    data["real_recovery"] = True
    for key in ("primary", "dr"):
        host, port, user, password, name = db[key]
        data[key]["database"] = {
            "user": user,
            "password": password,
            "name": name,
            "host": host,
            "port": port,
        }
    return data


def script_env(target: Mapping[str, Any]) -> list[str]:
    """``/usr/bin/env NAME=value ...``: what the runbook's aws-CLI scripts
    (``drdrill/scripts/aws``) need to find this sandbox's stack: its names, the sandbox's
    credentials (moto takes any; with them set the CLI never asks an instance metadata
    service) and this Python's ``aws`` first on the PATH."""
    primary, dr = target["primary"], target["dr"]

    def group(alb: Mapping[str, Any]) -> str:
        # by name, or the name inside its ARN (...:targetgroup/<name>/<id>)
        return str(alb.get("target_group_name") or str(alb["target_group_arn"]).split("/")[1])

    env = {
        **CREDENTIALS,
        "AWS_EC2_METADATA_DISABLED": "true",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "CLUSTER": dr["ecs"]["cluster"],
        "SERVICE": dr["ecs"]["service"],
        "DB_PRIMARY": primary["rds"]["instance_id"],
        "DB_REPLICA": dr["rds"]["instance_id"],
        "PRIMARY_ALB": primary["alb"]["name"],
        "DR_ALB": dr["alb"]["name"],
        "PRIMARY_TARGET_GROUP": group(primary["alb"]),
        "DR_TARGET_GROUP": group(dr["alb"]),
        "RECORD_NAME": target["route53"]["record_name"],
        "ZONE_ID": str(target["route53"].get("zone_id") or ""),
        "ZONE_NAME": str(
            target["route53"].get("zone_name")
            or str(target["route53"]["record_name"]).split(".", 1)[1]
        ),
        "DR_DESIRED": str(dr["ecs"].get("scale_to") or 1),
        "HTTP_PORT": str(target.get("http_port") or 80),
    }
    return ["/usr/bin/env", *(f"{k}={v}" for k, v in env.items())]


def drill_config(
    sandbox_config: Path,
    target: dict[str, Any],
    regions: list[str],
    run_dir: Path,
    failback_env: Mapping[str, str] | None = None,
) -> str:
    """A drill config (YAML) for this sandbox through its AWS API: the sandbox config's own
    objectives, probes, writer and drill settings, with ``target: aws`` and ``targets.aws``
    pointed at the endpoint (every path made absolute, so that it works from anywhere).
    ``failback_env`` adds to the failback script's environment (the primary's desired count,
    the DNS TTL)."""
    raw = yaml.safe_load(sandbox_config.read_text()) if sandbox_config.is_file() else {}
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{sandbox_config}: not a mapping")
    base = sandbox_config.resolve().parent
    data: dict[str, Any] = {k: v for k, v in raw.items() if k not in ("targets", "target")}
    for key in ("runbook", "journal", "report_dir", "history"):
        if data.get(key) is not None:
            data[key] = str((base / str(data[key])).resolve())
    # the AWS target probes and writes through its own names (the record, the ALBs)
    probes = dict(data.get("probes") or {})
    probes.pop("endpoints", None)
    data["probes"] = probes
    writer = dict(data.get("writer") or {})
    writer.pop("url", None)
    data["writer"] = writer
    data["safety"] = {"allowed_accounts": [ACCOUNT], "allowed_regions": regions}
    sandbox = dict((raw.get("targets") or {}).get("sandbox") or {})
    sandbox["run_dir"] = str(run_dir.resolve())
    sandbox["aws_api"] = True  # a reset must bring the endpoint back
    scripts = Path(str(resources.files("drdrill") / "scripts"))
    target = {
        **target,
        "scripts": {
            # the runbook's failover as aws CLI calls to the endpoint (AWS_ENDPOINT_URL and
            # the regions come from the AWS target; the names and credentials from here)
            "failover": shlex.join(
                [*script_env(target), str(scripts / "aws" / "failover.sh"), "--yes"]
            ),
            # the runbook's failback as aws CLI calls to the endpoint, as the failover
            "failback": shlex.join(
                [
                    *script_env(target),
                    *(f"{k}={v}" for k, v in (failback_env or {}).items()),
                    str(scripts / "aws" / "failback.sh"),
                ]
            ),
        },
    }
    data["target"] = "sandbox-aws"
    data["targets"] = {"aws": target, "sandbox": sandbox}
    header = (
        "# Generated by `drdrill sandbox up`: the sandbox drilled through its AWS API\n"
        "# (target sandbox-aws: the AWS target's calls, the sandbox's ground truth; with\n"
        "# --dr-target aws the same drills without ground truth, credentials from\n"
        "# `drdrill sandbox status --json`'s aws.env).\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False)
