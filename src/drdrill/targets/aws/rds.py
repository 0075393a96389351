"""RDS: an instance's state, reboots (with failover only where it is safe), promotion, lag.

Every function takes the region the instance lives in: a cross-region read replica is
described, promoted and measured in its own (the DR) region.

Whether a replica replicates is what RDS says in its ``StatusInfos`` (``read replication``:
``replicating`` and normal, or ``error``/``stopped``/``terminated``...), not merely that it has a
source. Its lag is CloudWatch's ``ReplicaLag``, which is -1 while replication is not active.

When a promotion was asked is RDS's own event on the replica (``DescribeEvents``). moto (5.2)
answers DescribeEvents but records no event for a promotion (nor for a reboot).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from drdrill.errors import DrillError, FaultError, SafetyError
from drdrill.observe import NotObserved
from drdrill.targets.aws import cloudwatch
from drdrill.targets.aws.session import AwsClients
from drdrill.timeline import Timeline, stamp_resolution

#: the ``StatusType`` of a read replica's replication in ``StatusInfos``
READ_REPLICATION = "read replication"
#: the ``Status`` of a replica that is replicating
REPLICATING = "replicating"


@dataclass(frozen=True)
class StatusInfo:
    """One entry of an instance's ``StatusInfos`` (a read replica's replication state)."""

    status_type: str
    status: str
    normal: bool
    message: str | None = None


@dataclass(frozen=True)
class DbInstance:
    """What a drill needs to know of an RDS instance."""

    id: str
    status: str
    multi_az: bool
    #: the source's identifier (an arn for a cross-region replica); None when not a replica
    replica_source: str | None
    #: the DNS name clients connect to; None while the instance is being created
    endpoint: str | None
    engine: str
    #: the instance's read replicas (arns for those in other regions)
    read_replicas: tuple[str, ...] = ()
    port: int | None = None
    arn: str | None = None
    #: what RDS says of the instance's state beyond its status (a replica's replication)
    status_infos: tuple[StatusInfo, ...] = ()

    @property
    def writable(self) -> bool:
        """Available and not replicating from anything."""
        return self.status == "available" and self.replica_source is None

    @property
    def read_replication(self) -> StatusInfo | None:
        """The ``read replication`` entry of ``StatusInfos``; None when RDS reports none."""
        return next((i for i in self.status_infos if i.status_type == READ_REPLICATION), None)


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """An AWS error as a DrillError naming the resource (the API's own words after it)."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "error")
        if code in ("DBInstanceNotFound", "DBInstanceNotFoundFault"):
            raise DrillError(f"{what} not found") from exc
        raise DrillError(f"{what}: {code}: {error.get('Message', str(exc))}") from exc


def _instance(db_id: str, region: str) -> str:
    return f"rds instance '{db_id}' ({region})"


def _status_info(item: dict[str, Any]) -> StatusInfo:
    return StatusInfo(
        status_type=str(item.get("StatusType", "")),
        status=str(item.get("Status", "")),
        normal=bool(item.get("Normal", False)),
        message=item.get("Message") or None,
    )


def _from_api(item: dict[str, Any]) -> DbInstance:
    endpoint = item.get("Endpoint") or {}
    port = endpoint.get("Port")
    return DbInstance(
        id=str(item["DBInstanceIdentifier"]),
        status=str(item.get("DBInstanceStatus", "unknown")),
        multi_az=bool(item.get("MultiAZ", False)),
        replica_source=item.get("ReadReplicaSourceDBInstanceIdentifier") or None,
        endpoint=endpoint.get("Address"),
        engine=str(item.get("Engine", "")),
        read_replicas=tuple(item.get("ReadReplicaDBInstanceIdentifiers", [])),
        port=int(port) if port is not None else None,
        arn=item.get("DBInstanceArn"),
        status_infos=tuple(_status_info(i) for i in item.get("StatusInfos") or []),
    )


def describe_instance(aws: AwsClients, region: str, db_id: str) -> DbInstance:
    """The instance now; a DrillError naming it when it does not exist."""
    with _errors(_instance(db_id, region)):
        answer = aws.client("rds", region).describe_db_instances(DBInstanceIdentifier=db_id)
    found = answer.get("DBInstances", [])
    if not found:
        raise DrillError(f"{_instance(db_id, region)} not found")
    return _from_api(found[0])


def reboot_instance(
    aws: AwsClients, region: str, db_id: str, *, force_failover: bool = False
) -> None:
    """Reboot the instance; with ``force_failover``, fail over to its standby.

    A forced failover is refused with a SafetyError, before anything is sent, when the
    instance is not Multi-AZ: there is no standby, and RDS would answer with an error anyway.
    """
    if force_failover and not describe_instance(aws, region, db_id).multi_az:
        raise SafetyError(f"rds instance '{db_id}' is not multi-az: ForceFailover refused")
    with _errors(_instance(db_id, region)):
        aws.client("rds", region).reboot_db_instance(
            DBInstanceIdentifier=db_id, ForceFailover=force_failover
        )


def promote_read_replica(aws: AwsClients, region: str, db_id: str) -> None:
    """Promote a read replica to a standalone, writable instance (it stops replicating).

    A FaultError, with nothing sent, when the instance is not a replica.
    """
    if describe_instance(aws, region, db_id).replica_source is None:
        raise FaultError(f"rds instance '{db_id}' is not a read replica: nothing to promote")
    with _errors(_instance(db_id, region)):
        aws.client("rds", region).promote_read_replica(DBInstanceIdentifier=db_id)


def failover_cluster(
    aws: AwsClients, region: str, cluster_id: str, target: str | None = None
) -> None:
    """Fail an Aurora/Multi-AZ cluster over to ``target`` (or a reader RDS picks)."""
    params: dict[str, str] = {"DBClusterIdentifier": cluster_id}
    if target is not None:
        params["TargetDBInstanceIdentifier"] = target
    with _errors(f"rds cluster '{cluster_id}' ({region})"):
        aws.client("rds", region).failover_db_cluster(**params)


def cluster_writer(aws: AwsClients, region: str, cluster_id: str) -> str | None:
    """The identifier of the cluster's writer instance (None while it has none)."""
    what = f"rds cluster '{cluster_id}' ({region})"
    with _errors(what):
        answer = aws.client("rds", region).describe_db_clusters(DBClusterIdentifier=cluster_id)
    clusters = answer.get("DBClusters", [])
    if not clusters:
        raise DrillError(f"{what} not found")
    for member in clusters[0].get("DBClusterMembers", []):
        if member.get("IsClusterWriter"):
            return str(member["DBInstanceIdentifier"])
    return None


def is_writable(aws: AwsClients, region: str, db_id: str) -> bool:
    """Whether the instance takes writes: available and not a read replica."""
    return describe_instance(aws, region, db_id).writable


def _wait(
    aws: AwsClients,
    region: str,
    db_id: str,
    *,
    event: str,
    condition: Callable[[DbInstance], bool],
    what: str,
    expect_change: bool,
    timeline: Timeline | None,
    timeout_s: float,
    interval_s: float,
    sleep: Callable[[float], None],
) -> DbInstance:
    """Poll until ``condition`` holds (after first not holding, with ``expect_change``)."""
    clock = timeline.clock.mono if timeline is not None else time.monotonic
    started = clock()
    last = started
    armed = not expect_change
    while True:
        at = clock()
        instance = describe_instance(aws, region, db_id)
        held = condition(instance)
        if held and armed:
            if timeline is not None:
                timeline.observe(
                    event, at, at - last, db_id=db_id, region=region, status=instance.status
                )
            return instance
        armed = armed or not held
        last = at
        if at - started >= timeout_s:
            raise NotObserved(
                f"{_instance(db_id, region)} not {what} after {timeout_s:g} s "
                f"(status {instance.status})"
            )
        sleep(max(0.0, interval_s - (clock() - at)))


def wait_available(
    aws: AwsClients,
    region: str,
    db_id: str,
    *,
    timeline: Timeline | None = None,
    timeout_s: float = 900.0,
    interval_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    expect_change: bool = False,
) -> DbInstance:
    """Poll until the instance's status is ``available``; an observed ``rds_available`` event.

    Right after a reboot or a promotion RDS still says ``available`` for a few seconds: with
    ``expect_change`` the wait first sees some other status, then ``available``. The event is
    stamped at the start of the poll that saw it, with the gap back to the previous poll as its
    uncertainty (back to the start of the wait for the first poll); time comes from the
    timeline's clock, else ``time.monotonic``. :class:`~drdrill.observe.NotObserved` after
    ``timeout_s``.
    """
    return _wait(
        aws,
        region,
        db_id,
        event="rds_available",
        condition=lambda i: i.status == "available",
        what="available",
        expect_change=expect_change,
        timeline=timeline,
        timeout_s=timeout_s,
        interval_s=interval_s,
        sleep=sleep,
    )


def wait_writable(
    aws: AwsClients,
    region: str,
    db_id: str,
    *,
    timeline: Timeline | None = None,
    timeout_s: float = 900.0,
    interval_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> DbInstance:
    """Poll until the instance is writable (a promoted replica done); ``rds_writable`` event.

    The end of the runbook's RDS Promotion phase. Timing as in :func:`wait_available`.
    """
    return _wait(
        aws,
        region,
        db_id,
        event="rds_writable",
        condition=lambda i: i.writable,
        what="writable",
        expect_change=False,
        timeline=timeline,
        timeout_s=timeout_s,
        interval_s=interval_s,
        sleep=sleep,
    )


def _is_instance(reference: str, db_id: str) -> bool:
    """Whether ``reference`` (an identifier, or an arn for another region's) names ``db_id``."""
    return reference == db_id or reference.endswith(f":db:{db_id}")


def replication_problem(instance: DbInstance, source_id: str, region: str) -> str | None:
    """Why ``instance`` does not replicate from ``source_id`` now (one line naming it and the
    replication's state); None when RDS says it is ``replicating`` normally."""
    what = _instance(instance.id, region)
    if instance.replica_source is None:
        return f"{what} is not a read replica"
    if not _is_instance(instance.replica_source, source_id):
        return f"{what} replicates from '{instance.replica_source}', not '{source_id}'"
    info = instance.read_replication
    if info is None:
        return f"{what} reports no '{READ_REPLICATION}' status in StatusInfos"
    if info.status == REPLICATING and info.normal:
        return None
    detail = f": {' '.join(info.message.split())}" if info.message else ""
    normal = "" if info.normal else " (not normal)"
    return f"{what}: read replication is '{info.status}'{normal}{detail}"


def replica_lag(
    aws: AwsClients, region: str, db_id: str, minutes: int = 5
) -> cloudwatch.Datapoint | None:
    """The replica's latest CloudWatch ``ReplicaLag`` minute (its minimum and maximum, seconds).

    None when CloudWatch has no datapoint in the last ``minutes`` (not a replica, metrics not
    published). A value of -1 means replication was not active. ``region`` is the replica's.
    """
    return cloudwatch.latest_datapoint(
        aws,
        region,
        "AWS/RDS",
        "ReplicaLag",
        {"DBInstanceIdentifier": db_id},
        minutes=minutes,
    )


#: what RDS says of a replica's promotion in its events: the promotion itself, or the stop of
#: replication it begins with ("Replication for the Read Replica has been manually stopped",
#: RDS-EVENT-0062). The catalog gives no id of its own to a MySQL replica's promotion, so the
#: message is matched.
PROMOTION_MESSAGE = re.compile(
    r"promot|replication for the read replica has been manually stopped", re.IGNORECASE
)


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


@dataclass(frozen=True)
class RdsEvent:
    """One event RDS recorded about an instance (``DescribeEvents``)."""

    source_id: str
    utc: datetime
    message: str
    categories: tuple[str, ...] = ()

    @property
    def resolution_s(self) -> float:
        """How finely RDS stamped it: a millisecond, or a second when its time has no fraction."""
        return stamp_resolution(self.utc)


def events(aws: AwsClients, region: str, db_id: str, since: datetime) -> list[RdsEvent]:
    """The instance's events RDS recorded at or after ``since`` (it keeps 14 days), oldest
    first. ``region`` is the instance's."""
    client = aws.client("rds", region)
    params: dict[str, Any] = {
        "SourceIdentifier": db_id,
        "SourceType": "db-instance",
        "StartTime": since,
    }
    found: list[RdsEvent] = []
    with _errors(_instance(db_id, region)):
        while True:
            page = client.describe_events(**params)
            for item in page.get("Events", []):
                event = RdsEvent(
                    source_id=str(item.get("SourceIdentifier", "")),
                    utc=_utc(item["Date"]),
                    message=str(item.get("Message", "")),
                    categories=tuple(str(c) for c in item.get("EventCategories", [])),
                )
                # an emulator may ignore the filters
                if event.source_id == db_id and event.utc >= since:
                    found.append(event)
            marker = page.get("Marker")
            if not marker:
                break
            params["Marker"] = marker
    found.sort(key=lambda e: e.utc)
    return found


#: RDS's events of an instance back after a reboot: single-AZ, and a Multi-AZ failover
RESTART_MESSAGE = re.compile(
    r"DB instance restarted|Multi-AZ instance failover completed", re.IGNORECASE
)


def restart_events(aws: AwsClients, region: str, db_id: str, since: datetime) -> list[RdsEvent]:
    """The events of the instance coming back from a reboot since ``since``, oldest first (see
    :data:`RESTART_MESSAGE`)."""
    return [e for e in events(aws, region, db_id, since) if RESTART_MESSAGE.search(e.message)]


def promotion_events(aws: AwsClients, region: str, db_id: str, since: datetime) -> list[RdsEvent]:
    """The events of the replica's promotion since ``since``, oldest first (see
    :data:`PROMOTION_MESSAGE`)."""
    return [e for e in events(aws, region, db_id, since) if PROMOTION_MESSAGE.search(e.message)]
