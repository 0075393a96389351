"""Faults on an AWS stack, through the adapters; each records what its revert needs.

The record holds the endpoint, profile and role the run used, so ``drdrill recover`` reaches the
same account (or the same emulator) again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from drdrill.errors import FaultError
from drdrill.faults.base import RevertResult
from drdrill.targets.aws.session import AwsClients


@dataclass(frozen=True)
class AwsAccess:
    """How to reach the account again (no secrets: credentials come from the environment)."""

    endpoint_url: str | None = None
    profile: str | None = None
    role_arn: str | None = None

    def clients(self) -> AwsClients:
        """New clients with these settings."""
        return AwsClients(
            endpoint_url=self.endpoint_url, profile=self.profile, role_arn=self.role_arn
        )

    def to_record(self) -> dict[str, Any]:
        """The access at the JSON edge."""
        return {
            "endpoint_url": self.endpoint_url,
            "profile": self.profile,
            "role_arn": self.role_arn,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> AwsAccess:
        """Rebuild from the journal."""
        return cls(record.get("endpoint_url"), record.get("profile"), record.get("role_arn"))


@dataclass(frozen=True)
class _EcsServiceFault:
    """What every fault on an ECS service records: where it is and its desired count before."""

    access: AwsAccess
    region: str
    cluster: str
    service: str
    desired_before: int
    #: the target's clients (shared call log, dry run); never journaled
    clients: AwsClients | None = field(default=None, compare=False, repr=False)

    def _aws(self) -> AwsClients:
        return self.clients or self.access.clients()

    def _restore_desired(self) -> bool:
        """Desired count as before the fault; whether it had to change (idempotent)."""
        from drdrill.targets.aws import ecs

        aws = self._aws()
        if ecs.desired_count(aws, self.region, self.cluster, self.service) == self.desired_before:
            return False
        ecs.update_desired_count(aws, self.region, self.cluster, self.service, self.desired_before)
        return True

    def to_record(self) -> dict[str, Any]:
        """What recover needs."""
        return {
            "access": self.access.to_record(),
            "region": self.region,
            "cluster": self.cluster,
            "service": self.service,
            "desired_before": self.desired_before,
        }

    @staticmethod
    def _common(record: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "access": AwsAccess.from_record(record["access"]),
            "region": str(record["region"]),
            "cluster": str(record["cluster"]),
            "service": str(record["service"]),
            "desired_before": int(record["desired_before"]),
        }


@dataclass(frozen=True)
class StopEcsTasks(_EcsServiceFault):
    """Stop n (or a percentage) of a service's running tasks; ECS replaces them.

    The revert puts the service's desired count back to what it was before (in case anything
    lowered it) and leaves the replacement to ECS: that is what a drill measures.
    """

    kind: ClassVar[str] = "aws.ecs.stop_tasks"
    count: int | None = 1
    percent: float | None = None

    def describe(self) -> str:
        """One line naming the fault."""
        what = f"{self.percent:g}% of" if self.percent is not None else f"{self.count}"
        return f"stop {what} tasks of ecs service '{self.service}' in {self.region}"

    def inject(self) -> None:
        """Stop the tasks now."""
        from drdrill.targets.aws import ecs

        ecs.stop_tasks(
            self._aws(),
            self.region,
            self.cluster,
            self.service,
            count=None if self.percent is not None else self.count,
            percent=self.percent,
        )

    def revert(self) -> RevertResult:
        """Desired count as before; the replacement is left to ECS."""
        if self._restore_desired():
            return RevertResult(f"desired count back to {self.desired_before}")
        return RevertResult("left to ecs: stopped tasks are replaced")

    def to_record(self) -> dict[str, Any]:
        """What recover needs."""
        return {**super().to_record(), "count": self.count, "percent": self.percent}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Rebuild from the journal."""
        return cls(**cls._common(record), count=record.get("count"), percent=record.get("percent"))


