"""MariaDB's general log (TABLE output) as ground truth, on a real primary and GTID replica: a
promotion's statements harvested with MariaDB's own times, checked against the moments the
promoting client saw; rotation that neither replicates nor writes a GTID of the replica's own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drdrill.sandbox.dblog import GENERAL_LOG_OPTIONS, GeneralLogHarvester, classify
from drdrill.sandbox.mariadb import (
    MariaDBConfig,
    MariaDBServer,
    promote_replica,
    replication_status,
    start_pair,
    unavailable_reason,
    wait_for_replica,
)
from drdrill.sandbox.truth import TruthLog

_REASON = unavailable_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]

Pair = tuple[MariaDBServer, MariaDBServer]

#: how far MariaDB's stamp of ``SET GLOBAL read_only = 0`` may lie from the client's view of the
#: statement's return (it is stamped on arrival, before it runs; plus the clock conversion)
SET_TOLERANCE_S = 0.05


@pytest.fixture
def logged_pair() -> Iterator[Pair]:
    """A primary and replica of their own (promotion ends the pair), logging to tables."""
    pair = start_pair(
        MariaDBConfig(name="glog-primary", server_id=61, extra_options=GENERAL_LOG_OPTIONS),
        MariaDBConfig(name="glog-replica", server_id=62, extra_options=GENERAL_LOG_OPTIONS),
    )
    try:
        yield pair
    finally:
        for server in pair:
            server.cleanup()


@pytest.fixture
def truth(tmp_path: Path) -> TruthLog:
    return TruthLog(tmp_path / "truth.jsonl")


def harvester(pair: Pair, truth: TruthLog) -> GeneralLogHarvester:
    primary, replica = pair
    return GeneralLogHarvester({"primary": lambda: primary, "dr": lambda: replica}, truth)


def own_gtids(server: MariaDBServer) -> list[str]:
    with server.connect("root") as conn, conn.cursor() as cur:
        cur.execute("SELECT @@gtid_binlog_pos")
        pos = str(cur.fetchone()[0])
    return [g for g in pos.split(",") if g and g.split("-")[1] == str(server.config.server_id)]


def test_the_servers_log_to_their_general_log_table(logged_pair: Pair) -> None:
    for server in logged_pair:
        with server.connect("root") as conn, conn.cursor() as cur:
            cur.execute("SELECT @@global.log_output, @@global.general_log")
            assert cur.fetchone() == ("TABLE", 1)


def test_promotion_is_logged_with_mariadbs_own_times(logged_pair: Pair, truth: TruthLog) -> None:
    """Promote the replica: ``db_read_only_changed`` read_only=false within 50 ms of the SET
    statement's return, and the replication stops within the promotion, in order."""
    replica = logged_pair[1]
    harvest = harvester(logged_pair, truth)
    harvest.harvest_all()  # the set-up's statements (attach_replica's)
    attach = [e.attrs["statement"] for e in truth.since(0.0) if e.attrs.get("region") == "dr"]
    assert attach == ["STOP SLAVE", "SET GLOBAL read_only = 1", "START SLAVE"]

    result = promote_replica(replica, timeout=10)
    assert harvest.harvest("dr") == 4
    events = truth.since(result.started_mono)
    assert [(e.event, e.attrs["statement"]) for e in events] == [
        ("db_replication_stopped", "STOP SLAVE IO_THREAD"),
        ("db_replication_stopped", "STOP SLAVE"),
        ("db_replication_stopped", "RESET SLAVE ALL"),
        ("db_read_only_changed", "SET GLOBAL read_only = 0"),
    ]
    writable = events[-1]
    assert writable.attrs["read_only"] is False and writable.attrs["region"] == "dr"
    assert writable.component == "rds-dr" and writable.attrs["user"] == "root"
    print(
        f"SET read_only=0 stamped {1000 * (result.writable_mono - writable.mono):.2f} ms "
        "before its return was seen"
    )
    assert abs(writable.mono - result.writable_mono) <= SET_TOLERANCE_S
    assert writable.mono <= result.writable_mono + 0.001  # stamped on arrival, before return
    assert result.started_mono <= events[0].mono
    # one session, the promotion's: it connected after the promotion began, before its first
    # statement
    assert len({e.attrs["thread_id"] for e in events}) == 1
    connected = events[0].attrs["session_mono"]
    assert result.started_mono - 0.001 <= connected <= events[0].mono
    assert all(e.attrs["logged_mono"] >= result.writable_mono for e in events)
    assert abs(writable.utc.timestamp() - time.time()) < 60  # read as UTC, not local time
    assert harvest.harvest("primary") == 0  # nothing of the kind happened there


