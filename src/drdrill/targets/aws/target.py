"""The ``aws`` target: the runbook's stack on AWS (or an AWS API emulator), through the adapters.

The same suites that drill the sandbox drill it: the capability methods mirror the sandbox
target's. On an emulator (an ``endpoint_url`` on loopback) nothing recovers by itself (moto never
replaces a stopped task, a reboot is a no-op, a promoted replica keeps its source), so the drills
that need real recovery skip with that reason; faults still inject and revert, readiness checks,
dry-run plans and the safety refusals run for real.

It is a failover stack like the sandbox (region failover, failback, ``drdrill exercise``): the
region down is :class:`~drdrill.targets.aws.faults.RegionDown`; the failover's reported events
are AWS's own records (:mod:`~drdrill.targets.aws.failover`); the public name is resolved as
clients do (:mod:`~drdrill.targets.aws.resolver`); the databases are asked themselves when
credentials are configured (:mod:`~drdrill.targets.aws.database`); the runbook scripts are the
team's own (:mod:`~drdrill.targets.aws.scripts`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal
from urllib.parse import urlsplit

from drdrill.config import DrillConfig, EndpointConfig
from drdrill.errors import ConfigError, DrillError
from drdrill.faults.base import Fault, is_destructive
from drdrill.probes.client import ClientSpec
from drdrill.probes.lag import LagReading, ReplicationState
from drdrill.probes.resolve import ResolveError
from drdrill.targets.aws import cloudwatch, ecs, elbv2, lambda_, rds, route53, s3, sns, terraform
from drdrill.targets.aws.database import DatabaseAccess, rds_writable_probe
from drdrill.targets.aws.failover import FailoverRecords, Reported, ScaleRequest
from drdrill.targets.aws.faults import (
    AwsAccess,
    FailHealthCheck,
    RebootDbInstance,
    RegionDown,
    ScaleServiceToZero,
    SetAlarmActions,
    StopEcsTasks,
)
from drdrill.targets.aws.fis import FisExperiment, backed
from drdrill.targets.aws.names import StackNames, UnresolvedName
from drdrill.targets.aws.resolver import (
    DnsLookup,
    PublicNameLookup,
    PublicNameSink,
    RegionAddresses,
)
from drdrill.targets.aws.safety import (
    StopConditions,
    blast_problems,
    blast_radius,
    check_destructive,
    requested_tasks,
)
from drdrill.targets.aws.scripts import KEYS as SCRIPT_KEYS
from drdrill.targets.aws.scripts import run_script, script_environment, script_key
from drdrill.targets.aws.session import AwsClients
from drdrill.targets.aws.settings import AwsSettings, RegionSettings, load_aws_settings
from drdrill.targets.base import FailoverMode, Region
from drdrill.timeline import Timeline, stamp_resolution

#: whether the health alarm starts the failover by itself

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
        self._learn_stack()

    def _learn_stack(self) -> None:
        """What the target holds of its stack, fresh: the stack's own records of a failover,
        drdrill's connections to the databases (``<region>.database``), its own failover
        state, and the names it has looked up."""
        self.records = FailoverRecords(self.aws, self.settings, record_on_dr=self._record_on_dr)
        self.databases = DatabaseAccess(self.aws, self.settings, str(self.config.path))
        self._failover_state = _FailoverState()
        self.__dict__.pop("stack_names", None)

    def forget_stack(self) -> None:
        """Forget what was learnt of the stack (its database connections closed): the stack
        was rebuilt under the same names, as a sandbox's is after a reset."""
        self.databases.close()
        self._learn_stack()

    def terraform_outputs(self) -> dict[str, str]:
        """``terraform output`` of the stack (read once), empty when none is configured."""
        if self._outputs is None:
            source = self.settings.terraform_outputs
            self._outputs = terraform.outputs(source) if source else {}
        return self._outputs

    @cached_property
    def stack_names(self) -> StackNames:
        """What ``targets.aws`` gives by name (zone, target groups, ALBs), looked up once."""
        return StackNames(self.aws, self.settings, str(self.config.path), self.terraform_outputs)

    def alb_dns(self, region: Region) -> str | None:
        """A region's ALB DNS name: ``alb.dns_name``, else terraform's ``<primary|dr>_alb_dns``
        output, else the DNS name of the load balancer ``alb.name`` names (looked up once)."""
        return self.stack_names.alb_dns(region)

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
        real = self.settings.real_recovery
        if real is None:
            real = not self.on_emulator
        return None if real else EMULATOR_LIMITS

    def start(self) -> None:
        """Nothing to start: the stack is AWS's."""

    def stop(self) -> None:
        """Put the health alarm's actions back as they were before this run first set the
        failover mode (a manual drill must not leave the alarm silenced), and close the
        database connections."""
        before, self._failover_state.actions_before = self._failover_state.actions_before, None
        self.databases.close()
        alarm = self._health_alarm()
        if (
            before is not None
            and alarm is not None
            and cloudwatch.actions_enabled(self.aws, *alarm) != before
        ):
            cloudwatch.set_actions_enabled(self.aws, *alarm, before)

    def plan(self) -> list[str]:
        """Every AWS call this run made, or in a dry run would have made (one line each), then
        the scripts a dry run would have run."""
        calls = [call.describe() for call in self.aws.log.calls]
        return calls + list(self._failover_state.scripts_planned)

    # --- safety ------------------------------------------------------------------------------

    def guard(self, fault: Fault, allow_destructive: bool) -> None:
        """Refuse a destructive fault unless account, regions and the flag all allow it and it
        takes down no more than ``blast_radius.max_tasks_percent`` of any service's tasks (a
        region down takes them all). One line names every reason; only reads are sent (the
        account once a run, the running tasks of a service that a fault stops some of), so a
        dry run can say what the real run would refuse."""
        if not is_destructive(fault):
            return
        limit = self.settings.blast_radius.max_tasks_percent
        over = blast_problems(
            fault,
            limit,
            lambda region, cluster, service: len(
                ecs.running_tasks(self.aws, region, cluster, service)
            ),
        )
        check_destructive(
            self.aws,
            self.settings,
            self.config.safety,
            allow_destructive,
            self.settings.regions,
            also=over,
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
            where = region or "primary"
            raise UnresolvedName(
                f"{self.config.path}: targets.aws",
                f"nothing to probe: give route53.record_name, or {where}.alb.dns_name or "
                f"{where}.alb.name",
            )
        base = self._http(host)
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
    ) -> StopEcsTasks | FisExperiment:
        """A fault: stop ``count`` tasks, or ``percent`` of those running (rounded down, at
        least one), or with neither the most the blast radius allows (ECS stops are always
        graceful). The guard refuses it, before any change, if it is over the blast radius."""
        where, cluster, service = self._ecs(region)
        running = len(ecs.running_tasks(self.aws, where, cluster, service))
        if count is None and percent is None:
            wanted = blast_radius(running, None, None, self.settings.blast_radius.max_tasks_percent)
        else:
            # a share asked for overrides the count's default of one task
            wanted = requested_tasks(running, None if percent is not None else count, percent)
        fault = StopEcsTasks(
            self._access(),
            where,
            cluster,
            service,
            ecs.desired_count(self.aws, where, cluster, service),
            count=wanted,  # a share resolved now, whatever rounding it needed
            percent=None,
            clients=self.aws,
        )
        return backed(fault, self.settings, self.aws)  # FIS injects it when configured to

    def reboot_db(
        self, region: Region = "primary", mode: Literal["clean", "crash"] = "clean"
    ) -> RebootDbInstance | FisExperiment:
        """A fault: reboot the region's database (``crash`` asks for a Multi-AZ failover)."""
        r = self.region(region)
        fault = RebootDbInstance(
            self._access(),
            r.region,
            r.rds.instance_id,
            force_failover=mode == "crash",
            clients=self.aws,
        )
        return backed(fault, self.settings, self.aws)

    def region_down(
        self, region: Region = "primary", mode: Literal["kill", "freeze"] = "kill"
    ) -> RegionDown | FisExperiment:
        """A fault: the region down as far as AWS lets a drill take it down: its side of the
        failover record failed (its health check inverted) and its service scaled to 0 with its
        tasks stopped. AWS has nothing to freeze: ``freeze`` is ``kill``."""
        where, cluster, service = self._ecs(region)
        check_id = self._record_health_check(region)
        check = None
        if check_id is not None:
            inverted = route53.health_check_inverted(self.aws, check_id)
            check = FailHealthCheck(self._access(), check_id, inverted, clients=self.aws)
        scale = ScaleServiceToZero(
            self._access(),
            where,
            cluster,
            service,
            ecs.desired_count(self.aws, where, cluster, service),
            clients=self.aws,
        )
        running = len(ecs.running_tasks(self.aws, where, cluster, service))
        return backed(RegionDown(where, scale, check, running), self.settings, self.aws)

    def _record_health_check(self, region: Region) -> str | None:
        """The health check of the region's side of the failover record (PRIMARY for the
        primary, SECONDARY for DR); None without a record or a check."""
        r53 = self.settings.route53
        zone_id = self.stack_names.zone_id()
        if not (zone_id and r53.record_name):
            return None
        role = "PRIMARY" if region == "primary" else "SECONDARY"
        for record in route53.failover_records(self.aws, zone_id, r53.record_name):
            if record.role == role and record.health_check_id:
                return record.health_check_id
        return None

    # --- actions -----------------------------------------------------------------------------

    def scale(self, region: Region, desired: int) -> None:
        """Change a service's desired count (noted, with when it was sent, as a scale-up the
        failover drills read when it is DR's)."""
        where, cluster, service = self._ecs(region)
        sent = datetime.now(UTC)
        ecs.update_desired_count(self.aws, where, cluster, service, desired)
        if not self.aws.dry_run:
            answered = datetime.now(UTC)
            request = ScaleRequest(where, cluster, service, desired, sent, answered)
            self.records.note_scale(request)

    def invoke_dr(self, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Invoke the DR automation Lambda with the runbook's payload (the invocation, and the
        record changes its answer names, are noted for the failover drills)."""
        found = self.records.dr_function()
        if found is None:
            raise DrillError("aws target: no lambda_function configured")
        region, function = found
        body = dict(payload or {"trigger": "manual", "reason": "disaster_recovery"})
        done = lambda_.invoke_function(self.aws, region, function, body)
        if not self.aws.dry_run:
            self.records.note_invocation(done)  # invoked, even when the function failed
        if done.error is not None:
            raise DrillError(done.error)
        return done.answer or {}

    # --- observations ------------------------------------------------------------------------

    def desired(self, region: Region) -> int:
        """A service's desired count."""
        return ecs.desired_count(self.aws, *self._ecs(region))

    def running_tasks(self, region: Region) -> int:
        """A service's running tasks."""
        return len(ecs.running_tasks(self.aws, *self._ecs(region)))

    def healthy_targets(self, region: Region) -> int:
        """Healthy targets of the region's target group."""
        arn = self.stack_names.target_group_arn(region)
        if arn is None:
            raise UnresolvedName(
                f"{self.config.path}: targets.aws.{region}.alb",
                "give target_group_name or target_group_arn",
            )
        return elbv2.healthy_count(self.aws, self.region(region).region, arn)

    def alarm_state(self) -> str:
        """The primary's health alarm state."""
        r = self.settings.primary
        if not r.alarms.health:
            raise DrillError("aws target: no health alarm configured")
        return cloudwatch.alarm_state(self.aws, r.region, r.alarms.health)

    def alarm_history(self) -> list[dict[str, Any]]:
        """The health alarm's state changes as CloudWatch reports them (reported events), each
        with how finely CloudWatch stamped it (a millisecond; a second without a fraction)."""
        r = self.settings.primary
        if not r.alarms.health:
            raise DrillError("aws target: no health alarm configured")
        return [
            {
                "state": c.new,
                "utc": c.utc.isoformat(),
                "reason": c.reason,
                "resolution_s": stamp_resolution(c.utc),
            }
            for c in cloudwatch.alarm_history(self.aws, r.region, r.alarms.health)
        ]

    def dns_answer(
        self, nameservers: list[str] | None = None, port: int | None = None
    ) -> str | None:
        """What resolvers answer for the public record now, asked afresh: the name servers
        given, else ``targets.aws.dns``'s, else the system resolver (the runbook's DNS Update
        is over when both say DR)."""
        name = self.settings.route53.record_name
        if not name:
            raise DrillError("aws target: no route53 record_name configured")
        dns = self.settings.dns
        servers = nameservers if nameservers is not None else dns.name_servers or None
        answers = route53.resolve(
            name.rstrip("."), servers, dns.port if port is None else port, lifetime_s=dns.timeout
        )
        return answers[0] if answers else None

    def alarm_notifies(self) -> bool:
        """The health alarm has an SNS action with at least one subscriber (on the configured
        ``sns_topic_arn`` when there is one: the topic the on-call hang off)."""
        return self._alarm_notifies(self.settings.primary)

    def dr_alarm_notifies(self) -> bool | None:
        """The DR region's health alarm (``dr.alarms.health``), the one that watches the site
        once it is served from DR, notifies somebody (on ``dr.sns_topic_arn`` when set); None
        when no DR health alarm is configured."""
        r = self.settings.dr
        if not r.alarms.health:
            return None
        return self._alarm_notifies(r)

    def _alarm_notifies(self, r: RegionSettings) -> bool:
        if not r.alarms.health:
            return False
        topics = [
            a
            for a in cloudwatch.alarm_actions(self.aws, r.region, r.alarms.health)
            if a.startswith("arn:aws:sns:") and r.sns_topic_arn in (None, a)
        ]
        return any(sns.subscriptions(self.aws, t.split(":")[3], t) for t in topics)

    def db_writable(self, region: Region) -> bool:
        """The region's database is available and not a replica (RDS's word) and, when
        ``<region>.database`` is configured, says itself that it takes writes (``read_only``
        off, asked on one connection kept across calls)."""
        r = self.region(region)
        if not rds.is_writable(self.aws, r.region, r.rds.instance_id):
            return False
        return not self.databases.configured(region) or self.databases.takes_writes(region)

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

    def steady_state_problems(self, rpo_s: float | None) -> list[str]:
        """What keeps the stack from its steady state before a fault (``SteadyStateTarget``),
        asked with the readiness suite's own checks; empty when all hold:

        - replication: :meth:`replication_running` (RDS's ``StatusInfos``, as it is now);
        - while it runs, the lag: CloudWatch's latest ``ReplicaLag`` minute, whose largest
          value must be a lag (no datapoint, or -1 all through the minute: a problem) and not
          surely over ``rpo_s``. Unlike the readiness check, a -1 earlier in a minute whose
          replication RDS says runs now is no problem: a reboot drill leaves one in the minute
          it rebooted, which would hold the next drill up to a minute for nothing;
        - the health alarm (``primary.alarms.health``) OK, when one is configured;
        - the public name answering the primary, where the target can tell: the name
          (``route53.record_name``) resolves, asked afresh, to an address of one region's load
          balancer (a name that does not resolve, as in an emulator, tells nothing here; the
          probes see an outage of it).
        """
        problems = []
        replication = self.replication_running()
        if not replication:
            problems.append(replication.reason or "the DR database does not replicate")
        else:
            dr = self.settings.dr
            minutes = self.lag_window_minutes
            point = rds.replica_lag(self.aws, dr.region, dr.rds.instance_id, minutes=minutes)
            if point is None or point.maximum < 0:
                # the readiness reading names both: no datapoint, or -1 (not active)
                reason = replica_lag_reading(point, dr.rds.instance_id, minutes).reason
                problems.append(reason or "the DR replica's lag is not known")
            elif rpo_s is not None and point.maximum - 1.0 > rpo_s:
                problems.append(
                    f"the DR replica's ReplicaLag {point.maximum:g} s (± 1 s) is over the RPO "
                    f"of {rpo_s:g} s"
                )
        alarm = self._health_alarm()
        if alarm is not None:
            state = self.alarm_state()
            if state != "OK":
                problems.append(f"the health alarm '{alarm[1]}' is {state}, not OK")
        region = self._public_name_region()
        if region is not None and region != "primary":
            problems.append(f"the public name {self._public_name()} answers the {region} region")
        return problems

    def _public_name_region(self) -> Region | None:
        """The region whose load balancer the public name answers now (asked afresh); None
        when the target cannot tell: no record name, no answer, an address of neither."""
        if not self.settings.route53.record_name:
            return None
        try:
            answer = self.dns_answer()
        except ResolveError:
            return None
        return self.region_of(answer)

    def _record_on_dr(self) -> bool:
        """Route53's PRIMARY failover record is an alias of the DR load balancer (what the
        runbook's failover makes of it), as its record set says now."""
        r53 = self.settings.route53
        zone_id = self.stack_names.zone_id()
        dr_dns = self.alb_dns("dr")
        if not (zone_id and r53.record_name and dr_dns):
            return False
        want = _alias_name(dr_dns)
        return any(
            rec.role == "PRIMARY"
            and rec.alias_target is not None
            and _alias_name(rec.alias_target) == want
            for rec in route53.failover_records(self.aws, zone_id, r53.record_name)
        )

    def primary_record_healthy(self) -> bool:
        """The failover record's PRIMARY has a health check that says HEALTHY."""
        r53 = self.settings.route53
        zone_id = self.stack_names.zone_id()  # route53.zone_id, or the zone zone_name names
        if not (zone_id and r53.record_name):
            return False
        records = route53.failover_records(self.aws, zone_id, r53.record_name)
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

    # --- static assets drill -----------------------------------------------------------------

    def static_assets_buckets(self) -> dict[Region, str]:
        """Each region's bucket (``targets.aws.<region>.s3.bucket``)."""
        p, d = self.settings.primary.s3.bucket, self.settings.dr.s3.bucket
        if not (p and d):
            raise DrillError("aws target: no s3 bucket configured for both primary and dr")
        return {"primary": p, "dr": d}

    def replication_latency(self, start: datetime, end: datetime) -> float | None:
        """S3's ``ReplicationLatency`` of the primary bucket, the largest from ``start`` to
        ``end`` (CloudWatch's minutes); None without a datapoint (replication metrics off, or
        not yet published)."""
        buckets = self.static_assets_buckets()
        region = self.settings.primary.region
        return s3.replication_latency(self.aws, region, buckets["primary"], start, end)

    def static_marker_root(self) -> str:
        """The shortest key prefix an enabled rule replicates into the DR bucket by itself."""
        buckets = self.static_assets_buckets()
        region = self.settings.primary.region
        prefixes = s3.replicated_prefixes(self.aws, region, buckets["primary"], buckets["dr"])
        if not prefixes:
            raise DrillError(
                f"s3 bucket '{buckets['primary']}' has no enabled replication rule into "
                f"'{buckets['dr']}' that selects objects by key prefix alone"
            )
        return prefixes[0]

    def put_static_marker(self, key: str, body: bytes) -> None:
        """PutObject into the primary bucket."""
        bucket = self.static_assets_buckets()["primary"]
        s3.put_object(self.aws, self.settings.primary.region, bucket, key, body)

    def static_marker(self, region: Region, key: str) -> s3.ObjectHead | None:
        """HeadObject in a region's bucket (None: no such key)."""
        bucket = self.static_assets_buckets()[region]
        return s3.head_object(self.aws, self.region(region).region, bucket, key)

    def delete_static_markers(self, prefix: str) -> dict[Region, int]:
        """Every version under ``prefix`` deleted, the primary bucket's first (so that nothing
        is left there to replicate again), then the DR bucket's."""
        buckets = self.static_assets_buckets()
        keys: tuple[Region, Region] = ("primary", "dr")
        return {
            key: s3.delete_prefix(self.aws, self.region(key).region, buckets[key], prefix)
            for key in keys
        }

    def describe(self) -> Mapping[str, Any]:
        """Kind, regions, endpoint."""
        return {
            "name": self.name,
            "kind": "aws",
            "endpoint_url": self.settings.endpoint_url,
            "emulator": self.on_emulator,
            "regions": {"primary": self.settings.primary.region, "dr": self.settings.dr.region},
        }

    # --- region failover: FailoverStack, ScriptedStack, WriteTarget, ModeAware ---------------

    #: the least time between two RDS polls of a writable probe without database credentials
    #: (a drill polls every 50 ms; RDS's API would throttle that)
    rds_poll_interval_s = 1.0

    def dns(self) -> DnsLookup:
        """The resolver of the load balancers' names (``targets.aws.dns``), each answer kept
        for its TTL."""
        state = self._failover_state
        if state.dns is None:
            state.dns = self._new_lookup()
        return state.dns

    def _new_lookup(self) -> DnsLookup:
        d = self.settings.dns
        return DnsLookup(d.name_servers, d.port, timeout_s=d.timeout)

    def _public_name(self) -> str:
        name = self.settings.route53.record_name
        if not name:
            raise ConfigError(
                f"{self.config.path}: targets.aws.route53.record_name",
                "required: the public name clients resolve",
            )
        return name.rstrip(".")

    def region_of(self, address: str | None) -> Region | None:
        """The region whose ALB DNS name resolves to ``address`` (each name kept for its TTL)."""
        state = self._failover_state
        if state.regions is None:
            names: dict[Region, str | None] = {
                "primary": self.alb_dns("primary"),
                "dr": self.alb_dns("dr"),
            }
            state.regions = RegionAddresses(self.dns(), names)
        return state.regions.region_of(address)

    def client_resolver(self, role: str = "drill") -> PublicNameLookup:
        """A resolver of the public name as one client has it: a cache of its own, each answer
        kept for its TTL (``role`` is a label: every client asks from this host)."""
        return PublicNameLookup(self._public_name(), self._new_lookup(), role)

    def scale_to(self, region: Region) -> int:
        """How many tasks the DR automation scales a region's service to:
        ``<region>.ecs.scale_to``, else the primary service's desired count when first asked
        (remembered: a region down sets it to 0)."""
        configured = self.region(region).ecs.scale_to
        if configured is not None:
            return configured
        state = self._failover_state
        if state.primary_desired is None:
            desired = self.desired("primary")
            if desired < 1:
                raise ConfigError(
                    f"{self.config.path}: targets.aws.{region}.ecs.scale_to",
                    "required while the primary service wants 0 tasks (its desired count is "
                    "the default)",
                )
            state.primary_desired = desired
        return state.primary_desired

    def writable_probe(self, region: Region) -> Callable[[], bool]:
        """A cheap repeated poll of whether a region's database takes writes: its own
        ``read_only`` on one kept connection when ``<region>.database`` is configured, else
        RDS's word, asked at most every :attr:`rds_poll_interval_s`."""
        if self.databases.configured(region):
            return self.databases.writable_probe(region)
        r = self.region(region)
        return rds_writable_probe(
            lambda: rds.is_writable(self.aws, r.region, r.rds.instance_id),
            self.rds_poll_interval_s,
        )

    def _health_alarm(self) -> tuple[str, str] | None:
        r = self.settings.primary
        return (r.region, r.alarms.health) if r.alarms.health else None

    def failover_mode(self) -> FailoverMode | None:
        """``automated`` while the health alarm's actions are enabled (its SNS notification
        invokes the DR automation), ``manual`` while they are disabled; None without an alarm."""
        alarm = self._health_alarm()
        if alarm is None:
            return None
        return "automated" if cloudwatch.actions_enabled(self.aws, *alarm) else "manual"

    def mode_change(self, mode: FailoverMode) -> SetAlarmActions:
        """Setting the mode as a change a drill journals (``inject.change``): the health
        alarm's actions put back at the drill's end, or by ``drdrill recover`` after a kill."""
        alarm = self._health_alarm()
        if alarm is None:
            raise ConfigError(
                f"{self.config.path}: targets.aws.primary.alarms.health",
                "required to set the failover mode (the alarm whose actions start it)",
            )
        before = cloudwatch.actions_enabled(self.aws, *alarm)
        return SetAlarmActions(
            self._access(), *alarm, mode == "automated", before, clients=self.aws
        )

    def set_mode(self, mode: FailoverMode) -> None:
        """Enable the health alarm's actions (automated) or disable them (manual); what they
        were before is put back at :meth:`stop`."""
        alarm = self._health_alarm()
        if alarm is None:
            raise ConfigError(
                f"{self.config.path}: targets.aws.primary.alarms.health",
                "required to set the failover mode (the alarm whose actions start it)",
            )
        state = self._failover_state
        if state.actions_before is None:
            state.actions_before = cloudwatch.actions_enabled(self.aws, *alarm)
        cloudwatch.set_actions_enabled(self.aws, *alarm, mode == "automated")

    def reported_since(self, mono: float, record: str) -> list[Reported]:
        """AWS's own records named ``record`` since the monotonic time ``mono``, oldest first:
        ``automation_invoked``, ``rds_promotion_requested``, ``ecs_scale_requested``,
        ``dns_switch_requested`` (see :mod:`drdrill.targets.aws.failover`)."""
        return self.records.since(mono, record)

    def platform_records(self, mono: float, record: str) -> list[Reported]:
        """What AWS recorded of the primary region since ``mono``, oldest first: ECS's
        ``startedAt``/``stoppedAt`` of the service's tasks (``task_started``, ``task_stopped``),
        RDS's restart events of the primary (``db_restarted``)."""
        return self.records.since(mono, record)

    def script_problem(self, name: str) -> str | None:
        """``targets.aws.scripts.<key> not configured`` when the team's script for ``name`` is
        not set (or ``name`` is no runbook script), else None."""
        key = script_key(name)
        if key not in SCRIPT_KEYS:
            return f"no runbook script '{name}' (targets.aws.scripts has: {', '.join(SCRIPT_KEYS)})"
        if getattr(self.settings.scripts, key) is None:
            return f"{self.config.path}: targets.aws.scripts.{key} not configured (runs {name})"
        return None

    def run_script(self, name: str, *args: str, timeout_s: float = 180.0) -> str:
        """Run the team's own runbook script ``name`` (``failover.sh`` is
        ``targets.aws.scripts.failover``) with ``args``; its output. In a dry run it is only
        planned."""
        key = script_key(name)
        if key not in SCRIPT_KEYS:
            raise DrillError(
                f"aws target: no runbook script '{name}' (targets.aws.scripts has: "
                f"{', '.join(SCRIPT_KEYS)})"
            )
        command: str | None = getattr(self.settings.scripts, key)
        if command is None:
            raise ConfigError(
                f"{self.config.path}: targets.aws.scripts.{key}",
                f"not configured (the command that runs {name})",
            )
        if self.aws.dry_run:
            self._failover_state.scripts_planned.append(
                f"would run targets.aws.scripts.{key}: {command} {' '.join(args)}".rstrip()
            )
            return ""
        output = run_script(
            key,
            command,
            args,
            folder=self.config.resolve(self.config.base_dir),
            env=script_environment(self.settings, self.aws),
            timeout_s=timeout_s,
        )
        self.records.note_output(output, f"targets.aws.scripts.{key}")
        return output

    def write_url(self) -> str:
        """Where RPO markers go: ``writer.url``, else ``targets.aws.write_url``, else the app's
        write endpoint by the public name."""
        return (
            self.config.writer.url
            or self.settings.write_url
            or f"{self._http(self._public_name())}/api.php?action=write"
        )

    def _http(self, host: str) -> str:
        """``http://host``, with ``targets.aws.http_port`` when it is not 80."""
        port = self.settings.http_port
        return f"http://{host}" if port == 80 else f"http://{host}:{port}"

    def http_client_spec(self) -> ClientSpec:
        """How the probes' process reaches the stack: through ``targets.aws.dns``'s name
        servers when given (honouring each answer's TTL), else the system resolver; a new
        connection a sample, so that a probe follows the DNS failover as a new client would."""
        servers = self.settings.dns.name_servers
        resolver = (servers[0], self.settings.dns.port) if servers else None
        return ClientSpec(resolver=resolver, fresh_connections=True)

    def write_sink(self, timeout_s: float) -> PublicNameSink:
        """RPO markers through the write endpoint by its name, resolved like a client does
        (each answer kept for its TTL), so the writes follow a DNS failover as clients do."""
        return PublicNameSink(self.write_url(), self._new_lookup(), timeout_s)

    def writer_region(self) -> Region:
        """The region whose database takes the app's writes now: the one RDS says is
        writable; when both are (the old primary back after a failover), the one the public
        name answers."""
        writable = [
            key
            for key in _REGIONS
            if rds.is_writable(self.aws, self.region(key).region, self.region(key).rds.instance_id)
        ]
        if len(writable) == 1:
            return writable[0]
        if not writable:
            raise DrillError("aws target: neither region's database takes writes (rds)")
        return self.region_of(self.dns_answer()) or "primary"

    def present_markers(self, run_id: str, region: Region | None = None) -> set[int]:
        """The RPO marker ids of ``run_id`` in the database that takes writes now (or in
        ``region``'s), read through ``<region>.database``."""
        return self.databases.markers(region or self.writer_region(), run_id)


_REGIONS: tuple[Region, Region] = ("primary", "dr")


@dataclass
class _FailoverState:
    """What the target learns during a run: caches and what it must put back."""

    dns: DnsLookup | None = None
    regions: RegionAddresses | None = None
    #: the primary service's desired count when ``scale_to`` was first asked
    primary_desired: int | None = None
    #: the health alarm's ActionsEnabled before the run's first ``set_mode``
    actions_before: bool | None = None
    #: the scripts a dry run would have run
    scripts_planned: list[str] = field(default_factory=list)


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
    # whole seconds, ± 1 s; a lag is never below zero (a maximum of 0 is [0, 1] s, not ± 1)
    low, high = max(0.0, point.maximum - 1.0), point.maximum + 1.0
    return LagReading.measured((low + high) / 2, (high - low) / 2)


def _alias_name(dns: str) -> str:
    """An ALB's DNS name as alias targets spell it in any case, with or without the trailing
    dot and the ``dualstack.`` prefix Route53 adds."""
    return dns.strip().rstrip(".").lower().removeprefix("dualstack.")