@dataclass(frozen=True)
class ScaleServiceToZero(_EcsServiceFault):
    """A region's service loses every task (the closest safe stand-in for losing the region).

    The revert restores the desired count it had.
    """

    kind: ClassVar[str] = "aws.ecs.scale_to_zero"

    @property
    def tasks_stopped_percent(self) -> float:
        """The share of the service's running tasks the fault stops: all of them."""
        return 100.0

    def describe(self) -> str:
        """One line naming the fault."""
        return (
            f"scale ecs service '{self.service}' in {self.region} to 0 (was {self.desired_before})"
        )

    def inject(self) -> None:
        """Desired 0, and stop what runs."""
        from drdrill.targets.aws import ecs

        aws = self._aws()
        ecs.update_desired_count(aws, self.region, self.cluster, self.service, 0)
        ecs.stop_tasks(aws, self.region, self.cluster, self.service, percent=100.0)

    def revert(self) -> RevertResult:
        """Desired count back."""
        self._restore_desired()
        return RevertResult(f"desired count back to {self.desired_before}")

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Rebuild from the journal."""
        return cls(**cls._common(record))


@dataclass(frozen=True)
class FailHealthCheck:
    """Fail a Route53 health check by inverting it: Route53 then answers the other side of the
    failover record it guards. The revert puts ``Inverted`` back as it was. A part of
    :class:`RegionDown` (which ``drdrill recover`` rebuilds it through)."""

    kind: ClassVar[str] = "aws.route53.fail_health_check"
    access: AwsAccess
    health_check_id: str
    #: the health check's ``Inverted`` before the fault
    inverted_before: bool = False
    #: the target's clients (shared call log, dry run); never journaled
    clients: AwsClients | None = field(default=None, compare=False, repr=False)

    def _aws(self) -> AwsClients:
        return self.clients or self.access.clients()

    def describe(self) -> str:
        """One line naming the fault."""
        return f"fail route53 health check '{self.health_check_id}' (inverted)"

    def inject(self) -> None:
        """Invert the health check (a healthy check then fails)."""
        from drdrill.targets.aws import route53

        route53.set_health_check_inverted(
            self._aws(), self.health_check_id, not self.inverted_before
        )

    def revert(self) -> RevertResult:
        """``Inverted`` as before (nothing sent when it already is)."""
        from drdrill.targets.aws import route53

        aws = self._aws()
        if route53.health_check_inverted(aws, self.health_check_id) == self.inverted_before:
            return RevertResult(f"health check '{self.health_check_id}' as it was")
        route53.set_health_check_inverted(aws, self.health_check_id, self.inverted_before)
        return RevertResult(
            f"health check '{self.health_check_id}' inverted={self.inverted_before} again"
        )

    def to_record(self) -> dict[str, Any]:
        """What recover needs."""
        return {
            "access": self.access.to_record(),
            "health_check_id": self.health_check_id,
            "inverted_before": self.inverted_before,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Rebuild from the journal."""
        return cls(
            AwsAccess.from_record(record["access"]),
            str(record["health_check_id"]),
            bool(record.get("inverted_before", False)),
        )


