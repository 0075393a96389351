"""The RDS adapter against the moto server, judged by the state it leaves there.

What moto does: instances are ``available`` at once; a cross-region read replica (created in the
DR region from the primary's arn) copies the primary, Multi-AZ flag included; a reboot, with or
without ForceFailover, changes nothing; a promoted replica stays ``available`` and KEEPS its
``ReadReplicaSourceDBInstanceIdentifier`` (and the primary keeps listing it), so it never looks
writable; ``StopDBInstance``/``StartDBInstance`` do change the status; ``FailoverDBCluster``
swaps the writer at once; ``ReplicaLag`` is whatever datapoints a test puts into CloudWatch; no
instance has ``StatusInfos`` (tests supply a replica's, see ``provision.set_read_replication``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from drdrill.errors import DrillError, FaultError, SafetyError
from drdrill.observe import NotObserved
from drdrill.sandbox.aws.provision import put_replica_lag, set_read_replication
from drdrill.targets.aws import rds
from drdrill.targets.aws.session import AwsClients
from drdrill.timeline import Clock, Timeline

PRIMARY = "eu-west-1"
DR = "eu-central-1"


@dataclass(frozen=True)
class Pair:
    """A MySQL primary in the primary region and its read replica in the DR region."""

    primary: str
    primary_arn: str
    replica: str
    replica_arn: str


def _primary(aws: AwsClients, *, multi_az: bool) -> tuple[str, str]:
    db_id = f"visitors-{uuid.uuid4().hex[:10]}"
    created = aws.client("rds", PRIMARY).create_db_instance(
        DBInstanceIdentifier=db_id,
        Engine="mysql",
        DBInstanceClass="db.t3.micro",
        MasterUsername="admin",
        MasterUserPassword="drill-password-1",
        AllocatedStorage=20,
        MultiAZ=multi_az,
        BackupRetentionPeriod=1,
    )["DBInstance"]
    return db_id, str(created["DBInstanceArn"])


def _pair(aws: AwsClients, *, multi_az: bool = True) -> Pair:
    primary, primary_arn = _primary(aws, multi_az=multi_az)
    replica = f"{primary}-dr"
    created = aws.client("rds", DR).create_db_instance_read_replica(
        DBInstanceIdentifier=replica,
        SourceDBInstanceIdentifier=primary_arn,
        DBInstanceClass="db.t3.micro",
    )["DBInstance"]
    return Pair(primary, primary_arn, replica, str(created["DBInstanceArn"]))


class FakeTime:
    """A monotonic clock that moves only when the code under test sleeps."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def mono(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def timeline(self) -> Timeline:
        return Timeline(Clock(mono=self.mono, wall=lambda: 1_700_000_000.0 + self.now))


def _operations(aws: AwsClients, operation: str) -> list[tuple[str, dict[str, object], bool]]:
    return [(c.region, c.params, c.sent) for c in aws.log.calls if c.operation == operation]


def test_describe_a_primary_and_its_cross_region_replica(aws: AwsClients) -> None:
    pair = _pair(aws)

    primary = rds.describe_instance(aws, PRIMARY, pair.primary)
    replica = rds.describe_instance(aws, DR, pair.replica)

    assert (primary.id, primary.status, primary.engine) == (pair.primary, "available", "mysql")
    assert primary.multi_az
    assert primary.replica_source is None
    assert primary.read_replicas == (pair.replica_arn,)
    assert primary.endpoint is not None and PRIMARY in primary.endpoint
    assert primary.port == 3306
    assert primary.arn == pair.primary_arn
    assert replica.replica_source == pair.primary_arn
    assert replica.read_replicas == ()
    assert replica.endpoint is not None and DR in replica.endpoint
    assert rds.is_writable(aws, PRIMARY, pair.primary)
    assert not rds.is_writable(aws, DR, pair.replica)


def test_a_missing_instance_is_a_drill_error_naming_it(aws: AwsClients) -> None:
    with pytest.raises(DrillError, match=r"^rds instance 'no-such-db' \(eu-west-1\) not found$"):
        rds.describe_instance(aws, PRIMARY, "no-such-db")


