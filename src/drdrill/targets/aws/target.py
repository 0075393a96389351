"""The ``aws`` target: the runbook's stack on AWS (or an AWS API emulator), through the adapters.

The same suites that drill the sandbox drill it: the capability methods mirror the sandbox
target's. On an emulator (an ``endpoint_url`` on loopback) nothing recovers by itself (moto never
replaces a stopped task, a reboot is a no-op, a promoted replica keeps its source), so the drills
that need real recovery skip with that reason; faults still inject and revert, readiness checks,
dry-run plans and the safety refusals run for real.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from drdrill.config import DrillConfig, EndpointConfig
from drdrill.errors import DrillError
from drdrill.faults.base import Fault, is_destructive
from drdrill.probes.lag import LagReading, ReplicationState
from drdrill.targets.aws import cloudwatch, ecs, elbv2, lambda_, rds, route53, s3, sns, terraform
from drdrill.targets.aws.faults import AwsAccess, RebootDbInstance, ScaleServiceToZero, StopEcsTasks
from drdrill.targets.aws.safety import StopConditions, blast_radius, check_destructive
from drdrill.targets.aws.session import AwsClients
from drdrill.targets.aws.settings import AwsSettings, RegionSettings, load_aws_settings
from drdrill.timeline import Timeline

Region = Literal["primary", "dr"]

EMULATOR_LIMITS = (
    "an AWS API emulator does not recover anything (moto never replaces a stopped task, a "
    "reboot is a no-op, a promoted replica keeps its source)"
)


def _is_loopback_url(url: str | None) -> bool:
    if not url:
        return False
    host = urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class AwsTarget:
    """An AWS stack described in ``targets.aws``."""

    name = "aws"
    needs_destructive_flag = True

    def __init__(self, config: DrillConfig, worker: str | None = None) -> None:
        """The stack of ``targets.aws`` (the same one for every ``worker``)."""
        self.config = config
        self.settings: AwsSettings = load_aws_settings(config)
        self.aws: AwsClients = self.settings.clients()
        self._outputs: dict[str, str] | None = None

    def terraform_outputs(self) -> dict[str, str]:
        """``terraform output`` of the stack (read once), empty when none is configured."""
        if self._outputs is None:
            source = self.settings.terraform_outputs
            self._outputs = terraform.outputs(source) if source else {}
        return self._outputs

    def alb_dns(self, region: Region) -> str | None:
        """A region's ALB DNS name: configured, or terraform's ``<primary|dr>_alb_dns`` output."""
        configured = self.region(region).alb.dns_name
        return configured or self.terraform_outputs().get(f"{region}_alb_dns")

    # --- lifecycle ---------------------------------------------------------------------------

    def set_dry_run(self, dry_run: bool) -> None:
        """In a dry run every changing call is logged and answered empty, never sent."""
        self.aws.dry_run = dry_run

    @property
    def on_emulator(self) -> bool:
        """Whether the endpoint is an emulator on this machine (moto, LocalStack)."""
        return _is_loopback_url(self.settings.endpoint_url)

    @property
    def cannot_recover(self) -> str | None:
        """Why drills that need real recovery cannot run here (None on real AWS)."""
        return EMULATOR_LIMITS if self.on_emulator else None

    def start(self) -> None:
        """Nothing to start: the stack is AWS's."""

    def stop(self) -> None:
        """Nothing to stop."""

    def plan(self) -> list[str]:
        """Every AWS call this run made, or in a dry run would have made (one line each)."""
        return [call.describe() for call in self.aws.log.calls]

    # --- safety ------------------------------------------------------------------------------

    def guard(self, fault: Fault, allow_destructive: bool) -> None:
        """Refuse a destructive fault unless account, regions and the flag all allow it."""
        if not is_destructive(fault):
            return
        check_destructive(
            self.aws,
            self.settings,
            self.config.safety,
            allow_destructive,
            self.settings.regions,
        )

    #: how often stop conditions are polled while a fault is in
    stop_condition_interval_s = 1.0

    def stop_conditions(self, availability: Callable[[], float | None]) -> StopConditions:
        """The guard alarms and availability budget of ``targets.aws.stop_conditions``."""
        return StopConditions.from_settings(self.aws, self.settings, availability)

    # --- regions -----------------------------------------------------------------------------

    def region(self, key: Region) -> RegionSettings:
        """A region's settings."""
        return self.settings.primary if key == "primary" else self.settings.dr

    def _access(self) -> AwsAccess:
        s = self.settings
        return AwsAccess(s.endpoint_url, s.profile, s.role_arn)

    def _ecs(self, key: Region) -> tuple[str, str, str]:
        r = self.region(key)
        return r.region, r.ecs.cluster, r.ecs.service

    # --- what probes use ---------------------------------------------------------------------

    def endpoints(self, region: Region | None = None) -> list[EndpointConfig]:
        """The runbook's post-failover checks through the public record, or a region's ALB."""
        if region is None and self.settings.route53.record_name:
            host = self.settings.route53.record_name.rstrip(".")
        else:
            host = self.alb_dns(region or "primary") or ""
        if not host:
            raise DrillError("aws target: no alb dns_name or route53 record_name to probe")
        base = f"http://{host}"
        return [
            EndpointConfig(url=f"{base}/health-simple.php", name="health"),
            EndpointConfig(url=f"{base}/", name="home"),
            EndpointConfig(url=f"{base}/api.php?action=stats", name="stats"),
        ]

    # --- faults ------------------------------------------------------------------------------

    def stop_tasks(
        self,
        region: Region = "primary",
        count: int | None = 1,
        percent: float | None = None,
        mode: Literal["graceful", "kill"] = "kill",
    ) -> StopEcsTasks:
        """A fault: stop tasks, within the blast-radius limit (ECS stops are always graceful)."""
        where, cluster, service = self._ecs(region)
        running = len(ecs.running_tasks(self.aws, where, cluster, service))
        allowed = blast_radius(
            running, count, percent, self.settings.blast_radius.max_tasks_percent
        )
        return StopEcsTasks(
            self._access(),
            where,
            cluster,
            service,
            ecs.desired_count(self.aws, where, cluster, service),
            count=allowed,  # the guard's count, whatever rounding the request needed
            percent=None,
            clients=self.aws,
        )

    def reboot_db(
        self, region: Region = "primary", mode: Literal["clean", "crash"] = "clean"
    ) -> RebootDbInstance:
        """A fault: reboot the region's database (``crash`` asks for a Multi-AZ failover)."""
        r = self.region(region)
        return RebootDbInstance(
            self._access(),
            r.region,
            r.rds.instance_id,
            force_failover=mode == "crash",
            clients=self.aws,
        )

    def region_down(
        self, region: Region = "primary", mode: Literal["kill", "freeze"] = "kill"
    ) -> ScaleServiceToZero:
        """A fault: the region's service loses every task (AWS cannot be switched off)."""
        where, cluster, service = self._ecs(region)
        return ScaleServiceToZero(
            self._access(),
            where,
            cluster,
            service,
            ecs.desired_count(self.aws, where, cluster, service),
            clients=self.aws,
        )

    # --- actions -----------------------------------------------------------------------------

    def scale(self, region: Region, desired: int) -> None:
        """Change a service's desired count."""
        ecs.update_desired_count(self.aws, *self._ecs(region), desired)

    def invoke_dr(self, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Invoke the DR automation Lambda with the runbook's payload."""
        r = self.settings.primary
        function = r.lambda_function or self.settings.dr.lambda_function
        if not function:
            raise DrillError("aws target: no lambda_function configured")
        body = dict(payload or {"trigger": "manual", "reason": "disaster_recovery"})
        return lambda_.invoke(self.aws, r.region, function, body)

    # --- observations ------------------------------------------------------------------------

    def desired(self, region: Region) -> int:
        """A service's desired count."""
        return ecs.desired_count(self.aws, *self._ecs(region))

    def running_tasks(self, region: Region) -> int:
        """A service's running tasks."""
        return len(ecs.running_tasks(self.aws, *self._ecs(region)))

    def healthy_targets(self, region: Region) -> int:
        """Healthy targets of the region's target group."""
        r = self.region(region)
        if not r.alb.target_group_arn:
            raise DrillError(f"aws target: no target_group_arn for {region}")
        return elbv2.healthy_count(self.aws, r.region, r.alb.target_group_arn)

    def alarm_state(self) -> str:
        """The primary's health alarm state."""
        r = self.settings.primary
        if not r.alarms.health:
            raise DrillError("aws target: no health alarm configured")
        return cloudwatch.alarm_state(self.aws, r.region, r.alarms.health)

    def alarm_history(self) -> list[dict[str, Any]]:
        """The health alarm's state changes as CloudWatch reports them (reported events)."""
        r = self.settings.primary
        if not r.alarms.health:
            raise DrillError("aws target: no health alarm configured")
        return [
            {"state": c.new, "utc": c.utc.isoformat(), "reason": c.reason}
            for c in cloudwatch.alarm_history(self.aws, r.region, r.alarms.health)
        ]

    def dns_answer(self, nameservers: list[str] | None = None, port: int = 53) -> str | None:
        """What resolvers answer for the public record now: the zone's name servers when given,
        else the system resolver (the runbook's DNS Update is over when both say DR)."""
        name = self.settings.route53.record_name
        if not name:
            raise DrillError("aws target: no route53 record_name configured")
        answers = route53.resolve(name.rstrip("."), nameservers, port)
        return answers[0] if answers else None

    def alarm_notifies(self) -> bool:
        """The health alarm has an SNS action with at least one subscriber."""
        r = self.settings.primary
        if not r.alarms.health:
            return False
        topics = [
            a
            for a in cloudwatch.alarm_actions(self.aws, r.region, r.alarms.health)
            if a.startswith("arn:aws:sns:")
        ]
        return any(sns.subscriptions(self.aws, t.split(":")[3], t) for t in topics)

    def db_writable(self, region: Region) -> bool:
        """The region's database is available and not a replica."""
        r = self.region(region)
        return rds.is_writable(self.aws, r.region, r.rds.instance_id)

    def database_multi_az(self, region: Region) -> bool:
        """Whether the region's database is Multi-AZ (a failover reboot needs it)."""
        r = self.region(region)
        return rds.describe_instance(self.aws, r.region, r.rds.instance_id).multi_az

    def replication_running(self) -> ReplicationState:
        """The DR database is a read replica of the primary's and RDS says, in its
        ``StatusInfos``, that it is replicating; otherwise the reason names the state."""
        dr = self.settings.dr
        instance = rds.describe_instance(self.aws, dr.region, dr.rds.instance_id)
        problem = rds.replication_problem(
            instance, self.settings.primary.rds.instance_id, dr.region
        )
        return ReplicationState(True) if problem is None else ReplicationState(False, problem)

    #: how far back the readiness check looks for a ReplicaLag datapoint
    lag_window_minutes = 5

    def replica_lag(self, timeline: Timeline, rpo_s: float | None = None) -> LagReading:
        """The DR replica's latest ``ReplicaLag`` from CloudWatch (the minute's maximum, ± 1 s:
        CloudWatch gives whole seconds); a missing figure, with the reason, when CloudWatch has
        no datapoint in the window or the lag is -1 (replication not active). ``rpo_s`` is not
        needed: the figure is compared with it by the caller."""
        dr = self.settings.dr
        minutes = self.lag_window_minutes
        point = rds.replica_lag(self.aws, dr.region, dr.rds.instance_id, minutes=minutes)
        reading = replica_lag_reading(point, dr.rds.instance_id, minutes)
        timeline.mark("replica_lag_read", **reading.to_json())
        return reading

    def primary_record_healthy(self) -> bool:
        """The failover record's PRIMARY has a health check that says HEALTHY."""
        r53 = self.settings.route53
        if not (r53.zone_id and r53.record_name):
            return False
        records = route53.failover_records(self.aws, r53.zone_id, r53.record_name)
        primary = [rec for rec in records if rec.role == "PRIMARY"]
        return bool(primary) and all(
            rec.health_check_id is not None
            and route53.health_check_status(self.aws, rec.health_check_id) == "HEALTHY"
            for rec in primary
        )

    def static_assets_replicated(self) -> bool:
        """The primary bucket replicates (an enabled rule) into the DR region's bucket."""
        p, d = self.settings.primary, self.settings.dr
        if not (p.s3.bucket and d.s3.bucket):
            return False
        config = s3.replication(self.aws, p.region, p.s3.bucket)
        return config is not None and d.s3.bucket in config.enabled_destinations()

    def describe(self) -> Mapping[str, Any]:
        """Kind, regions, endpoint."""
        return {
            "name": self.name,
            "kind": "aws",
            "endpoint_url": self.settings.endpoint_url,
            "emulator": self.on_emulator,
            "regions": {"primary": self.settings.primary.region, "dr": self.settings.dr.region},
        }


def replica_lag_reading(point: cloudwatch.Datapoint | None, db_id: str, minutes: int) -> LagReading:
    """A ``ReplicaLag`` datapoint as a readiness reading: no datapoint and -1 are failures."""
    if point is None:
        return LagReading.missing(
            f"no ReplicaLag datapoints for {db_id} in the last {minutes} minutes"
        )
    if point.minimum < 0:
        # RDS publishes -1 while replication is not active; the minute's minimum catches it
        # even when the lag was positive earlier in the same minute
        return LagReading.missing(
            f"ReplicaLag for {db_id} was {point.minimum:g} in the minute from "
            f"{point.utc:%H:%M} UTC: replication is not active"
        )
    return LagReading.measured(point.maximum, 1.0)