@dataclass(frozen=True)
class RegionDown:
    """A whole region down, as far as AWS lets a drill take one down: its side of the Route53
    failover record failed (:class:`FailHealthCheck`), so that Route53 answers the other side
    once that is healthy, and its service scaled to 0 with its running tasks stopped
    (:class:`ScaleServiceToZero`). AWS has nothing to freeze: a region is stopped either way.

    The journal holds every part's undo (the health check's ``Inverted`` and the desired count
    before) before the first part acts. A part that fails to inject reverts the parts already
    in, newest first, before the error goes on. The revert goes newest first too: the service
    gets its tasks back before Route53 may send clients to it again; every part is attempted,
    and each is skipped when already undone, so it is safe after a partial inject.
    """

    kind: ClassVar[str] = "aws.region_down"
    #: the region's AWS name (``eu-west-1``)
    region: str
    scale: ScaleServiceToZero
    #: None: the region has no health-checked side of a failover record to fail
    health_check: FailHealthCheck | None = None
    #: the service's running tasks when the fault was built: what it stops
    running_before: int = 0

    @property
    def parts(self) -> tuple[FailHealthCheck | ScaleServiceToZero, ...]:
        """The faults it injects, in order (a guard reads what each takes down)."""
        return (self.scale,) if self.health_check is None else (self.health_check, self.scale)

    @property
    def tasks_stopped(self) -> int:
        """How many running tasks the fault stops: all the service has."""
        return self.running_before

    @property
    def tasks_stopped_percent(self) -> float:
        """The share of the service's running tasks the fault stops: all of them."""
        return 100.0

    def describe(self) -> str:
        """One line naming the fault and everything it takes down."""
        check = (
            "no route53 health check to fail, "
            if self.health_check is None
            else f"fail route53 health check '{self.health_check.health_check_id}', "
        )
        return (
            f"region {self.region} down: {check}scale ecs service '{self.scale.service}' to 0 "
            f"(was {self.scale.desired_before}) and stop its {self.running_before} running tasks"
        )

    def inject(self) -> None:
        """Each part in turn; on a failure, the parts already in are reverted first."""
        done: list[FailHealthCheck | ScaleServiceToZero] = []
        for part in self.parts:
            try:
                part.inject()
            except BaseException as exc:
                for earlier in reversed(done):
                    try:
                        earlier.revert()
                    except Exception as undo:
                        exc.add_note(f"reverting '{earlier.describe()}' failed too: {undo}")
                raise
            done.append(part)

    def revert(self) -> RevertResult:
        """Every part reverted, newest first; a FaultError naming each that failed."""
        notes: list[str] = []
        failed: list[str] = []
        for part in reversed(self.parts):
            try:
                notes.append(part.revert().note)
            except Exception as exc:
                failed.append(f"{part.describe()}: {exc}")
        if failed:
            raise FaultError(f"region {self.region} down not reverted: {'; '.join(failed)}")
        return RevertResult(", ".join(notes))

    def to_record(self) -> dict[str, Any]:
        """What recover needs: every part's undo."""
        return {
            "region": self.region,
            "running_before": self.running_before,
            "scale": self.scale.to_record(),
            "health_check": None if self.health_check is None else self.health_check.to_record(),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Rebuild from the journal."""
        check = record.get("health_check")
        return cls(
            str(record["region"]),
            ScaleServiceToZero.from_record(record["scale"]),
            None if check is None else FailHealthCheck.from_record(check),
            int(record.get("running_before", 0)),
        )


@dataclass(frozen=True)
class RebootDbInstance:
    """Reboot an RDS instance (with failover only on Multi-AZ); nothing to undo but to wait."""

    kind: ClassVar[str] = "aws.rds.reboot"
    access: AwsAccess
    region: str
    instance_id: str
    force_failover: bool = False
    #: the target's clients (shared call log, dry run); never journaled
    clients: AwsClients | None = field(default=None, compare=False, repr=False)

    def _aws(self) -> AwsClients:
        return self.clients or self.access.clients()

    def describe(self) -> str:
        """One line naming the fault."""
        how = " with failover" if self.force_failover else ""
        return f"reboot rds instance '{self.instance_id}' in {self.region}{how}"

    def inject(self) -> None:
        """Reboot now (refused before any call if failover is asked of a single-AZ instance)."""
        from drdrill.targets.aws import rds

        rds.reboot_instance(
            self._aws(), self.region, self.instance_id, force_failover=self.force_failover
        )

    def revert(self) -> RevertResult:
        """A reboot ends by itself; say what state the instance is in."""
        from drdrill.targets.aws import rds

        state = rds.describe_instance(self._aws(), self.region, self.instance_id)
        return RevertResult(f"instance {state.status}")

    def to_record(self) -> dict[str, Any]:
        """What recover needs."""
        return {
            "access": self.access.to_record(),
            "region": self.region,
            "instance_id": self.instance_id,
            "force_failover": self.force_failover,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Rebuild from the journal."""
        return cls(
            AwsAccess.from_record(record["access"]),
            str(record["region"]),
            str(record["instance_id"]),
            bool(record.get("force_failover", False)),
        )


@dataclass(frozen=True)
class SetAlarmActions:
    """A state change, journaled like a fault: the health alarm's actions enabled (automated
    failover: its notification invokes the DR automation) or disabled (manual) for a drill; the
    revert (``drdrill recover`` too, after a kill) puts them back as they were."""

    kind: ClassVar[str] = "aws.cloudwatch.alarm_actions"
    #: a change of configuration, not an outage: no safety consent asked
    destructive: ClassVar[bool] = False
    access: AwsAccess
    region: str
    alarm: str
    enabled: bool
    enabled_before: bool
    #: the target's clients (shared call log, dry run); never journaled
    clients: AwsClients | None = field(default=None, compare=False, repr=False)

    def _aws(self) -> AwsClients:
        return self.clients or self.access.clients()

    def describe(self) -> str:
        """One line naming the change."""
        mode = "automated" if self.enabled else "manual"
        return f"failover mode {mode}: alarm '{self.alarm}' actions enabled={self.enabled}"

    def inject(self) -> None:
        """Enable or disable the alarm's actions now."""
        from drdrill.targets.aws import cloudwatch

        cloudwatch.set_actions_enabled(self._aws(), self.region, self.alarm, self.enabled)

    def revert(self) -> RevertResult:
        """The actions as they were (nothing sent when they already are)."""
        from drdrill.targets.aws import cloudwatch

        aws = self._aws()
        if cloudwatch.actions_enabled(aws, self.region, self.alarm) != self.enabled_before:
            cloudwatch.set_actions_enabled(aws, self.region, self.alarm, self.enabled_before)
        return RevertResult(f"alarm '{self.alarm}' actions enabled={self.enabled_before} again")

    def to_record(self) -> dict[str, Any]:
        """What recover needs."""
        return {
            "access": self.access.to_record(),
            "region": self.region,
            "alarm": self.alarm,
            "enabled": self.enabled,
            "enabled_before": self.enabled_before,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Rebuild from the journal."""
        return cls(
            AwsAccess.from_record(record["access"]),
            str(record["region"]),
            str(record["alarm"]),
            bool(record["enabled"]),
            bool(record["enabled_before"]),
        )
