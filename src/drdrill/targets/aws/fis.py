"""AWS Fault Injection Service as an injection backend: FIS injects, drdrill measures.

drdrill's AWS faults become FIS experiment templates (:class:`TemplateBuilder`):

- :class:`~drdrill.targets.aws.faults.StopEcsTasks` -> ``aws:ecs:stop-task`` on the service's
  tasks (target parameters ``cluster`` and ``service``), ``COUNT(n)`` or ``PERCENT(n)``;
- :class:`~drdrill.targets.aws.faults.RebootDbInstance` -> ``aws:rds:reboot-db-instances``
  (``forceFailover`` for a crash);
- the region down (:class:`~drdrill.targets.aws.faults.ScaleServiceToZero`, alone or as the
  service part of a composite region down) ->
  ``aws:ecs:stop-task`` on every task of the service plus ``aws:network:disrupt-connectivity``
  on its subnets (and ``targets.aws.fis.subnets``) for ``fis.disrupt_duration``.

Every template carries the config's guard alarms of its region as ``aws:cloudwatch:alarm``
stop conditions (never a health alarm: its ALARM is what a drill waits for), the role of
``targets.aws.fis.role_arn`` and tags naming drdrill, the drill fault and the run.

:class:`FisExperiment` is the fault that runs one: inject creates the template and starts the
experiment, revert stops the experiment and deletes the template drdrill created.
:func:`backed` wraps a target's fault in one when ``targets.aws.fault_backend`` is ``fis``;
:func:`export_templates` gives the templates ``drdrill fis export`` writes.

Emulator limits: moto (5.2) stores templates and experiments and moves an experiment's state
on each ``GetExperiment``, but runs no action (no task stops, no network is cut).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Final, Self, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from drdrill.errors import ConfigError, DrillError, FaultError, SafetyError
from drdrill.faults.base import Fault, RevertResult, wait_until
from drdrill.targets.aws.faults import (
    AwsAccess,
    RebootDbInstance,
    ScaleServiceToZero,
    StopEcsTasks,
)
from drdrill.targets.aws.safety import CompositeFault, StopConditionTriggered
from drdrill.targets.aws.session import AwsClients
from drdrill.targets.aws.settings import AwsSettings, GuardAlarm

#: tag naming the drill fault a template or experiment stands for ("stop-one-task")
TAG_FAULT: Final = "drdrill:fault"
#: tag naming the drdrill run that started the experiment
TAG_RUN: Final = "drdrill:run"
#: tag naming one injection: it finds the template and the experiment again from the journal
TAG_TOKEN: Final = "drdrill:token"
#: the experiment states that end it (FIS's ExperimentStatus)
TERMINAL: Final = frozenset({"completed", "stopped", "failed", "cancelled"})
#: action states that mean the fault is in (or was, for an action that ends by itself)
ACTING: Final = frozenset({"running", "completed"})
#: the drill faults the suites use, by the names ``drdrill fis export`` writes them under
DRILL_FAULTS: Final = (
    "stop-one-task",
    "stop-half-the-tasks",
    "reboot-clean",
    "reboot-crash",
    "region-down",
)
#: how often an experiment's state is read while waiting for it
POLL_INTERVAL_S: Final = 0.5
#: parts of a composite region down that FIS leaves to the platform: Route53 fails the
#: record over on its own health check once no task answers behind the load balancer
LEFT_TO_THE_PLATFORM: Final = frozenset({"aws.route53.fail_health_check"})

#: the faults FIS has actions for
FisSource = StopEcsTasks | ScaleServiceToZero | RebootDbInstance

F = TypeVar("F", bound=Fault)


@dataclass(frozen=True)
class FisTemplate:
    """One experiment template: CreateExperimentTemplate's input, without its client token
    (what ``aws fis create-experiment-template --cli-input-json`` reads), and its region."""

    name: str
    region: str
    body: Mapping[str, Any]

    def to_json(self) -> str:
        """The template as a JSON document, for a file."""
        return json.dumps(self.body, indent=2) + "\n"


def iso_duration(seconds: float) -> str:
    """Seconds as an ISO 8601 duration, as FIS parameters take them: ``PT30M``, ``PT90S``."""
    whole = int(seconds)
    if whole % 3600 == 0:
        return f"PT{whole // 3600}H"
    if whole % 60 == 0:
        return f"PT{whole // 60}M"
    return f"PT{whole}S"


def selection_mode(count: int | None, percent: float | None) -> str:
    """FIS's selection mode for a task count or share: ``COUNT(1)``, ``PERCENT(50)``, ``ALL``."""
    if count is not None and percent is not None:
        raise FaultError("give a task count or a percent, not both")
    if count is not None:
        if count < 1:
            raise FaultError(f"count of tasks to stop must be at least 1, not {count}")
        return f"COUNT({count})"
    if percent is None:
        return "ALL"
    # FIS takes a whole percentage (and rounds the tasks down; the api backend rounds up)
    if percent != int(percent) or not 1 <= percent <= 100:
        raise FaultError(f"FIS takes a whole percent of tasks from 1 to 100, not {percent:g}")
    return f"PERCENT({int(percent)})"