def test_force_failover_on_a_single_az_instance_is_refused_before_any_call(
    aws: AwsClients,
) -> None:
    db_id, _ = _primary(aws, multi_az=False)

    with pytest.raises(SafetyError) as raised:
        rds.reboot_instance(aws, PRIMARY, db_id, force_failover=True)

    assert str(raised.value) == f"rds instance '{db_id}' is not multi-az: ForceFailover refused"
    assert not [c for c in aws.log.calls if c.operation == "RebootDBInstance"]
    assert {
        c.operation for c in aws.log.calls if c.params.get("DBInstanceIdentifier") == db_id
    } == {
        "CreateDBInstance",
        "DescribeDBInstances",
    }


def test_force_failover_on_a_multi_az_instance_is_sent(aws: AwsClients) -> None:
    db_id, _ = _primary(aws, multi_az=True)

    rds.reboot_instance(aws, PRIMARY, db_id, force_failover=True)

    assert _operations(aws, "RebootDBInstance") == [
        (PRIMARY, {"DBInstanceIdentifier": db_id, "ForceFailover": True}, True)
    ]
    # moto's reboot is a no-op: the instance is still (or again) available
    assert rds.describe_instance(aws, PRIMARY, db_id).status == "available"


def test_a_plain_reboot_of_a_single_az_instance_is_sent(aws: AwsClients) -> None:
    db_id, _ = _primary(aws, multi_az=False)

    rds.reboot_instance(aws, PRIMARY, db_id)

    assert _operations(aws, "RebootDBInstance") == [
        (PRIMARY, {"DBInstanceIdentifier": db_id, "ForceFailover": False}, True)
    ]


def test_promote_read_replica_sends_the_promotion_in_the_dr_region(aws: AwsClients) -> None:
    pair = _pair(aws)

    rds.promote_read_replica(aws, DR, pair.replica)

    assert _operations(aws, "PromoteReadReplica") == [
        (DR, {"DBInstanceIdentifier": pair.replica}, True)
    ]
    after = rds.describe_instance(aws, DR, pair.replica)
    assert after.status == "available"
    # moto keeps the source after a promotion (AWS drops it): the replica never looks writable
    assert after.replica_source == pair.primary_arn
    assert not rds.is_writable(aws, DR, pair.replica)
    assert rds.describe_instance(aws, PRIMARY, pair.primary).read_replicas == (pair.replica_arn,)


def test_promoting_an_instance_that_is_no_replica_is_refused(aws: AwsClients) -> None:
    db_id, _ = _primary(aws, multi_az=False)

    with pytest.raises(FaultError, match=rf"rds instance '{db_id}' is not a read replica"):
        rds.promote_read_replica(aws, PRIMARY, db_id)

    assert _operations(aws, "PromoteReadReplica") == []


def test_dry_run_promotion_sends_nothing(aws: AwsClients) -> None:
    pair = _pair(aws)
    aws.dry_run = True

    rds.promote_read_replica(aws, DR, pair.replica)
    rds.reboot_instance(aws, PRIMARY, pair.primary, force_failover=True)

    aws.dry_run = False
    [promote] = [c for c in aws.log.calls if c.operation == "PromoteReadReplica"]
    [reboot] = [c for c in aws.log.calls if c.operation == "RebootDBInstance"]
    assert not promote.sent and not reboot.sent
    assert promote.describe() == (
        f"would call rds.PromoteReadReplica(DBInstanceIdentifier={pair.replica!r}) in {DR}"
    )


def test_failover_cluster_moves_the_writer(aws: AwsClients) -> None:
    cluster = f"visitors-{uuid.uuid4().hex[:10]}"
    client = aws.client("rds", PRIMARY)
    client.create_db_cluster(
        DBClusterIdentifier=cluster,
        Engine="aurora-mysql",
        MasterUsername="admin",
        MasterUserPassword="drill-password-1",
    )
    members = [f"{cluster}-1", f"{cluster}-2", f"{cluster}-3"]
    for member in members:
        client.create_db_instance(
            DBInstanceIdentifier=member,
            DBClusterIdentifier=cluster,
            Engine="aurora-mysql",
            DBInstanceClass="db.r5.large",
        )
    assert rds.cluster_writer(aws, PRIMARY, cluster) == members[0]

    rds.failover_cluster(aws, PRIMARY, cluster, target=members[2])
    assert rds.cluster_writer(aws, PRIMARY, cluster) == members[2]

    rds.failover_cluster(aws, PRIMARY, cluster)
    assert rds.cluster_writer(aws, PRIMARY, cluster) in members[:2]
    assert [c.params for c in aws.log.calls if c.operation == "FailoverDBCluster"] == [
        {"DBClusterIdentifier": cluster, "TargetDBInstanceIdentifier": members[2]},
        {"DBClusterIdentifier": cluster},
    ]


