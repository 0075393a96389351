"""The ``Target`` protocol and the capabilities drills ask for, whatever runs the stack.

A drill asks for the capabilities it needs (a service stack, a failover stack, a scripted one, a
write target, ...) and is skipped, naming the one missing, where a target lacks it: suites never
reach into a target with ``getattr``. The sandbox and the AWS target implement the same
protocols, so one drill code path runs on both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import psutil

    from drdrill.config import DrillConfig, EndpointConfig
    from drdrill.faults.base import Fault
    from drdrill.measure import Measurements
    from drdrill.probes.client import ClientSpec
    from drdrill.probes.lag import LagReading, ReplicationState
    from drdrill.probes.writes import WriteSink
    from drdrill.timeline import Timeline

#: the two regions of a DR stack, as every target names them
Region = Literal["primary", "dr"]
#: how the failover is started when the alarm fires: by the stack itself, or by a person
FailoverMode = Literal["automated", "manual"]


@runtime_checkable
class Target(Protocol):
    """A stack under drill.

    Suites talk to a target only through this protocol (and the capability protocols that
    concrete targets add), never to its internals, so one suite drills the sandbox and AWS alike.
    """

    #: the name users pick it by (``--dr-target``)
    name: str
    #: whether destructive faults need ``--dr-allow-destructive`` (real accounts: yes)
    needs_destructive_flag: bool

    def start(self) -> None:
        """Connect to the stack (or bring up an embedded one); idempotent."""

    def stop(self) -> None:
        """Release what ``start`` took; idempotent."""

    def endpoints(self) -> list[EndpointConfig]:
        """The endpoints probes sample by default (the runbook's post-failover checks)."""

    def describe(self) -> Mapping[str, Any]:
        """What the report says about the target: kind, addresses, regions."""


class TargetFactory(Protocol):
    """Builds a target from the stack config."""

    def __call__(self, config: DrillConfig, worker: str | None = None) -> Target:
        """A target for ``config``; ConfigError on bad settings. ``worker`` is the
        pytest-xdist worker (``gw0``, ...) whose target it is, None without workers."""


@runtime_checkable
class SteadyStateTarget(Protocol):
    """A target that can tell whether the stack is healthy before a fault (beyond the probes)."""

    def steady_state_problems(self, rpo_s: float | None) -> list[str]:
        """What is wrong now, one short line each naming it (replication stopped, the replica's
        lag unknown or over ``rpo_s``, the health alarm not OK, the public name not answering
        the primary, each where the target can tell); empty when the stack is in steady state."""


@runtime_checkable
class GroundTruthTarget(Protocol):
    """A target that logs what really happened (the sandbox): it can put a ground truth from
    its own components' records beside a drill's figures. Optional: without it, reports say
    "no ground truth"."""

    def attach_truth(
        self, measure: Measurements, trigger: str = ..., drill: Any = ...
    ) -> Mapping[str, Any]:
        """Attach the truth of each figure ``measure`` holds; what was attached."""


# --- capabilities ------------------------------------------------------------------------------


@runtime_checkable
class ServiceStack(Protocol):
    """A service in each region behind a load balancer (ECS behind an ALB)."""

    name: str

    def endpoints(self, region: Region | None = None) -> list[EndpointConfig]:
        """The runbook's checks through the public name, or through one region's balancer."""

    def desired(self, region: Region) -> int:
        """A region's service's desired count now."""

    def running_tasks(self, region: Region) -> int:
        """A region's service's running tasks now."""

    def healthy_targets(self, region: Region) -> int:
        """Healthy targets behind a region's load balancer now."""

    def scale(self, region: Region, desired: int) -> None:
        """Change a region's service's desired count."""

    def stop_tasks(
        self,
        region: Region = "primary",
        count: int | None = 1,
        percent: float | None = None,
        mode: Literal["graceful", "kill"] = "kill",
    ) -> Fault:
        """A fault: stop a number or a percentage of a region's tasks."""


@runtime_checkable
class DatabaseStack(Protocol):
    """A primary database and its cross-region replica (RDS)."""

    def reboot_db(
        self, region: Region = "primary", mode: Literal["clean", "crash"] = "clean"
    ) -> Fault:
        """A fault: reboot a region's database (``crash``: with a failover where it can)."""

    def db_writable(self, region: Region) -> bool:
        """Whether a region's database takes writes now."""

    def writable_probe(self, region: Region) -> Callable[[], bool]:
        """A cheap repeated poll of :meth:`db_writable` (one connection kept across calls)."""


@runtime_checkable
class DatabaseServiceStack(ServiceStack, DatabaseStack, Protocol):
    """A service and its database: what an RDS reboot drill needs."""


@runtime_checkable
class ClientLookup(Protocol):
    """The public name as one client resolves it, each answer kept for its TTL."""

    def lookup(self) -> str | None:
        """The address the client would connect to now (None: no answer)."""


@runtime_checkable
class ReportedRecord(Protocol):
    """A record the platform keeps of an action it took (an RDS event, a Lambda log line)."""

    @property
    def utc(self) -> datetime:
        """When the platform says it happened."""

    @property
    def resolution_s(self) -> float:
        """How finely ``utc`` is known: the action lies in ``[utc, utc + resolution_s]``."""


@runtime_checkable
class PlatformRecords(Protocol):
    """A stack whose platform keeps its own record of what happened to it (AWS: ECS's task
    times, RDS's events), which drills put beside what they observed."""

    def platform_records(self, mono: float, record: str) -> Sequence[ReportedRecord]:
        """The records named ``record`` since the monotonic time ``mono``, oldest first:
        ``task_stopped`` and ``task_started`` (the primary service's tasks), ``db_restarted``
        (the primary database back from a reboot or a Multi-AZ failover)."""


@runtime_checkable
class FailoverStack(DatabaseServiceStack, Protocol):
    """Everything a region failover drill watches and triggers.

    The stack's own records of its actions (:meth:`reported_since`) are the ``reported``
    events of a failover: ``automation_invoked``, ``rds_promotion_requested``,
    ``ecs_scale_requested``, ``dns_switch_requested``.
    """

    def region_down(
        self, region: Region = "primary", mode: Literal["kill", "freeze"] = "kill"
    ) -> Fault:
        """A fault: a whole region down."""

    def scale_to(self, region: Region) -> int:
        """How many tasks the DR automation scales a region's service to."""

    def region_of(self, address: str | None) -> Region | None:
        """Which region's load balancer an address the public name resolved to belongs to."""

    def dns_answer(self) -> str | None:
        """What the public name resolves to now (asked afresh)."""

    def client_resolver(self, role: str = "drill") -> ClientLookup:
        """A resolver of the public name as a client has it (honouring the TTL)."""

    def alarm_state(self) -> str:
        """The health alarm's state (``OK``, ``ALARM``, ...)."""

    def alarm_history(self) -> list[dict[str, Any]]:
        """The health alarm's state changes, oldest first: ``{"state", "utc", ...}``."""

    def set_mode(self, mode: FailoverMode) -> None:
        """Whether the alarm starts the failover by itself."""

    def mode_change(self, mode: FailoverMode) -> Fault:
        """Setting the mode as a change a drill journals before it makes it
        (``inject.change(stack.mode_change(...))``): put back at the drill's end, or by
        ``drdrill recover`` after a kill."""

    def invoke_dr(self, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Invoke the DR automation (the runbook's Lambda) and wait for its answer."""

    def reported_since(self, mono: float, record: str) -> Sequence[ReportedRecord]:
        """The stack's own records named ``record`` since the monotonic time ``mono``."""


@runtime_checkable
class ScriptedStack(Protocol):
    """A stack the runbook's scripts (``failover.sh``, ``failback.sh``) run against."""

    def run_script(self, name: str, *args: str, timeout_s: float = 180.0) -> str:
        """Run one of the runbook's scripts; its output; an error naming its exit status."""

    def script_problem(self, name: str) -> str | None:
        """Why the script ``name`` cannot run here (not configured: naming the key), or None;
        asked before a drill's fault, so that a drill never takes a region down and then
        finds it has no script to recover with."""


@runtime_checkable
class WriteTarget(Protocol):
    """A stack the RPO writer writes numbered markers through, and reads them back from."""

    def write_sink(self, timeout_s: float) -> WriteSink:
        """Where markers go (through the public name, as the app's clients write)."""

    def present_markers(self, run_id: str, region: Region | None = None) -> set[int]:
        """The marker ids of a run in the database that takes writes now (or a region's)."""


@runtime_checkable
class ReplicaReadiness(Protocol):
    """What the readiness suite asks of a target about its DR database."""

    def replication_running(self) -> ReplicationState:
        """Whether the DR database replicates from the primary now, and why not."""

    def replica_lag(self, timeline: Timeline, rpo_s: float | None = None) -> LagReading:
        """The DR database's lag now, judged against ``rpo_s`` where the target can."""


@runtime_checkable
class GuardedTarget(Protocol):
    """A target with its own safety checks and stop conditions (real accounts)."""

    #: how often stop conditions are polled while a fault is in
    stop_condition_interval_s: float

    def guard(self, fault: Fault, allow_destructive: bool) -> None:
        """SafetyError, before any call, for a fault this target must not inject."""

    def stop_conditions(self, availability: Callable[[], float | None]) -> StopConditions:
        """The conditions that abort a drill (guard alarms, an availability budget)."""


class StopConditions(Protocol):
    """Checked while faults are in: raises DrillError naming what fired."""

    def check(self) -> None:
        """Raise when a stop condition holds."""


@runtime_checkable
class DryRunnable(Protocol):
    """A target that can answer every changing call without sending it, and list them."""

    def set_dry_run(self, dry_run: bool) -> None:
        """Intercept every changing call from now on."""

    def plan(self) -> list[str]:
        """Every call made (or, in a dry run, that would have been), one line each."""


@runtime_checkable
class ResettableStack(Protocol):
    """A stack a drill can bring back to its baseline (the sandbox: reset if it is not)."""

    def ensure_baseline(self) -> None:
        """Primary serving, DR at pilot light, no alarm: as a drill expects to start."""


@runtime_checkable
class BaselineRestoring(Protocol):
    """A stack a drill run leaves at its baseline when the run ends (a sandbox the user brought
    up, which the run found running: a run with ``-k`` may have left it failed over)."""

    def restore_baseline(self, reset: bool = True) -> str | None:
        """Back to the baseline if the run left it changed: one line saying what was restored
        (or a warning that it could not be); None when there was nothing to do. Without
        ``reset`` (an interrupted run), left as it is: the line says what it needs."""


@runtime_checkable
class RecoveryLimited(Protocol):
    """A target where recovery may not happen by itself (an API emulator)."""

    @property
    def cannot_recover(self) -> str | None:
        """Why drills that need real recovery cannot run here; None where they can."""


@runtime_checkable
class ProbeClients(Protocol):
    """A target whose names the probes must resolve its own way (the sandbox's DNS)."""

    def http_client_spec(self) -> ClientSpec:
        """How the probes' process reaches the target (picklable)."""


@runtime_checkable
class LocalApp(Protocol):
    """A target whose app is one process on this machine (the local demo)."""

    def app_process(self) -> psutil.Process | None:
        """The running app process, if any."""


@runtime_checkable
class AlarmReadiness(Protocol):
    """What the readiness suite asks of a target about its alarm and its failover record."""

    def alarm_state(self) -> str:
        """The health alarm's state (``OK``, ``ALARM``, ...)."""

    def alarm_notifies(self) -> bool:
        """Whether the alarm's notifications reach somebody."""

    def primary_record_healthy(self) -> bool:
        """Whether the failover record's primary side answers and is healthy."""


@runtime_checkable
class DrAlarmReadiness(Protocol):
    """A target whose DR region has a health alarm of its own: the one that pages once the
    site is served from DR."""

    def dr_alarm_notifies(self) -> bool | None:
        """Whether the DR region's health alarm notifies somebody; None when none is set."""


@runtime_checkable
class StaticAssetsStack(Protocol):
    """A stack whose static assets replicate across regions (S3 cross-region replication)."""

    def static_assets_replicated(self) -> bool:
        """Whether the primary bucket replicates into the DR region's."""


@runtime_checkable
class LocalHostStack(Protocol):
    """A stack whose processes run on this machine (the sandbox): host-level checks apply."""

    @property
    def lb_port(self) -> int:
        """The port both regions' load balancers listen on."""

    def db_address(self, region: Region) -> tuple[str, int]:
        """A region's database address."""

    def region_ip(self, region: Region) -> str:
        """A region's load balancer address."""


@runtime_checkable
class ModeAware(Protocol):
    """A stack that can say whether its alarm starts the failover by itself now."""

    def failover_mode(self) -> FailoverMode | None:
        """The mode now (None when the stack cannot tell)."""


@runtime_checkable
class ExerciseStack(FailoverStack, ScriptedStack, Protocol):
    """What the quarterly exercise drives: a failover stack, the runbook's scripts, and the
    target's own start, stop and description."""

    def start(self) -> None:
        """Connect to the stack (or bring it up); idempotent."""

    def stop(self) -> None:
        """Release what ``start`` took; idempotent."""

    def describe(self) -> Mapping[str, Any]:
        """What the report says about the target."""


@runtime_checkable
class StaticObject(Protocol):
    """What a bucket says of one object (S3's HeadObject), as :class:`StaticAssetsDrill` reads
    it."""

    @property
    def key(self) -> str:
        """The object's key."""

    @property
    def replication_status(self) -> str | None:
        """``PENDING``, ``COMPLETED``, ``FAILED`` on a source, ``REPLICA`` on a copy; None where
        no replication rule covers the object or the API does not say (moto)."""


@runtime_checkable
class ReplicationMetrics(Protocol):
    """A stack whose bucket replication publishes its own latency (S3's ``ReplicationLatency``
    where replication metrics are on), which the static assets drill puts beside its markers'."""

    def replication_latency(self, start: datetime, end: datetime) -> float | None:
        """The largest latency the platform published from ``start`` to ``end``, seconds;
        None when it published none there."""


@runtime_checkable
class StaticAssetsDrill(StaticAssetsStack, Protocol):
    """A stack whose static assets replication a drill can time: it writes marker objects into
    the primary bucket and looks for each one in the DR bucket (the "Static Assets" RPO)."""

    def static_assets_buckets(self) -> Mapping[Region, str]:
        """Each region's bucket, for the report (``{"primary": ..., "dr": ...}``)."""

    def static_marker_root(self) -> str:
        """The key prefix marker objects go under: one the primary bucket's replication covers
        (``""`` when it covers the whole bucket)."""

    def put_static_marker(self, key: str, body: bytes) -> None:
        """Write one marker object into the primary bucket; returns once it is acknowledged."""

    def static_marker(self, region: Region, key: str) -> StaticObject | None:
        """The marker object in a region's bucket now; None while it is not there (an error,
        never None, when the bucket cannot tell)."""

    def delete_static_markers(self, prefix: str) -> Mapping[Region, int]:
        """Delete every version of every object under ``prefix`` in both buckets; how many
        went from each."""