def tasks_name(count: int | None, percent: float | None) -> str:
    """The drill fault's name for stopping tasks: ``stop-one-task``, ``stop-half-the-tasks``."""
    if percent is not None:
        return "stop-half-the-tasks" if percent == 50 else f"stop-{percent:g}-percent-of-tasks"
    if count is None:
        return "stop-all-tasks"
    return "stop-one-task" if count == 1 else f"stop-{count}-tasks"


def _aws_error(what: str, exc: ClientError | BotoCoreError) -> DrillError:
    """An AWS error as a one-line DrillError naming what was asked."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return DrillError(f"{what}: {error.get('Code', 'error')}: {error.get('Message', exc)}")
    return DrillError(f"{what}: {' '.join(str(exc).split())}")


def fis_source(fault: Fault) -> FisSource:
    """The fault whose FIS actions inject ``fault``: itself, or the service part of a composite
    region down; FaultError for a fault FIS has no action for."""
    if isinstance(fault, StopEcsTasks | ScaleServiceToZero | RebootDbInstance):
        return fault
    if isinstance(fault, CompositeFault):
        parts = list(fault.parts)
        scaled = [p for p in parts if isinstance(p, ScaleServiceToZero)]
        others = [p for p in parts if not isinstance(p, ScaleServiceToZero)]
        unknown = [p for p in others if p.kind not in LEFT_TO_THE_PLATFORM]
        if len(scaled) == 1 and not unknown:
            return scaled[0]
    raise FaultError(f"{fault.describe()}: no FIS action for a '{fault.kind}' fault")


def _not_found(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) == "ResourceNotFoundException"


class TemplateBuilder:
    """Builds FIS templates for one stack's settings, reading what they need from AWS.

    Reads: the guard alarms' ARNs (CloudWatch DescribeAlarms), a database's ARN and Multi-AZ
    (RDS DescribeDBInstances), a service's subnets (ECS DescribeServices). ``source`` names the
    config file in errors (``drdrill.yaml: targets.aws.fis.role_arn: ...``).
    """

    def __init__(
        self,
        settings: AwsSettings,
        aws: AwsClients,
        *,
        run_id: str | None = None,
        source: str = "drdrill.yaml",
    ) -> None:
        self.settings = settings
        self.aws = aws
        self.run_id = run_id
        self.source = source
        #: what a template will do that the drill would refuse (export prints these)
        self.warnings: list[str] = []
        self._alarm_arns: dict[GuardAlarm, str] | None = None

    # --- what every template shares ------------------------------------------------------------

    def _key(self, key: str) -> str:
        return f"{self.source}: targets.aws.{key}"

    def role_arn(self) -> str:
        """The role FIS runs experiments as; ConfigError naming the key when none is set."""
        role = self.settings.fis.role_arn
        if role is None:
            raise ConfigError(self._key("fis.role_arn"), "required: the IAM role FIS assumes")
        return role

    def _guards(self) -> Iterator[tuple[str, GuardAlarm]]:
        """Every guard alarm with the config key that names it."""
        s = self.settings
        for key, region in (("primary", s.primary), ("dr", s.dr)):
            for i, name in enumerate(region.alarms.guards):
                yield f"{key}.alarms.guards.{i}", GuardAlarm(region=region.region, name=name)
        for i, entry in enumerate(s.stop_conditions.guard_alarms):
            if entry.startswith("arn:"):
                parts = entry.split(":", 6)
                guard = GuardAlarm(region=parts[3], name=parts[6])
            else:
                guard = GuardAlarm(region=s.primary.region, name=entry)
            yield f"stop_conditions.guard_alarms.{i}", guard

    def alarm_arns(self) -> dict[GuardAlarm, str]:
        """Every guard alarm's ARN (read once); ConfigError naming the key of one missing."""
        if self._alarm_arns is not None:
            return self._alarm_arns
        guards = list(self._guards())
        found: dict[GuardAlarm, str] = {}
        for region in dict.fromkeys(g.region for _, g in guards):
            names = sorted({g.name for _, g in guards if g.region == region})
            client = self.aws.client("cloudwatch", region)
            # DescribeAlarms takes at most 100 names a call
            for start in range(0, len(names), 100):
                try:
                    answer = client.describe_alarms(
                        AlarmNames=names[start : start + 100],
                        AlarmTypes=["MetricAlarm", "CompositeAlarm"],
                    )
                except (ClientError, BotoCoreError) as exc:
                    raise _aws_error(f"cloudwatch alarms in {region}", exc) from exc
                for alarm in [*answer.get("MetricAlarms", []), *answer.get("CompositeAlarms", [])]:
                    found[GuardAlarm(region=region, name=str(alarm["AlarmName"]))] = str(
                        alarm["AlarmArn"]
                    )
        for key, guard in guards:
            if guard not in found:
                raise ConfigError(
                    self._key(key), f"guard alarm '{guard.name}' not found in {guard.region}"
                )
        self._alarm_arns = found
        return found

    def stop_conditions(self, region: str) -> list[dict[str, str]]:
        """The guard alarms of ``region`` as FIS stop conditions (``none`` when there is none).

        A health alarm is left out even when listed as a guard: its ALARM is the outage the
        drill measures, and FIS would stop the experiment the moment it worked. FIS watches
        alarms of the experiment's region only; drdrill's own stop conditions watch the rest.
        """
        health = {
            GuardAlarm(region=r.region, name=r.alarms.health)
            for r in (self.settings.primary, self.settings.dr)
            if r.alarms.health
        }
        arns = [
            arn
            for guard, arn in self.alarm_arns().items()
            if guard.region == region and guard not in health
        ]
        if not arns:
            return [{"source": "none"}]
        return [{"source": "aws:cloudwatch:alarm", "value": arn} for arn in dict.fromkeys(arns)]

    def _name(self, base: str, region: str) -> str:
        # the suites drill the primary; a fault elsewhere says where in its name
        return base if region == self.settings.primary.region else f"{base}-{region}"

    def _template(
        self,
        name: str,
        region: str,
        what: str,
        targets: dict[str, Any],
        actions: dict[str, Any],
    ) -> FisTemplate:
        tags = {"Name": f"drdrill-{name}", TAG_FAULT: name}
        if self.run_id is not None:
            tags[TAG_RUN] = self.run_id
        body: dict[str, Any] = {
            "description": f"drdrill: {what}"[:512],
            "targets": targets,
            "actions": actions,
            "stopConditions": self.stop_conditions(region),
            "roleArn": self.role_arn(),
            "tags": tags,
        }
        return FisTemplate(name=name, region=region, body=body)

    @staticmethod
    def _tasks_target(cluster: str, service: str, mode: str) -> dict[str, Any]:
        return {
            "resourceType": "aws:ecs:task",
            "parameters": {"cluster": cluster, "service": service},
            "selectionMode": mode,
        }

    # --- the three faults ----------------------------------------------------------------------

    def stop_tasks(
        self,
        region: str,
        cluster: str,
        service: str,
        count: int | None = None,
        percent: float | None = None,
    ) -> FisTemplate:
        """``aws:ecs:stop-task`` on ``count`` (or ``percent``) of the service's tasks."""
        mode = selection_mode(count, percent)
        share = {"COUNT(1)": "1 task", "ALL": "every task"}.get(mode, mode.lower())
        return self._template(
            self._name(tasks_name(count, percent), region),
            region,
            f"stop {share} of ecs service '{service}' (cluster '{cluster}') in {region}",
            {"service-tasks": self._tasks_target(cluster, service, mode)},
            {
                "stop-tasks": {
                    "actionId": "aws:ecs:stop-task",
                    "description": "stop the service's tasks; ECS replaces them",
                    "targets": {"Tasks": "service-tasks"},
                }
            },
        )

    def reboot(
        self, region: str, instance_id: str, force_failover: bool, *, require_multi_az: bool
    ) -> FisTemplate:
        """``aws:rds:reboot-db-instances`` on the instance (``forceFailover`` for a crash).

        A failover reboot of a single-AZ instance is refused (SafetyError, as the api backend
        refuses it) with ``require_multi_az``; otherwise it is noted in :attr:`warnings`.
        """
        from drdrill.targets.aws import rds

        instance = rds.describe_instance(self.aws, region, instance_id)
        if instance.arn is None:
            raise DrillError(f"rds instance '{instance_id}' ({region}) reports no arn")
        if force_failover and not instance.multi_az:
            message = f"rds instance '{instance_id}' is not multi-az: ForceFailover refused"
            if require_multi_az:
                raise SafetyError(message)
            self.warnings.append(f"{message} (FIS will fail the experiment)")
        how = "crash" if force_failover else "clean"
        return self._template(
            self._name(f"reboot-{how}", region),
            region,
            f"reboot rds instance '{instance_id}' in {region}"
            + (" with failover" if force_failover else ""),
            {
                "database": {
                    "resourceType": "aws:rds:db",
                    "resourceArns": [instance.arn],
                    "selectionMode": "ALL",
                }
            },
            {
                "reboot": {
                    "actionId": "aws:rds:reboot-db-instances",
                    "description": "reboot the database with a failover"
                    if force_failover
                    else "reboot the database",
                    "parameters": {"forceFailover": "true" if force_failover else "false"},
                    "targets": {"DBInstances": "database"},
                }
            },
        )

    def subnet_arns(self, region: str, cluster: str, service: str) -> list[str]:
        """The ARNs of the service's awsvpc subnets and of ``fis.subnets``."""
        try:
            answer = self.aws.client("ecs", region).describe_services(
                cluster=cluster, services=[service]
            )
        except (ClientError, BotoCoreError) as exc:
            raise _aws_error(
                f"ecs service '{service}' (cluster '{cluster}', {region})", exc
            ) from exc
        found = answer.get("services", [])
        if not found:
            raise DrillError(f"ecs service '{service}' (cluster '{cluster}', {region}) not found")
        described = found[0]
        network = described.get("networkConfiguration", {}).get("awsvpcConfiguration", {})
        subnets = list(dict.fromkeys([*network.get("subnets", []), *self.settings.fis.subnets]))
        if not subnets:
            raise ConfigError(
                self._key("fis.subnets"),
                f"ecs service '{service}' in {region} has no awsvpc subnets: name the subnets "
                "a region down cuts off",
            )
        # arn:<partition>:ecs:<region>:<account>:service/...: the subnets' account and partition
        arn = str(described["serviceArn"]).split(":")
        partition, account = arn[1], arn[4]
        return [f"arn:{partition}:ec2:{region}:{account}:subnet/{s}" for s in subnets]

    def region_down(self, region: str, cluster: str, service: str) -> FisTemplate:
        """Every task of the service stopped and its subnets cut off for ``disrupt_duration``."""
        fis = self.settings.fis
        duration = iso_duration(fis.disrupt_duration)
        return self._template(
            self._name("region-down", region),
            region,
            f"region down: stop every task of ecs service '{service}' (cluster '{cluster}') "
            f"and cut its subnets off ({fis.disrupt_scope}, {duration}) in {region}",
            {
                "service-tasks": self._tasks_target(cluster, service, "ALL"),
                "region-subnets": {
                    "resourceType": "aws:ec2:subnet",
                    "resourceArns": self.subnet_arns(region, cluster, service),
                    "selectionMode": "ALL",
                },
            },
            {
                "stop-tasks": {
                    "actionId": "aws:ecs:stop-task",
                    "description": "stop every task of the service",
                    "targets": {"Tasks": "service-tasks"},
                },
                "cut-network": {
                    "actionId": "aws:network:disrupt-connectivity",
                    "description": "cut the region's subnets off; stopping the experiment ends it",
                    "parameters": {"duration": duration, "scope": fis.disrupt_scope},
                    "targets": {"Subnets": "region-subnets"},
                },
            },
        )

    def template_for(self, fault: Fault, *, require_multi_az: bool = True) -> FisTemplate:
        """The template that injects ``fault``; FaultError for a fault FIS has no action for."""
        fault = fis_source(fault)
        if isinstance(fault, StopEcsTasks):
            return self.stop_tasks(
                fault.region, fault.cluster, fault.service, fault.count, fault.percent
            )
        if isinstance(fault, ScaleServiceToZero):
            return self.region_down(fault.region, fault.cluster, fault.service)
        return self.reboot(
            fault.region, fault.instance_id, fault.force_failover, require_multi_az=require_multi_az
        )


