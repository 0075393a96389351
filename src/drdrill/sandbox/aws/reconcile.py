"""Keep moto's state true to the sandbox's processes, and the processes to the API's calls.

Every ``interval`` the reconciler copies what the data plane does into moto's models, and a
read of ECS's tasks and services or of a target group's health is brought up to date first:

- ECS: each task the scheduler ran is a task of the service (``RUNNING`` once it listens,
  ``STOPPED`` once its process is gone) with the real ``startedAt``/``stoppedAt``; the service's
  desired, running and pending counts are the scheduler's; the service's events are written as
  ECS writes them (``has started 1 tasks``, ``has stopped 1 running tasks``, ``has reached a
  steady state``), stamped when the scheduler did it.
- ELBv2: the target group's targets are the live tasks, and ``DescribeTargetHealth`` answers
  from HAProxy's own health checks.

And the calls that act: ``StopTask`` stops that task's process (SIGTERM, as ECS does);
``UpdateService`` with ``desiredCount`` sets the scheduler's desired count.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from moto.backends import get_backend
from moto.ecs.models import Task

from drdrill.sandbox.aws.endpoint import ApiError, Call, HookedApp
from drdrill.sandbox.aws.provision import MOTO_ACCOUNT, record_rds_event

#: the account every sandbox resource lives in (moto's default)
ACCOUNT = MOTO_ACCOUNT

#: HAProxy's first status word -> (ELBv2 state, reason, description)
_HEALTH: dict[str, tuple[str, str | None, str | None]] = {
    "UP": ("healthy", None, None),
    "DOWN": ("unhealthy", "Target.FailedHealthChecks", "Health checks failed"),
    "DRAIN": (
        "draining",
        "Target.DeregistrationInProgress",
        "Target deregistration is in progress",
    ),
    "MAINT": ("unused", "Target.NotInUse", "Target is in maintenance"),
    "NOLB": ("draining", "Target.DeregistrationInProgress", "Target deregistration is in progress"),
}


class TaskView(Protocol):
    """What the reconciler reads of one scheduler task (``ecs.TaskState``)."""

    task_id: str
    ip: str
    port: int
    state: str
    spawned_mono: float
    listening_mono: float | None
    stopped_mono: float | None
    returncode: int | None


class SchedulerView(Protocol):
    """What the reconciler reads and drives of a region's ECS scheduler."""

    @property
    def desired(self) -> int:
        """The desired count."""
        ...

    def set_desired(self, count: int) -> None:
        """Change the desired count."""
        ...

    def stop_task(self, task_id: str, mode: Any = "graceful", reason: str = "") -> bool:
        """Stop one task."""
        ...

    def tasks(self) -> list[Any]:
        """Every task, live and recently stopped."""
        ...

    def is_steady(self) -> bool:
        """Running == desired and every task listening."""
        ...


class LoadBalancerView(Protocol):
    """What the reconciler reads of a region's HAProxy."""

    def servers(self) -> list[Any]:
        """Every registered server with its state."""
        ...


@dataclass
class RegionPlane:
    """One region's data plane and its names in the API."""

    key: str  # primary | dr
    region: str  # eu-west-1
    cluster: str
    service: str
    target_group_arn: str
    scheduler: SchedulerView
    lb: LoadBalancerView
    #: the region's RDS instance and its ``mariadbd``
    db_instance_id: str = ""
    #: restart the region's database for real: ``clean`` (shutdown, start) or ``crash``
    #: (kill -9, start: a Multi-AZ failover's loss of the old primary)
    reboot_db: Callable[[str], Any] | None = None
    db_running: Callable[[], bool] | None = None
    #: the health alarm and the monitor that evaluates it (``.state``, ``.history`` of
    #: changes with their ``state``, ``utc`` and ``reason``)
    alarm_name: str = ""
    monitor: Any = None
    #: a read replica's ``SHOW SLAVE STATUS`` (``io_state``, ``sql_state``,
    #: ``seconds_behind_master``), None when it replicates from nobody
    replication: Callable[[], Any] | None = None
    #: the region's load balancer (its ``HealthyHostCount`` metric's LoadBalancer dimension)
    load_balancer_arn: str = ""


