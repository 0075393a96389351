"""Faults on an AWS stack, through the adapters; each records what its revert needs.

The record holds the endpoint, profile and role the run used, so ``drdrill recover`` reaches the
same account (or the same emulator) again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

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