def export_templates(
    settings: AwsSettings, aws: AwsClients, source: str = "drdrill.yaml"
) -> tuple[list[FisTemplate], list[str]]:
    """The templates of the drill faults the suites use (:data:`DRILL_FAULTS`, in the primary
    region), and warnings: what was left out, what FIS would fail."""
    builder = TemplateBuilder(settings, aws, source=source)
    builder.role_arn()  # the one setting export cannot do without: say so before any call
    p = settings.primary
    templates = [builder.stop_tasks(p.region, p.ecs.cluster, p.ecs.service, count=1)]
    limit = settings.blast_radius.max_tasks_percent
    if limit >= 50:
        templates.append(builder.stop_tasks(p.region, p.ecs.cluster, p.ecs.service, percent=50))
    else:
        builder.warnings.append(
            f"stop-half-the-tasks left out: 50% is over blast_radius.max_tasks_percent {limit:g}%"
        )
    for crash in (False, True):
        templates.append(builder.reboot(p.region, p.rds.instance_id, crash, require_multi_az=False))
    templates.append(builder.region_down(p.region, p.ecs.cluster, p.ecs.service))
    return templates, builder.warnings


@dataclass(frozen=True)
class FisExperiment:
    """A fault injected by an AWS FIS experiment.

    Inject: create the template (with ``template_id``, start that existing one instead), start
    an experiment of it and wait, up to ``start_timeout_s``, until its actions run. Revert:
    stop the experiment (one already over is fine) and delete the template drdrill created.
    The journaled record holds, before any call, the ``token`` that both carry as a tag (and as
    their client tokens): a killed run's template and experiment are found again by it.
    """

    kind: ClassVar[str] = "aws.fis.experiment"
    access: AwsAccess
    region: str
    name: str
    template: Mapping[str, Any]
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: an existing template to start (never deleted); None: drdrill creates one per inject
    template_id: str | None = None
    start_timeout_s: float = 120.0
    #: the target's clients (shared call log, dry run); never journaled
    clients: AwsClients | None = field(default=None, compare=False, repr=False)
    #: the drdrill fault the experiment injects the equivalent of; never journaled
    stands_for: Fault | None = field(default=None, compare=False, repr=False)
    #: what this process learnt: the template and experiment ids
    ids: dict[str, str] = field(default_factory=dict, init=False, compare=False, repr=False)

    @property
    def parts(self) -> tuple[Fault, ...]:
        """The fault it stands for: the safety guard's blast radius reads what that takes."""
        return () if self.stands_for is None else (self.stands_for,)

    def _aws(self) -> AwsClients:
        return self.clients or self.access.clients()

    def _fis(self) -> Any:
        return self._aws().client("fis", self.region)

    def _tags(self) -> dict[str, str]:
        return {**self.template.get("tags", {}), TAG_TOKEN: self.token}

    def describe(self) -> str:
        """One line naming the template and what it does."""
        what = str(self.template.get("description", "")).removeprefix("drdrill: ")
        if self.template_id is not None:
            return f"fis experiment of template {self.template_id} in {self.region}: {what}"
        name = self.template.get("tags", {}).get("Name", self.name)
        return f"fis experiment of template '{name}' in {self.region}: {what}"

    # --- inject -----------------------------------------------------------------------------

    def inject(self) -> None:
        """Create the template (unless given), start the experiment, wait for its actions."""
        aws = self._aws()
        fis = self._fis()
        template_id = self.template_id or self._create_template(fis)
        self.ids["template_id"] = template_id
        try:
            answer = fis.start_experiment(
                clientToken=f"e-{self.token}",
                experimentTemplateId=template_id,
                tags=self._tags(),
            )
        except (ClientError, BotoCoreError) as exc:
            raise _aws_error(f"fis start experiment of template {template_id}", exc) from exc
        if aws.dry_run:
            return  # nothing was sent: there is no experiment to wait for
        experiment_id = str(answer["experiment"]["id"])
        self.ids["experiment_id"] = experiment_id
        self._wait_acting(fis, experiment_id)

    def _create_template(self, fis: Any) -> str:
        # the client token makes a retried inject reuse the template it created
        try:
            answer = fis.create_experiment_template(
                clientToken=f"t-{self.token}", **{**self.template, "tags": self._tags()}
            )
        except (ClientError, BotoCoreError) as exc:
            raise _aws_error(f"fis create template '{self.name}' in {self.region}", exc) from exc
        # a dry run answers empty: the plan shows the start call with this stand-in
        return str(answer.get("experimentTemplate", {}).get("id", "<template created above>"))

    def _wait_acting(self, fis: Any, experiment_id: str) -> None:
        """Until every action runs (or ran); FaultError if the experiment ends without it."""
        seen: dict[str, Any] = {}

        def acting() -> bool:
            experiment = self._experiment(fis, experiment_id)
            seen.update(experiment)
            state = experiment.get("state", {})
            status = state.get("status")
            if status in ("stopping", "stopped"):
                # stopped, and not by drdrill: a stop condition (a guard alarm) fired
                reason = state.get("reason", status)
                raise StopConditionTriggered([f"fis {status} experiment {experiment_id}: {reason}"])
            if status in ("failed", "cancelled"):
                reason = state.get("reason", status)
                raise FaultError(f"fis experiment {experiment_id} {status}: {reason}")
            if status == "completed":
                return True
            actions = experiment.get("actions", {}).values()
            return status == "running" and all(
                a.get("state", {}).get("status") in ACTING for a in actions
            )

        if not wait_until(acting, self.start_timeout_s, interval=POLL_INTERVAL_S):
            status = seen.get("state", {}).get("status", "unknown")
            raise FaultError(
                f"fis experiment {experiment_id} did not start its actions within "
                f"{self.start_timeout_s:g} s (status {status})"
            )

    def action_times(self) -> dict[str, tuple[datetime | None, datetime | None]]:
        """When FIS says each action started and ended (UTC; None where it has not): the
        platform's own record of the fault, for a drill to mark as ``reported`` events."""
        experiment_id = self.ids.get("experiment_id")
        if experiment_id is None:
            raise FaultError(f"{self.describe()}: no experiment started yet")
        actions = self._experiment(self._fis(), experiment_id).get("actions", {})
        return {
            name: (action.get("startTime"), action.get("endTime"))
            for name, action in actions.items()
        }

    def _experiment(self, fis: Any, experiment_id: str) -> dict[str, Any]:
        try:
            experiment: dict[str, Any] = fis.get_experiment(id=experiment_id)["experiment"]
        except (ClientError, BotoCoreError) as exc:
            raise _aws_error(f"fis experiment {experiment_id}", exc) from exc
        return experiment

    # --- revert -----------------------------------------------------------------------------

    def revert(self) -> RevertResult:
        """Stop the experiment (idempotent) and delete the template drdrill created."""
        fis = self._fis()
        template_id = self.ids.get("template_id") or self.template_id or self._find_template(fis)
        if template_id is None:
            return RevertResult("nothing to do: no template of this fault")
        if "experiment_id" in self.ids:
            experiments = [self.ids["experiment_id"]]
        else:
            experiments = self._find_experiments(fis, template_id)
        notes = [self._stop(fis, e) for e in experiments] or ["no experiment was started"]
        if self.template_id is None:
            notes.append(self._delete_template(fis, template_id))
        return RevertResult(
            "; ".join(notes), {"template_id": template_id, "experiment_ids": experiments}
        )

    def _ours(self, item: Mapping[str, Any]) -> bool:
        return bool(item.get("tags", {}).get(TAG_TOKEN) == self.token)

    def _pages(self, fis: Any, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        try:
            for page in fis.get_paginator(operation).paginate(**params):
                items.extend(page.get(key, []))
        except (ClientError, BotoCoreError) as exc:
            raise _aws_error(f"fis {operation.replace('_', ' ')} in {self.region}", exc) from exc
        return items

    def _find_template(self, fis: Any) -> str | None:
        """The template this fault created (a killed run's, found by its token tag)."""
        templates = self._pages(fis, "list_experiment_templates", "experimentTemplates")
        return next((str(t["id"]) for t in templates if self._ours(t)), None)

    def _find_experiments(self, fis: Any, template_id: str) -> list[str]:
        """This fault's experiments of the template (found by their token tag)."""
        found = self._pages(
            fis, "list_experiments", "experiments", experimentTemplateId=template_id
        )
        return [str(e["id"]) for e in found if self._ours(e)]

    def _stop(self, fis: Any, experiment_id: str) -> str:
        """Stop one experiment unless it is over; FaultError while it still runs."""
        try:
            status = self._experiment(fis, experiment_id)["state"]["status"]
        except DrillError as exc:
            if isinstance(exc.__cause__, ClientError) and _not_found(exc.__cause__):
                return f"experiment {experiment_id} is gone"
            raise
        if status in TERMINAL:
            return f"experiment {experiment_id} already {status}"
        try:
            fis.stop_experiment(id=experiment_id)
        except ClientError as exc:
            # it may have ended between the read and the stop: what counts is its state now
            status = self._experiment(fis, experiment_id)["state"]["status"]
            if status not in TERMINAL:
                raise _aws_error(f"fis stop experiment {experiment_id}", exc) from exc
            return f"experiment {experiment_id} already {status}"
        final: list[str] = [status]

        def over() -> bool:
            final[0] = self._experiment(fis, experiment_id)["state"]["status"]
            return final[0] in TERMINAL

        if not wait_until(over, self.start_timeout_s, interval=POLL_INTERVAL_S):
            raise FaultError(
                f"fis experiment {experiment_id} still {final[0]} {self.start_timeout_s:g} s "
                "after it was asked to stop"
            )
        return f"experiment {experiment_id} {final[0]}"

    def _delete_template(self, fis: Any, template_id: str) -> str:
        try:
            fis.delete_experiment_template(id=template_id)
        except ClientError as exc:
            if _not_found(exc):
                return f"template {template_id} already deleted"
            raise _aws_error(f"fis delete template {template_id}", exc) from exc
        return f"template {template_id} deleted"

    # --- the journal ------------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        """Everything revert needs, before any call: where, the template, the token."""
        return {
            "access": self.access.to_record(),
            "region": self.region,
            "name": self.name,
            "template": dict(self.template),
            "token": self.token,
            "template_id": self.template_id,
            "start_timeout_s": self.start_timeout_s,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Rebuild from the journal; FaultError on a record that is not one."""
        try:
            template = record["template"]
            if not isinstance(template, Mapping):
                raise TypeError("template is not an object")
            template_id = record.get("template_id")
            return cls(
                access=AwsAccess.from_record(record["access"]),
                region=str(record["region"]),
                name=str(record["name"]),
                template=dict(template),
                token=str(record["token"]),
                template_id=None if template_id is None else str(template_id),
                start_timeout_s=float(record.get("start_timeout_s", 120.0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FaultError(f"{cls.kind} record is malformed: {exc!r}") from exc


def experiment_for(
    fault: Fault,
    settings: AwsSettings,
    aws: AwsClients,
    *,
    run_id: str | None = None,
    source: str = "drdrill.yaml",
) -> FisExperiment:
    """The FIS experiment that injects ``fault`` (one of the AWS target's faults)."""
    template = TemplateBuilder(settings, aws, run_id=run_id, source=source).template_for(fault)
    return FisExperiment(
        access=fis_source(fault).access,
        region=template.region,
        name=template.name,
        template=template.body,
        start_timeout_s=settings.fis.start_timeout,
        clients=aws,
        stands_for=fault,
    )


def backed(
    fault: F,
    settings: AwsSettings,
    aws: AwsClients,
    *,
    run_id: str | None = None,
) -> F | FisExperiment:
    """``fault`` as ``targets.aws.fault_backend`` injects it: itself (``api``), or the FIS
    experiment generated from it (``fis``). The AWS target passes each fault it builds here."""
    if settings.fault_backend != "fis":
        return fault
    if isinstance(fault, FisExperiment):
        # already an experiment (the target's own faults are): built again from the fault it
        # stands for, so a run id given here still tags it
        if fault.stands_for is None:
            return fault
        return experiment_for(fault.stands_for, settings, aws, run_id=run_id)
    return experiment_for(fault, settings, aws, run_id=run_id)