@dataclass
class BucketReplication:
    """The primary's assets bucket replicated to the DR's, as S3 cross-region replication does:
    each new object is ``PENDING``; ``delay_s`` after its write its copy is sent, then it is
    ``COMPLETED`` (its copy ``REPLICA``); while ``link_up()`` is False no copy is sent.

    ``carry(key, data)``, when given, sends the copy over the inter-region link and returns once
    the DR bucket has it (:mod:`drdrill.sandbox.aws.assets`: the copy takes the link's latency
    and waits out its partitions; the receiver puts it in the DR bucket); it raises when the
    copy did not get there, and the copy is sent again ``delay_s`` later. Without it the copy
    is made in place, in the reconciler's pass."""

    source: str
    destination: str
    delay_s: float
    link_up: Callable[[], bool]
    #: the source bucket's region, and the rule's id: S3's ``ReplicationLatency`` is published
    #: there, by source, destination and rule
    region: str = "eu-west-1"
    rule_id: str = "assets-to-dr"
    carry: Callable[[str, bytes], None] | None = None


#: buckets whose new objects S3 replicates (their objects are PENDING until copied)
_REPLICATED_SOURCES: set[str] = set()


def _install_replication_status() -> None:
    """moto's HeadObject/GetObject headers with ``x-amz-replication-status`` when the sandbox
    set one on the key (moto keeps none)."""
    from moto.s3.models import FakeKey

    if getattr(FakeKey, "_sandbox_replication_installed", False):
        return
    plain = FakeKey.response_dict

    def response_dict(self: Any) -> dict[str, Any]:
        answer: dict[str, Any] = plain.fget(self)  # type: ignore[attr-defined]
        status = getattr(self, "sandbox_replication_status", None)
        if status is None and getattr(self, "bucket_name", None) in _REPLICATED_SOURCES:
            status = "PENDING"  # S3 says so from the PUT on; the copy comes later
        if status:
            answer["x-amz-replication-status"] = status
        return answer

    FakeKey.response_dict = property(response_dict)  # type: ignore[assignment,method-assign]
    FakeKey._sandbox_replication_installed = True  # type: ignore[attr-defined]


#: (region, alarm name) -> the alarm's state changes as DescribeAlarmHistory items
_ALARM_HISTORY: dict[tuple[str, str], list[dict[str, Any]]] = {}


def _describe_alarm_history(self: Any) -> Any:
    """moto 5.2 has no DescribeAlarmHistory: answered from the sandbox monitor's history,
    through moto's own serializer (newest first, as CloudWatch lists them)."""
    from moto.core.responses import ActionResult

    name = self._get_param("AlarmName")
    items = [
        item
        for (region, alarm), history in list(_ALARM_HISTORY.items())
        if region == self.region and (name is None or alarm == name)
        for item in history
    ]
    items.sort(key=lambda item: item["Timestamp"], reverse=True)
    return ActionResult({"AlarmHistoryItems": items})


def _install_alarm_history() -> None:
    from moto.cloudwatch.responses import CloudWatchResponse

    CloudWatchResponse.describe_alarm_history = _describe_alarm_history  # type: ignore[attr-defined]


def _since_written(key: Any) -> float:
    """Seconds from an object's write (its ``LastModified``) to now: its replication latency."""
    written: datetime = key.last_modified
    written = written if written.tzinfo else written.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - written).total_seconds())


def utc_of(mono: float) -> datetime:
    """The wall-clock moment of a ``time.monotonic()`` reading."""
    return datetime.fromtimestamp(time.time() - time.monotonic() + mono, UTC)