def test_failover_of_a_missing_cluster_is_a_drill_error(aws: AwsClients) -> None:
    with pytest.raises(DrillError, match=r"rds cluster 'no-such-cluster' \(eu-west-1\): DBCluster"):
        rds.failover_cluster(aws, PRIMARY, "no-such-cluster")


def test_wait_available_observes_the_instance_coming_back(aws: AwsClients) -> None:
    db_id, _ = _primary(aws, multi_az=False)
    client = aws.client("rds", PRIMARY)
    client.stop_db_instance(DBInstanceIdentifier=db_id)
    fake = FakeTime()
    timeline = fake.timeline()

    def sleep(seconds: float) -> None:
        fake.sleep(seconds)
        if len(fake.sleeps) == 2:
            client.start_db_instance(DBInstanceIdentifier=db_id)

    instance = rds.wait_available(
        aws, PRIMARY, db_id, timeline=timeline, timeout_s=60.0, interval_s=5.0, sleep=sleep
    )

    assert instance.status == "available"
    assert fake.sleeps == [5.0, 5.0]
    event = timeline.get("rds_available")
    assert (event.mono, event.uncertainty_s, str(event.source)) == (110.0, 5.0, "observed")
    assert dict(event.attrs) == {"db_id": db_id, "region": PRIMARY, "status": "available"}


def test_wait_available_with_expect_change_ignores_a_first_available(aws: AwsClients) -> None:
    db_id, _ = _primary(aws, multi_az=False)
    client = aws.client("rds", PRIMARY)
    fake = FakeTime()
    timeline = fake.timeline()

    def sleep(seconds: float) -> None:
        # the reboot shows up late (as on AWS), then ends: stand-ins with stop and start
        fake.sleep(seconds)
        if len(fake.sleeps) == 1:
            client.stop_db_instance(DBInstanceIdentifier=db_id)
        if len(fake.sleeps) == 3:
            client.start_db_instance(DBInstanceIdentifier=db_id)

    rds.wait_available(
        aws,
        PRIMARY,
        db_id,
        timeline=timeline,
        interval_s=2.0,
        sleep=sleep,
        expect_change=True,
    )

    assert fake.sleeps == [2.0, 2.0, 2.0]
    assert (timeline.get("rds_available").mono, timeline.get("rds_available").uncertainty_s) == (
        106.0,
        2.0,
    )


def test_wait_available_with_expect_change_times_out_on_moto_reboot(aws: AwsClients) -> None:
    db_id, _ = _primary(aws, multi_az=True)
    rds.reboot_instance(aws, PRIMARY, db_id, force_failover=True)
    fake = FakeTime()

    with pytest.raises(NotObserved, match=rf"'{db_id}' \(eu-west-1\) not available after 20 s"):
        rds.wait_available(
            aws,
            PRIMARY,
            db_id,
            timeline=fake.timeline(),
            timeout_s=20.0,
            interval_s=10.0,
            sleep=fake.sleep,
            expect_change=True,
        )
    assert fake.sleeps == [10.0, 10.0]


def test_wait_writable_on_a_primary_is_immediate_and_on_a_moto_promoted_replica_never(
    aws: AwsClients,
) -> None:
    pair = _pair(aws)
    fake = FakeTime()
    timeline = fake.timeline()

    rds.wait_writable(aws, PRIMARY, pair.primary, timeline=timeline, sleep=fake.sleep)
    rds.promote_read_replica(aws, DR, pair.replica)
    with pytest.raises(NotObserved, match=r"not writable after 15 s \(status available\)"):
        rds.wait_writable(
            aws,
            DR,
            pair.replica,
            timeline=timeline,
            timeout_s=15.0,
            interval_s=5.0,
            sleep=fake.sleep,
        )

    assert [(e.name, e.mono, e.uncertainty_s) for e in timeline] == [("rds_writable", 100.0, 0.0)]
    assert fake.sleeps == [5.0, 5.0, 5.0]


