"""Faults of the embedded sandbox, injected and reverted through its control API.

Each record holds the control port, so ``drdrill recover`` can revert a fault of a killed run
as long as the sandbox supervisor runs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

from drdrill.errors import FaultError
from drdrill.faults.base import RevertResult
from drdrill.sandbox.control import SandboxClient, SandboxError
from drdrill.targets.base import FailoverMode, Region

#: how long a revert waits for a reboot in progress (its database starting) to end
REBOOT_WAIT_S = 60.0


def _region(record: Mapping[str, Any]) -> Region:
    region = record.get("region")
    if region not in ("primary", "dr"):
        raise FaultError(f"sandbox fault record: bad region {region!r}")
    return "primary" if region == "primary" else "dr"


def _call(port: int, op: str, **kwargs: Any) -> Any:
    try:
        return SandboxClient(port).call(op, **kwargs)
    except SandboxError as exc:
        raise FaultError(str(exc)) from exc


@dataclass(frozen=True)
class _ControlPortOnly:
    """A sandbox fault whose record is its control port alone."""

    control_port: int

    def to_record(self) -> dict[str, Any]:
        """What recover needs."""
        return {"control_port": self.control_port}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Rebuild from the journal."""
        return cls(int(record["control_port"]))


@dataclass(frozen=True)
class StopTasks:
    """Stop n (or a percentage) of a service's tasks; ECS replaces them, the revert waits for it."""

    kind: ClassVar[str] = "sandbox.stop_tasks"
    control_port: int
    region: Region = "primary"
    count: int | None = 1
    percent: float | None = None
    mode: Literal["graceful", "kill"] = "kill"

    def describe(self) -> str:
        """One line naming the fault."""
        what = f"{self.percent:g}% of" if self.percent is not None else f"{self.count}"
        return f"stop {what} ecs tasks in {self.region} ({self.mode})"

    def inject(self) -> None:
        """Stop the tasks now."""
        _call(
            self.control_port,
            "stop_tasks",
            region=self.region,
            count=None if self.percent is not None else self.count,
            percent=self.percent,
            mode=self.mode,
        )

    def revert(self) -> RevertResult:
        """Nothing to undo: the scheduler replaces stopped tasks (this is what drills measure)."""
        return RevertResult("left to the scheduler")

    def to_record(self) -> dict[str, Any]:
        """What recover needs."""
        return {
            "control_port": self.control_port,
            "region": self.region,
            "count": self.count,
            "percent": self.percent,
            "mode": self.mode,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Rebuild from the journal."""
        return cls(
            control_port=int(record["control_port"]),
            region=_region(record),
            count=record.get("count"),
            percent=record.get("percent"),
            mode=record.get("mode", "kill"),
        )


@dataclass(frozen=True)
class RebootDb:
    """Reboot a region's database (clean or crash); the revert makes sure it runs again."""

    kind: ClassVar[str] = "sandbox.reboot_db"
    control_port: int
    region: Region = "primary"
    mode: Literal["clean", "crash"] = "clean"

    def describe(self) -> str:
        """One line naming the fault."""
        return f"reboot rds in {self.region} ({self.mode})"

    def inject(self) -> None:
        """Ask for a reboot: returns at once and the database reboots in the background, as
        RDS answers a reboot request and then reboots (so the fault is the request, known to
        within a short call, not to within the whole reboot)."""
        _call(self.control_port, "reboot_db", region=self.region, mode=self.mode, wait=False)

    def revert(self) -> RevertResult:
        """Start the database if a reboot left it down (after a reboot in progress ends)."""
        status = _call(self.control_port, "status", light=True)
        rds = status["regions"][self.region]["rds"]
        deadline = time.monotonic() + REBOOT_WAIT_S
        while rds.get("rebooting") and time.monotonic() < deadline:
            time.sleep(0.05)
            rds = _call(self.control_port, "status", light=True)["regions"][self.region]["rds"]
        if rds["running"]:
            return RevertResult("database running")
        _call(self.control_port, "reboot_db", region=self.region, mode="clean")
        return RevertResult("database started")

    def to_record(self) -> dict[str, Any]:
        """What recover needs."""
        return {"control_port": self.control_port, "region": self.region, "mode": self.mode}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Rebuild from the journal."""
        return cls(int(record["control_port"]), _region(record), record.get("mode", "clean"))


@dataclass(frozen=True)
class RegionDown:
    """Take a whole region down (kill, or freeze: a black hole); the revert brings it back."""

    kind: ClassVar[str] = "sandbox.region_down"
    control_port: int
    region: Region = "primary"
    mode: Literal["kill", "freeze"] = "kill"

    def describe(self) -> str:
        """One line naming the fault."""
        return f"take region {self.region} down ({self.mode})"

    def inject(self) -> None:
        """Down now."""
        _call(self.control_port, "region_down", region=self.region, mode=self.mode)

    def revert(self) -> RevertResult:
        """Bring the region's processes back (idempotent)."""
        result = _call(self.control_port, "region_up", region=self.region)
        return RevertResult(f"region {self.region} {result['state']}")

    def to_record(self) -> dict[str, Any]:
        """What recover needs."""
        return {"control_port": self.control_port, "region": self.region, "mode": self.mode}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Rebuild from the journal."""
        return cls(int(record["control_port"]), _region(record), record.get("mode", "kill"))


@dataclass(frozen=True)
class PauseReplication(_ControlPortOnly):
    """Stop applying on the DR replica so that its lag builds up; the revert resumes it."""

    kind: ClassVar[str] = "sandbox.pause_replication"

    def describe(self) -> str:
        """One line naming the fault."""
        return "pause replication to the dr replica"

    def inject(self) -> None:
        """Pause now."""
        _call(self.control_port, "pause_replication")

    def revert(self) -> RevertResult:
        """Resume applying (idempotent: START SLAVE on a running thread is a no-op)."""
        _call(self.control_port, "resume_replication")
        return RevertResult("replication resumed")


@dataclass(frozen=True)
class CutReplication(_ControlPortOnly):
    """Cut the replication link to the DR replica (its IO thread stopped): writes the primary
    acknowledges from now on never reach DR, and a failover loses them. The revert starts the
    IO thread again (nothing to do once the replica was promoted)."""

    kind: ClassVar[str] = "sandbox.cut_replication"

    def describe(self) -> str:
        """One line naming the fault."""
        return "cut the replication link to the dr replica (STOP SLAVE IO_THREAD)"

    def inject(self) -> None:
        """Cut now."""
        _call(self.control_port, "cut_replication")

    def revert(self) -> RevertResult:
        """START SLAVE IO_THREAD (idempotent; a promoted replica is left alone)."""
        result = _call(self.control_port, "restore_replication")
        if result.get("restored"):
            return RevertResult("replication link restored")
        return RevertResult(f"nothing to restore: {result.get('why')}")


@dataclass(frozen=True)
class PartitionRegions(_ControlPortOnly):
    """Partition the two regions: nothing crosses the inter-region link. Both sides keep
    running; the old primary keeps taking writes that never reach DR, so a failover now loses
    them and leaves two writable databases (a split brain). The revert heals the link; what
    was held is delivered (a promoted replica no longer reads it)."""

    kind: ClassVar[str] = "sandbox.partition_regions"

    def describe(self) -> str:
        """One line naming the fault."""
        return "partition the regions (nothing crosses the inter-region link)"

    def inject(self) -> None:
        """Partition now."""
        _call(self.control_port, "partition_regions")

    def revert(self) -> RevertResult:
        """Heal the link (idempotent)."""
        result = _call(self.control_port, "heal_regions")
        return RevertResult("link healed" if result.get("changed") else "link was not cut")


@dataclass(frozen=True)
class DegradeLink:
    """Degrade the inter-region link: one-way latency, jitter (ms) and loss (%); the revert
    gives it back its configured shape."""

    kind: ClassVar[str] = "sandbox.degrade_link"
    control_port: int
    latency_ms: float
    jitter_ms: float = 0.0
    loss_pct: float = 0.0

    def describe(self) -> str:
        """One line naming the fault."""
        return (
            f"degrade the inter-region link to {self.latency_ms:g} ms one way "
            f"(jitter {self.jitter_ms:g} ms, loss {self.loss_pct:g} %)"
        )

    def inject(self) -> None:
        """Degrade now."""
        _call(
            self.control_port,
            "degrade_link",
            latency_ms=self.latency_ms,
            jitter_ms=self.jitter_ms,
            loss_pct=self.loss_pct,
        )

    def revert(self) -> RevertResult:
        """The configured latency, jitter and loss again (idempotent)."""
        result = _call(self.control_port, "restore_link")
        return RevertResult(f"link back to {result['latency_ms']:g} ms one way")

    def to_record(self) -> dict[str, Any]:
        """What recover needs."""
        return {
            "control_port": self.control_port,
            "latency_ms": self.latency_ms,
            "jitter_ms": self.jitter_ms,
            "loss_pct": self.loss_pct,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Rebuild from the journal."""
        return cls(
            int(record["control_port"]),
            float(record["latency_ms"]),
            float(record.get("jitter_ms", 0.0)),
            float(record.get("loss_pct", 0.0)),
        )


@dataclass(frozen=True)
class CutOffClients:
    """Partition a region from its clients: its load balancer drops their connections without
    an answer (a black hole, not a refusal). The region runs on, and stays linked to the other
    one; the revert lets clients in again."""

    kind: ClassVar[str] = "sandbox.cut_off_clients"
    control_port: int
    region: Region = "primary"

    def describe(self) -> str:
        """One line naming the fault."""
        return f"partition region {self.region} from its clients"

    def inject(self) -> None:
        """Cut off now."""
        _call(self.control_port, "cut_off_clients", region=self.region)

    def revert(self) -> RevertResult:
        """Let clients in again (idempotent)."""
        result = _call(self.control_port, "rejoin_clients", region=self.region)
        if result.get("changed"):
            return RevertResult(f"clients reach {self.region} again")
        return RevertResult(f"{self.region} was not cut off")

    def to_record(self) -> dict[str, Any]:
        """What recover needs."""
        return {"control_port": self.control_port, "region": self.region}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Rebuild from the journal."""
        return cls(int(record["control_port"]), _region(record))


@dataclass(frozen=True)
class SetFailoverMode:
    """A state change, journaled like a fault: the failover mode (whether the alarm runs the DR
    automation by itself) set for a drill; the revert (``drdrill recover`` too, after a kill)
    puts the mode back as it was, so that a killed automated drill does not leave the next
    drill's fault to start a real failover."""

    kind: ClassVar[str] = "sandbox.set_mode"
    #: a change of configuration, not an outage: no safety consent asked
    destructive: ClassVar[bool] = False
    control_port: int
    mode: FailoverMode
    before: FailoverMode

    def describe(self) -> str:
        """One line naming the change."""
        return f"failover mode {self.mode} (was {self.before})"

    def inject(self) -> None:
        """Set the mode now."""
        _call(self.control_port, "set_mode", mode=self.mode)

    def revert(self) -> RevertResult:
        """The mode as it was."""
        _call(self.control_port, "set_mode", mode=self.before)
        return RevertResult(f"mode {self.before} again")

    def to_record(self) -> dict[str, Any]:
        """What recover needs."""
        return {"control_port": self.control_port, "mode": self.mode, "before": self.before}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Rebuild from the journal."""
        modes = ("automated", "manual")
        mode, before = record.get("mode"), record.get("before")
        if mode not in modes or before not in modes:
            raise FaultError(f"sandbox mode record: bad mode {mode!r} or {before!r}")
        return cls(
            int(record["control_port"]),
            "automated" if mode == "automated" else "manual",
            "automated" if before == "automated" else "manual",
        )