class SandboxTask(Task):
    """A moto ECS task whose status is what the reconciler sets, never moto's progression.

    The times moto does not keep are attributes its serializer finds by their shape's names.
    """

    created_at: datetime
    started_at: datetime
    stopped_at: datetime
    sandbox_task_id: str

    @property
    def status(self) -> str | None:
        """The task's last status as the data plane has it."""
        return self._sandbox_status

    @status.setter
    def status(self, value: str) -> None:
        self._sandbox_status = value


@dataclass
class _Mirror:
    """One scheduler task and the moto task that stands for it."""

    model: SandboxTask
    last_state: str = ""
    events: set[str] = field(default_factory=set)


_HOLDS = threading.Lock()


def hold_while(instance: Any, status: str, work: Callable[[], None]) -> None:
    """Run ``work`` in the background with the RDS ``instance``'s status held at ``status``
    (``rebooting``, ``modifying``) until it ends, as RDS shows a change in progress; refused
    with RDS's own error while another such change holds the instance."""
    with _HOLDS:
        if getattr(instance, "sandbox_status_hold", None):
            raise ApiError(
                "InvalidDBInstanceState",
                f"DB instance {instance.db_instance_identifier} is not in available state.",
            )
        instance.sandbox_status_hold = instance.status = status

    def run() -> None:
        try:
            work()
        finally:
            instance.sandbox_status_hold = None

    name = f"{status}-{instance.db_instance_identifier}"
    threading.Thread(target=run, name=name, daemon=True).start()