def test_replica_lag_is_the_latest_minute(aws: AwsClients) -> None:
    pair = _pair(aws)
    put_replica_lag(
        aws,
        DR,
        pair.replica,
        [(timedelta(seconds=150), 4.0), (timedelta(seconds=30), 0.5), (timedelta(seconds=90), 2.0)],
    )

    latest = rds.replica_lag(aws, DR, pair.replica)
    assert latest is not None and (latest.minimum, latest.maximum) == (0.5, 0.5)
    assert datetime.now(UTC) - latest.utc < timedelta(minutes=2)
    # another instance's lag is not this one's
    assert rds.replica_lag(aws, DR, pair.primary) is None


def test_replica_lag_outside_the_window_is_none(aws: AwsClients) -> None:
    pair = _pair(aws)
    put_replica_lag(aws, DR, pair.replica, [(timedelta(minutes=8), 1.0)])

    assert rds.replica_lag(aws, DR, pair.replica, minutes=5) is None
    latest = rds.replica_lag(aws, DR, pair.replica, minutes=10)
    assert latest is not None and latest.maximum == 1.0
    assert ("cloudwatch", "GetMetricStatistics") in {
        (c.service, c.operation) for c in aws.log.calls
    }


def test_replica_lag_keeps_the_minus_one_of_inactive_replication(aws: AwsClients) -> None:
    """RDS publishes -1 while replication is not active: the minute's minimum keeps it even
    when the same minute also saw a real lag (its maximum)."""
    pair = _pair(aws)
    put_replica_lag(
        aws, DR, pair.replica, [(timedelta(seconds=5), 3.0), (timedelta(seconds=2), -1.0)]
    )

    latest = rds.replica_lag(aws, DR, pair.replica)
    assert latest is not None and latest.minimum == -1.0


# --- replication state (StatusInfos) ------------------------------------------------------------
# moto reports no StatusInfos: set_read_replication puts the entry RDS would report on moto's
# model of the replica; describe_instance reads it through the real DescribeDBInstances.


def test_a_replicating_replica_has_no_replication_problem(aws: AwsClients) -> None:
    pair = _pair(aws)
    set_read_replication(aws, DR, pair.replica, "replicating")

    replica = rds.describe_instance(aws, DR, pair.replica)
    assert replica.read_replication == rds.StatusInfo("read replication", "replicating", True)
    assert rds.replication_problem(replica, pair.primary, DR) is None


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (
            "error",
            "Replication has stopped  because of an error:\n1062 duplicate key",
            "read replication is 'error' (not normal): Replication has stopped because of an "
            "error: 1062 duplicate key",
        ),
        ("stopped", None, "read replication is 'stopped' (not normal)"),
        ("terminated", "Replication terminated", "read replication is 'terminated' (not normal)"),
    ],
)
def test_a_replica_whose_replication_broke_has_a_problem_naming_its_state(
    aws: AwsClients, status: str, message: str | None, expected: str
) -> None:
    pair = _pair(aws)
    set_read_replication(aws, DR, pair.replica, status, message=message)

    problem = rds.replication_problem(
        rds.describe_instance(aws, DR, pair.replica), pair.primary, DR
    )
    assert problem is not None and "\n" not in problem
    assert problem.startswith(f"rds instance '{pair.replica}' ({DR}): {expected}")


def test_a_replica_without_status_infos_or_of_another_source_has_a_problem(
    aws: AwsClients,
) -> None:
    pair = _pair(aws)
    replica = rds.describe_instance(aws, DR, pair.replica)  # moto's own answer: no StatusInfos

    assert rds.replication_problem(replica, pair.primary, DR) == (
        f"rds instance '{pair.replica}' ({DR}) reports no 'read replication' status in StatusInfos"
    )
    # a source whose name merely contains the primary's is another instance
    assert rds.replication_problem(replica, pair.primary[:-2], DR) == (
        f"rds instance '{pair.replica}' ({DR}) replicates from '{pair.primary_arn}', not "
        f"'{pair.primary[:-2]}'"
    )
    primary = rds.describe_instance(aws, PRIMARY, pair.primary)
    assert rds.replication_problem(primary, pair.primary, PRIMARY) == (
        f"rds instance '{pair.primary}' ({PRIMARY}) is not a read replica"
    )