def test_harvest_rotates_without_replicating_or_a_gtid_of_its_own(
    logged_pair: Pair, truth: TruthLog
) -> None:
    primary, replica = logged_pair
    harvest = harvester(logged_pair, truth)
    for _ in range(3):
        harvest.harvest_all()
    with primary.connect("app") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS glog_probe (id INT PRIMARY KEY)")
        cur.execute("SELECT @@read_only")  # a poll of read_only is no event
    wait_for_replica(primary, replica, timeout=10)
    harvest.harvest_all()
    assert own_gtids(replica) == []
    status = replication_status(replica)
    assert status is not None and status.io_running and status.sql_running
    for server in logged_pair:
        with server.connect("root") as conn, conn.cursor() as cur:
            cur.execute("SHOW TABLES FROM mysql LIKE 'drdrill%'")
            leftovers = {row[0] for row in cur.fetchall()}
            cur.execute("SELECT COUNT(*) FROM mysql.general_log WHERE argument LIKE '%glog_probe%'")
            remaining = int(cur.fetchone()[0])
        # only the next rotation's empty table waits; the probe's rows went with the harvest
        assert leftovers <= {"drdrill_general_log_next"}
        assert remaining == 1  # this very count query: it is logged before it runs
    assert [e.event for e in truth.since(0.0)].count("db_read_only_changed") == 1  # set-up


def test_a_harvest_of_a_stopped_server_is_quiet_and_resumes_after_a_restart(
    logged_pair: Pair, truth: TruthLog
) -> None:
    primary = logged_pair[0]
    harvest = harvester(logged_pair, truth)
    harvest.start()
    try:
        primary.kill()
        assert harvest.harvest("primary") == 0
        primary.start(wait=True)
        with primary.connect("root") as conn, conn.cursor() as cur:
            cur.execute("SET GLOBAL read_only = 1")
            cur.execute("SET GLOBAL read_only = 0")
        deadline = time.monotonic() + 5
        while len(truth.since(0.0, "db_read_only_changed")) < 3:  # the replica's set-up's too
            assert time.monotonic() < deadline, "the background harvest never caught up"
            time.sleep(0.05)
    finally:
        harvest.stop()
    values = [
        e.attrs["read_only"]
        for e in truth.since(0.0, "db_read_only_changed")
        if e.attrs["region"] == "primary"
    ]
    assert values == [True, False]


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("SET GLOBAL read_only = 0", ("db_read_only_changed", False)),
        ("set  global read_only=ON", ("db_read_only_changed", True)),
        ("SET @@global.read_only = 1;", ("db_read_only_changed", True)),
        ("SELECT @@global.read_only", None),
        ("SELECT @@read_only", None),
        ("STOP SLAVE IO_THREAD", ("db_replication_stopped", None)),
        ("RESET SLAVE ALL", ("db_replication_stopped", None)),
        ("STOP REPLICA", ("db_replication_stopped", None)),
        ("START SLAVE SQL_THREAD", ("db_replication_started", None)),
        ("SHOW SLAVE STATUS", None),
        ("CHANGE MASTER TO MASTER_HOST='x'", None),
    ],
)
def test_statements_are_classified(
    statement: str, expected: tuple[str, bool | None] | None
) -> None:
    assert classify(statement) == expected