class Reconciler:
    """Copies the data plane into moto and routes the acting calls to the data plane."""

    #: how often the replicas' state is read and ``ReplicaLag`` published (seconds)
    replica_period = 1.0

    def __init__(
        self,
        app: HookedApp,
        regions: Mapping[str, RegionPlane],
        interval: float = 0.05,
        cloudwatch: Callable[[str], Any] | None = None,
        assets: BucketReplication | None = None,
    ) -> None:
        """``cloudwatch(region)`` is a CloudWatch client of the endpoint (metrics are put
        through the API, as RDS and the load balancers publish theirs)."""
        self.regions = dict(regions)
        self._cloudwatch = cloudwatch
        self.assets = assets
        #: more work of each pass (the failover mode from the alarm's actions)
        self.each_pass: list[Callable[[], None]] = []
        self._pending: dict[str, float] = {}  # source key -> when its copy is due (monotonic)
        #: source keys whose copy is crossing the link; the latencies of copies completed since
        #: the last pass (published as S3's ReplicationLatency)
        self._carrying: set[str] = set()
        self._copied: list[float] = []
        if assets is not None:
            _install_replication_status()
            _REPLICATED_SOURCES.add(assets.source)
        self._replica_due: dict[str, float] = {}
        self.interval = interval
        self._mirrors: dict[str, dict[str, _Mirror]] = {k: {} for k in regions}
        self._by_arn: dict[str, tuple[str, str]] = {}  # moto task id -> (region key, task id)
        self._health: dict[str, dict[str, tuple[str, str | None, str | None]]] = {}
        self._steady: dict[str, bool] = {}
        self._lock = threading.RLock()
        #: held while ECS and the target group are mirrored (inside ``_lock`` in a pass, alone
        #: for a read): a read does not wait behind a pass's slower work (a replica's status)
        self._ecs_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: errors of the last passes (one line each, newest last), for ``sandbox status``
        self.errors: list[str] = []
        app.before("ecs", "StopTask", self._stop_task)
        app.before("rds", "RebootDBInstance", self._reboot_db)
        _install_alarm_history()
        self._alarm_seen: dict[str, int] = {}
        app.before("ecs", "UpdateService", self._update_service)
        for service, action in (
            ("ecs", "ListTasks"),
            ("ecs", "DescribeTasks"),
            ("ecs", "DescribeServices"),
            ("elasticloadbalancing", "DescribeTargetHealth"),  # ELBv2 signs as this
        ):
            app.before(service, action, self._refresh, logged=False)

    # --- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Mirror once, hook the target groups' health, then keep mirroring in a thread."""
        for plane in self.regions.values():
            self._hook_health(plane)
        self.sync()
        self._thread = threading.Thread(target=self._run, name="aws-reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop mirroring."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sync()
            except Exception as exc:  # one bad pass must not end the mirror
                self.errors = [*self.errors[-9:], f"{type(exc).__name__}: {exc}"]

    # --- moto's models -------------------------------------------------------------------------

    @staticmethod
    def _ecs(plane: RegionPlane) -> Any:
        return get_backend("ecs")[ACCOUNT][plane.region]

    @staticmethod
    def _elbv2(plane: RegionPlane) -> Any:
        return get_backend("elbv2")[ACCOUNT][plane.region]

    def sync(self) -> None:
        """One pass over every region."""
        with self._lock:
            for key, plane in self.regions.items():
                self._sync_region(key, plane)
            if self.assets is not None:
                self._sync_assets(self.assets)
            for work in self.each_pass:
                work()

    # --- S3 -------------------------------------------------------------------------------------

    def _sync_assets(self, rule: BucketReplication) -> None:
        backend = get_backend("s3")[ACCOUNT]["global"]
        source = backend.buckets.get(rule.source)
        destination = backend.buckets.get(rule.destination)
        if source is None or destination is None:
            return
        now = time.monotonic()
        latencies: list[float] = []
        for name in list(source.keys.keys()):
            key = source.keys.get(name)
            if key is None or getattr(key, "sandbox_replication_status", None) == "COMPLETED":
                continue
            if getattr(key, "sandbox_replication_status", None) is None:
                key.sandbox_replication_status = "PENDING"
                self._pending[name] = now + rule.delay_s
            if name in self._carrying:
                continue  # on its way across the link
            if now < self._pending.get(name, now) or not rule.link_up():
                continue
            if rule.carry is not None:
                self._carrying.add(name)
                threading.Thread(
                    target=self._carry, args=(rule, name, key), name="s3-copy", daemon=True
                ).start()
                continue
            copy = backend.put_object(rule.destination, name, key.value)
            copy.sandbox_replication_status = "REPLICA"  # type: ignore[attr-defined]
            key.sandbox_replication_status = "COMPLETED"
            self._pending.pop(name, None)
            latencies.append(_since_written(key))
        latencies += self._copied  # copies that crossed the link since the last pass
        self._copied = []
        for name in [n for n in self._pending if n not in source.keys]:
            self._pending.pop(name, None)  # deleted before it was copied
        if latencies and self._cloudwatch is not None:
            # S3's replication metric, as S3 publishes it where replication metrics are on
            self._cloudwatch(rule.region).put_metric_data(
                Namespace="AWS/S3",
                MetricData=[
                    {
                        "MetricName": "ReplicationLatency",
                        "Dimensions": [
                            {"Name": "SourceBucket", "Value": rule.source},
                            {"Name": "DestinationBucket", "Value": rule.destination},
                            {"Name": "RuleId", "Value": rule.rule_id},
                        ],
                        "Timestamp": datetime.now(UTC),
                        "Value": max(latencies),
                        "Unit": "Seconds",
                    }
                ],
            )

    def _carry(self, rule: BucketReplication, name: str, key: Any) -> None:
        """Send one copy across the link (a thread of its own): ``COMPLETED`` once the DR
        bucket has it, else sent again ``delay_s`` later."""
        assert rule.carry is not None
        try:
            rule.carry(name, bytes(key.value))
        except Exception:  # the link closed it or the DR region refused it: S3 retries
            with self._lock:
                self._pending[name] = time.monotonic() + rule.delay_s
                self._carrying.discard(name)
            return
        latency = _since_written(key)
        with self._lock:
            key.sandbox_replication_status = "COMPLETED"
            self._pending.pop(name, None)
            self._copied.append(latency)
            self._carrying.discard(name)

    def _sync_region(self, key: str, plane: RegionPlane) -> None:
        with self._ecs_lock:
            self._sync_ecs(key, plane)
        self._sync_db(key, plane)
        self._sync_alarm(key, plane)
        now = time.monotonic()
        if now >= self._replica_due.get(key, 0.0):
            self._replica_due[key] = now + self.replica_period
            if plane.replication is not None:
                self._sync_replica(plane)
            self._publish_target_counts(key, plane)

    def _refresh(self, call: Call) -> None:
        """Bring the ECS service, its tasks and the target group's health up to the moment of
        a read of them: an answer as old as the last pass lagged the processes by up to a pass
        (a drill's ECS Scale-up on a busy machine ended 120 ms after HAProxy's log)."""
        for key, plane in self.regions.items():
            if plane.region == call.region:
                with self._ecs_lock:
                    self._sync_ecs(key, plane)

    def _sync_ecs(self, key: str, plane: RegionPlane) -> None:
        """The service, its tasks and events, and the target group's targets and health."""
        backend = self._ecs(plane)
        service = backend.services[f"{plane.cluster}:{plane.service}"]
        cluster = backend.clusters[plane.cluster]
        mirrors = self._mirrors[key]
        tasks = plane.scheduler.tasks()
        running = pending = 0
        for task in tasks:
            mirror = mirrors.get(task.task_id)
            if mirror is None:
                mirror = self._new_task(plane, backend, cluster, service, task)
                mirrors[task.task_id] = mirror
            self._update_task(plane, service, mirror, task)
            if mirror.model.status == "RUNNING":
                running += 1
            elif mirror.model.status in ("PROVISIONING", "PENDING", "ACTIVATING"):
                pending += 1
        service.desired_count = plane.scheduler.desired
        service.running_count = running
        service.pending_count = pending
        for deployment in getattr(service, "deployments", []):
            deployment["desiredCount"] = service.desired_count
            deployment["runningCount"] = running
            deployment["pendingCount"] = pending
        steady = plane.scheduler.is_steady()
        if steady and not self._steady.get(key, False):
            self._event(service, f"(service {plane.service}) has reached a steady state.")
        self._steady[key] = steady
        self._sync_targets(key, plane, tasks)

    def _sync_replica(self, plane: RegionPlane) -> None:
        """The replica's ``read replication`` StatusInfos and its ``ReplicaLag`` datapoint."""
        assert plane.replication is not None
        instance = self._rds(plane).databases.get(plane.db_instance_id)
        if instance is None:
            return
        try:
            status = plane.replication()
        except Exception:
            status = "unreachable"
        lag = -1.0
        replica = bool(getattr(instance, "source_db_instance_identifier", None))
        if status == "unreachable" and not replica:
            info = None  # a database that is no replica, down: no read replication entry
        elif status == "unreachable":
            info = {"Status": "error", "Normal": False, "Message": "replica unreachable"}
        elif status is None:
            info = None  # not a replica (promoted): RDS reports no read replication entry
        elif status.io_state == "Yes" and status.sql_state == "Yes":
            info = {"Status": "replicating", "Normal": True}
            if status.seconds_behind_master is not None:
                lag = float(status.seconds_behind_master)
        elif status.sql_state != "Yes":
            info = {"Status": "stopped", "Normal": False, "Message": "SQL thread not running"}
        else:
            info = {
                "Status": "replication degraded",
                "Normal": False,
                "Message": f"IO thread {status.io_state}",
            }
        # an attribute moto's model does not declare, read by its response serializer
        setattr(  # noqa: B010
            instance,
            "status_infos",
            [] if info is None else [{"StatusType": "read replication", **info}],
        )
        if self._cloudwatch is not None and info is not None:
            self._cloudwatch(plane.region).put_metric_data(
                Namespace="AWS/RDS",
                MetricData=[
                    {
                        "MetricName": "ReplicaLag",
                        "Dimensions": [
                            {"Name": "DBInstanceIdentifier", "Value": plane.db_instance_id}
                        ],
                        "Timestamp": datetime.now(UTC),
                        "Value": lag,
                        "Unit": "Seconds",
                    }
                ],
            )

    # --- CloudWatch -----------------------------------------------------------------------------

    def _publish_target_counts(self, key: str, plane: RegionPlane) -> None:
        """The load balancer's ``HealthyHostCount`` and ``UnHealthyHostCount`` (AWS/ApplicationELB,
        by target group and load balancer, as the health alarm watches them), once a period,
        from HAProxy's own checks of the registered targets."""
        if self._cloudwatch is None or not plane.load_balancer_arn:
            return
        states = [state for state, _, _ in self._health.get(key, {}).values()]
        dimensions = [
            {"Name": "TargetGroup", "Value": plane.target_group_arn.split(":")[-1]},
            {"Name": "LoadBalancer", "Value": plane.load_balancer_arn.split(":loadbalancer/")[-1]},
        ]
        when = datetime.now(UTC)
        self._cloudwatch(plane.region).put_metric_data(
            Namespace="AWS/ApplicationELB",
            MetricData=[
                {
                    "MetricName": name,
                    "Dimensions": dimensions,
                    "Timestamp": when,
                    "Value": float(count),
                    "Unit": "Count",
                }
                for name, count in (
                    ("HealthyHostCount", states.count("healthy")),
                    ("UnHealthyHostCount", states.count("unhealthy")),
                )
            ],
        )

    def _sync_alarm(self, key: str, plane: RegionPlane) -> None:
        if plane.monitor is None or not plane.alarm_name:
            return
        backend = get_backend("cloudwatch")[ACCOUNT][plane.region]
        alarm = backend.alarms.get(plane.alarm_name)
        if alarm is None:
            return
        history = list(plane.monitor.history)
        items = _ALARM_HISTORY.setdefault((plane.region, plane.alarm_name), [])
        seen = self._alarm_seen.get(key, 0)
        previous = history[seen - 1].state if seen else "INSUFFICIENT_DATA"
        if seen == 0 and alarm.state_value != "OK" and not history:
            # the monitor starts in OK: so does the alarm, as one whose metric is fine
            alarm.update_state("sandbox monitor started", "{}", "OK")
            alarm.state_updated_timestamp = datetime.now(UTC)
        for change in history[seen:]:
            old, previous = previous, change.state
            summary = f"Alarm updated from {old} to {change.state}"
            data = {
                "version": "1.0",
                "oldState": {"stateValue": old},
                "newState": {"stateValue": change.state, "stateReason": change.reason},
            }
            items.append(
                {
                    "AlarmName": plane.alarm_name,
                    "AlarmType": "MetricAlarm",
                    "Timestamp": change.utc,
                    "HistoryItemType": "StateUpdate",
                    "HistorySummary": summary,
                    "HistoryData": json.dumps(data),
                }
            )
            alarm.update_state(change.reason, json.dumps(data), change.state)
            alarm.state_updated_timestamp = change.utc
        self._alarm_seen[key] = len(history)

    # --- RDS ------------------------------------------------------------------------------------

    @staticmethod
    def _rds(plane: RegionPlane) -> Any:
        return get_backend("rds")[ACCOUNT][plane.region]

    def _sync_db(self, key: str, plane: RegionPlane) -> None:
        if not plane.db_instance_id or plane.db_running is None:
            return
        instance = self._rds(plane).databases.get(plane.db_instance_id)
        if instance is None:
            return
        hold = getattr(instance, "sandbox_status_hold", None)
        if hold:  # a change the sandbox is making (hold_while): rebooting, modifying
            instance.status = hold
        elif plane.db_running():
            instance.status = "available"
        else:
            instance.status = "failed"  # its process is gone (a region down)

    def _rds_event(self, plane: RegionPlane, message: str, category: str) -> None:
        record_rds_event(plane.region, plane.db_instance_id, message, category, datetime.now(UTC))

    def _reboot_db(self, call: Call) -> None:
        db_id = str(call.params.get("DBInstanceIdentifier", ""))
        plane = next(
            (
                p
                for p in self.regions.values()
                if p.db_instance_id == db_id and p.region == call.region
            ),
            None,
        )
        if plane is None or plane.reboot_db is None:
            return  # moto answers (a no-op, or its own error for an unknown instance)
        instance = self._rds(plane).databases.get(db_id)
        if instance is None:
            return  # deleted (a failback rebuilds it): moto answers DBInstanceNotFound
        failover = str(call.params.get("ForceFailover", "false")).lower() == "true"
        hold_while(instance, "rebooting", lambda: self._do_reboot(plane, failover))

    def _do_reboot(self, plane: RegionPlane, failover: bool) -> None:
        assert plane.reboot_db is not None
        if failover:
            self._rds_event(plane, "Multi-AZ instance failover started.", "failover")
        else:
            self._rds_event(plane, "DB instance shutdown", "availability")
        try:
            plane.reboot_db("crash" if failover else "clean")
        except Exception as exc:
            self.errors = [*self.errors[-9:], f"reboot {plane.db_instance_id}: {exc}"]
            return
        if failover:
            self._rds_event(plane, "Multi-AZ instance failover completed", "failover")
        else:
            self._rds_event(plane, "DB instance restarted", "availability")

    def _new_task(
        self, plane: RegionPlane, backend: Any, cluster: Any, service: Any, task: TaskView
    ) -> _Mirror:
        definition = backend.describe_task_definition(str(service.task_definition))
        network = service.network_configuration or None
        model = SandboxTask(
            cluster=cluster,
            task_definition=definition,
            container_instance_arn=None,
            resource_requirements=None,
            backend=backend,
            group=f"service:{plane.service}",
            launch_type="FARGATE",
            started_by=f"ecs-svc/{abs(hash(plane.service)) % 10**16:016d}",
            networking_configuration=network,
        )
        model.status = "PROVISIONING"
        model.created_at = utc_of(task.spawned_mono)
        model.sandbox_task_id = task.task_id
        attachments: list[Any] = list(model.attachments)
        for attachment in attachments:  # the task's real address, not moto's random one
            for detail in attachment.get("details", []):
                if detail.get("name") == "privateIPv4Address":
                    detail["value"] = task.ip
        backend.tasks.setdefault(cluster.name, {})[model.task_arn] = model
        self._by_arn[model.id] = (plane.key, task.task_id)
        return _Mirror(model=model)

    def _update_task(
        self, plane: RegionPlane, service: Any, mirror: _Mirror, task: TaskView
    ) -> None:
        model = mirror.model
        if task.state == mirror.last_state:
            return
        mirror.last_state = task.state
        short = model.id
        if task.state == "starting":
            model.status = "PENDING"
            self._once(mirror, service, "started", task.spawned_mono, plane, short)
        elif task.state == "running":
            model.status = "RUNNING"
            model.desired_status = "RUNNING"
            if task.listening_mono is not None:
                model.started_at = utc_of(task.listening_mono)
            model.containers[0].last_status = "RUNNING"
            self._once(mirror, service, "started", task.spawned_mono, plane, short)
        elif task.state == "stopping":
            model.status = "DEACTIVATING"
            model.desired_status = "STOPPED"
            self._once(mirror, service, "stopped", None, plane, short)
        elif task.state == "stopped":
            model.status = "STOPPED"
            model.desired_status = "STOPPED"
            if task.stopped_mono is not None:
                model.stopped_at = utc_of(task.stopped_mono)
            if not model.stopped_reason:
                model.stopped_reason = (
                    "Essential container in task exited"
                    if task.returncode not in (0, None)
                    else "Task stopped by the scheduler"
                )
            model.containers[0].last_status = "STOPPED"
            self._once(mirror, service, "stopped", task.stopped_mono, plane, short)

    def _once(
        self,
        mirror: _Mirror,
        service: Any,
        kind: str,
        mono: float | None,
        plane: RegionPlane,
        task_id: str,
    ) -> None:
        if kind in mirror.events:
            return
        mirror.events.add(kind)
        verb = "has started 1 tasks" if kind == "started" else "has stopped 1 running tasks"
        when = utc_of(mono) if mono is not None else datetime.now(UTC)
        self._event(service, f"(service {plane.service}) {verb}: (task {task_id}).", when)

    @staticmethod
    def _event(service: Any, message: str, when: datetime | None = None) -> None:
        # newest first, as DescribeServices lists them
        service.events.insert(
            0, {"id": str(uuid.uuid4()), "createdAt": when or datetime.now(UTC), "message": message}
        )

    # --- ELBv2 ----------------------------------------------------------------------------------

    def _sync_targets(self, key: str, plane: RegionPlane, tasks: list[Any]) -> None:
        group = self._elbv2(plane).target_groups[plane.target_group_arn]
        health: dict[str, tuple[str, str | None, str | None]] = {}
        for server in plane.lb.servers():
            health[str(server.ip)] = _HEALTH.get(
                str(server.state), ("initial", "Elb.RegistrationInProgress", str(server.status))
            )
        self._health[key] = health
        live = {t.ip: t.port for t in tasks if t.state in ("starting", "running")}
        for ip, port in live.items():
            group.targets[ip] = {"Id": ip, "Port": port}
            group.deregistered_targets.pop(ip, None)
        for ip in [ip for ip in group.targets if ip not in live]:
            group.deregistered_targets[ip] = group.targets.pop(ip)

    def _hook_health(self, plane: RegionPlane) -> None:
        from moto.elbv2.models import FakeHealthStatus

        group = self._elbv2(plane).target_groups[plane.target_group_arn]
        key = plane.key
        original: Callable[..., Any] = group.health_for

        def health_for(target: dict[str, Any], ec2_backend: Any) -> Any:
            t = group.targets.get(target["Id"])
            if t is None:
                return original(target, ec2_backend)
            state, reason, description = self._health.get(key, {}).get(
                str(target["Id"]),
                ("initial", "Elb.RegistrationInProgress", "Target registration is in progress"),
            )
            return FakeHealthStatus(
                t["Id"], t["Port"], group.health_check_port, state, reason, description
            )

        group.health_for = health_for

    # --- the calls that act ---------------------------------------------------------------------

    def _stop_task(self, call: Call) -> None:
        task = str(call.params.get("task", ""))
        found = self._by_arn.get(task.rsplit("/", 1)[-1])
        if found is None:
            return  # moto answers: not a task of the sandbox's services
        key, task_id = found
        reason = str(call.params.get("reason", "")) or "Task stopped by user"
        with self._lock:
            plane = self.regions[key]
            mirror = self._mirrors[key].get(task_id)
            if mirror is not None:
                mirror.model.stopped_reason = reason
            if not plane.scheduler.stop_task(task_id, "graceful", reason=reason):
                return  # already stopping: moto answers with the task as it is

    def _update_service(self, call: Call) -> None:
        if "desiredCount" not in call.params:
            return
        for plane in self.regions.values():
            if plane.region != call.region:
                continue
            name = str(call.params.get("service", "")).rsplit("/", 1)[-1]
            cluster = str(call.params.get("cluster", "default")).rsplit("/", 1)[-1]
            if name == plane.service and cluster == plane.cluster:
                try:
                    plane.scheduler.set_desired(int(call.params["desiredCount"]))
                except Exception as exc:
                    raise ApiError("InvalidParameterException", str(exc)) from exc
