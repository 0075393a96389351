"""The MariaDB launcher on real processes: start, stop, crash and restart, freeze, replication
across a primary restart, and a promotion that keeps what already arrived."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pymysql
import pytest

from drdrill.errors import DrillError
from drdrill.sandbox import app
from drdrill.sandbox.app import ConnectionPool
from drdrill.sandbox.mariadb import (
    MariaDBConfig,
    MariaDBError,
    MariaDBServer,
    MariaDBStartError,
    ReplicationError,
    promote_replica,
    replication_status,
    start_pair,
    unavailable_reason,
    wait_for_replica,
)

_REASON = unavailable_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]


@pytest.fixture
def server() -> Iterator[MariaDBServer]:
    srv = MariaDBServer(MariaDBConfig(name="solo"))
    try:
        srv.start(timeout=30)
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture
def pair() -> Iterator[tuple[MariaDBServer, MariaDBServer]]:
    primary, replica = start_pair(
        MariaDBConfig(name="primary", server_id=11), MariaDBConfig(name="replica", server_id=12)
    )
    try:
        yield primary, replica
    finally:
        primary.cleanup()
        replica.cleanup()


def _count(server: MariaDBServer, sql: str) -> int:
    with server.connect("root") as conn, conn.cursor() as cur:
        cur.execute(sql)
        return int(cur.fetchone()[0])


def test_start_query_stop_and_start_again_keeps_data(server: MariaDBServer) -> None:
    assert server.is_running() and server.pid is not None
    assert server.port != 3306 and server.host == "127.0.0.1"
    with server.connect("root") as conn, conn.cursor() as cur:
        cur.execute("SELECT @@port, @@server_id, @@log_bin, @@binlog_format, @@bind_address")
        assert cur.fetchone() == (server.port, 1, 1, "ROW", "127.0.0.1")
        # Its own tmpdir: a starting server deletes every #sql* file in its tmpdir, so a shared
        # /tmp made concurrent instances destroy each other's temporary tables.
        cur.execute("SELECT @@tmpdir")
        assert cur.fetchone()[0] == str(server.tmp_dir)
        cur.execute("CREATE DATABASE keep")
        cur.execute("CREATE TABLE keep.t (i INT)")
    with server.connect("root") as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO keep.t VALUES (1), (2)")
    pid = server.pid
    server.stop()
    assert not server.is_running() and server.pid is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(pymysql.err.OperationalError):
        server.connect("root", connect_timeout=1.0)
    server.start()
    assert _count(server, "SELECT COUNT(*) FROM keep.t") == 2


def test_restart_after_kill_with_a_stale_pid_file(server: MariaDBServer) -> None:
    with server.connect("root") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE mysql.crash_probe (i INT) ENGINE=InnoDB")
        cur.execute("INSERT INTO mysql.crash_probe VALUES (7)")
    old_pid = server.pid
    server.kill()
    assert not server.is_running()
    assert server.pid_path.exists()  # left behind by the crash
    assert int(server.pid_path.read_text()) == old_pid
    server.start(timeout=30)  # InnoDB crash recovery, then ready
    assert server.pid != old_pid
    assert _count(server, "SELECT i FROM mysql.crash_probe") == 7
    assert int(server.pid_path.read_text()) == server.pid


def test_a_start_killed_by_a_signal_is_tried_again_and_recorded(server: MariaDBServer) -> None:
    # mariadbd 10.11 now and then segfaults in crash recovery after a kill -9 under writes
    # (about 1 region_up in 30 here); a real signal to the real starting process stands in.
    server.kill()
    server.start(wait=False)
    doomed = server.pid
    assert doomed is not None
    os.kill(doomed, signal.SIGKILL)
    server.wait_ready(timeout=30)
    assert server.pid != doomed and server.is_running()
    assert [c.signal for c in server.start_crashes] == [signal.SIGKILL]
    record = server.start_crash_log.read_text()
    assert f"died from signal {int(signal.SIGKILL)} while starting; started again" in record


def test_freeze_makes_it_hang_and_thaw_brings_it_back(server: MariaDBServer) -> None:
    server.freeze()
    try:
        assert server.is_running() and server.is_frozen
        assert psutil.Process(server.pid).status() == psutil.STATUS_STOPPED
        with pytest.raises(pymysql.err.OperationalError):
            server.connect("root", connect_timeout=0.5, read_timeout=0.5)
    finally:
        server.thaw()
    assert not server.is_frozen
    assert _count(server, "SELECT 1") == 1


def test_stop_while_frozen_still_shuts_down_cleanly(server: MariaDBServer) -> None:
    server.freeze()
    server.stop(timeout=30)
    assert not server.is_running()
    assert "Shutdown complete" in server.error_log_tail(5)


def test_cleanup_removes_the_temporary_run_dir() -> None:
    srv = MariaDBServer(MariaDBConfig(name="tmp"))
    srv.start()
    run_dir, pid = srv.run_dir, srv.pid
    srv.cleanup()
    assert not run_dir.exists()
    assert pid is not None and (
        not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    )


def test_a_given_run_dir_is_kept(tmp_path: Path) -> None:
    srv = MariaDBServer(MariaDBConfig(name="kept", run_dir=tmp_path / "db"))
    try:
        srv.start()
    finally:
        srv.cleanup()
    assert (tmp_path / "db" / "data" / "mysql").is_dir()
    assert f"port={srv.port}\n" in (tmp_path / "db" / "my.cnf").read_text()


def test_a_port_in_use_fails_with_the_instance_name_and_error_log() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        srv = MariaDBServer(MariaDBConfig(name="clash", port=port))
        try:
            with pytest.raises(MariaDBStartError) as info:
                srv.start(timeout=20)
        finally:
            srv.cleanup()
    message = str(info.value)
    assert message.startswith(f"mariadb 'clash' on 127.0.0.1:{port} ")
    assert "error log tail" in message and "Address already in use" in message
    assert isinstance(info.value, DrillError)


def test_an_auto_picked_port_lost_to_someone_else_moves_once() -> None:
    srv = MariaDBServer(MariaDBConfig(name="moved"))
    picked = srv.port
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", picked))  # someone grabs it between pick and start
            taken.listen()
            srv.start(timeout=20)
        assert srv.port != picked
        with srv.connect("root") as conn, conn.cursor() as cur:
            cur.execute("SELECT @@port")
            assert cur.fetchone()[0] == srv.port
    finally:
        srv.cleanup()


def test_kill_orphan_kills_only_a_leftover_on_the_same_run_dir(tmp_path: Path) -> None:
    first = MariaDBServer(MariaDBConfig(name="orphan", run_dir=tmp_path / "db"))
    first.start()
    orphan_pid = first.pid
    # A new harness process knows the run dir, not the process: the pid file names it.
    second = MariaDBServer(MariaDBConfig(name="orphan", run_dir=tmp_path / "db", port=first.port))
    try:
        assert second.kill_orphan() == orphan_pid
        assert not first.is_running()
        assert second.kill_orphan() is None  # nothing left; a stale pid file is no reason
        second.start()
        assert second.kill_orphan() is None  # its own process is not an orphan
    finally:
        first.cleanup()
        second.cleanup()


def test_bad_config_is_refused_early() -> None:
    with pytest.raises(MariaDBError, match="server_id"):
        MariaDBConfig(name="x", server_id=0)
    with pytest.raises(MariaDBError, match="distinct server_id"):
        start_pair(MariaDBConfig(name="a"), MariaDBConfig(name="b"))


# --- replication ----------------------------------------------------------------------------


def test_replica_is_read_only_for_the_app_and_follows_the_primary(
    pair: tuple[MariaDBServer, MariaDBServer],
) -> None:
    primary, replica = pair
    status = replication_status(replica)
    assert status is not None and status.io_running and status.sql_running
    assert status.using_gtid == "Slave_Pos" and status.connect_retry_s == 1
    assert (status.master_host, status.master_port) == (primary.host, primary.port)
    assert replication_status(primary) is None
    with primary.connect("app") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (i INT PRIMARY KEY)")
        cur.execute("INSERT INTO t VALUES (1)")
    wait_for_replica(primary, replica, timeout=10)
    with replica.connect("app") as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM t")
        assert cur.fetchone()[0] == 1
        with pytest.raises(pymysql.err.OperationalError, match="read-only"):
            cur.execute("INSERT INTO t VALUES (2)")


def test_replica_reconnects_after_a_primary_restart(
    pair: tuple[MariaDBServer, MariaDBServer],
) -> None:
    primary, replica = pair
    with primary.connect("app") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (i INT PRIMARY KEY)")
    primary.restart()
    with primary.connect("app") as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (1)")
    # MASTER_CONNECT_RETRY=1: a retry a second. With the default 60 s this wait would fail.
    wait_for_replica(primary, replica, timeout=15)
    with replica.connect("app") as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM t")
        assert cur.fetchone()[0] == 1
    status = replication_status(replica)
    assert status is not None and status.io_running


def test_replica_restart_stays_read_only(pair: tuple[MariaDBServer, MariaDBServer]) -> None:
    primary, replica = pair
    replica.restart()
    with replica.connect("root") as conn, conn.cursor() as cur:
        cur.execute("SELECT @@read_only")
        assert cur.fetchone()[0] == 1
    with primary.connect("app") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE after_restart (i INT)")
    wait_for_replica(primary, replica, timeout=15)


def test_promotion_keeps_events_that_arrived_while_the_sql_thread_was_paused(
    pair: tuple[MariaDBServer, MariaDBServer],
) -> None:
    primary, replica = pair
    with primary.connect("app") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (i INT PRIMARY KEY)")
    wait_for_replica(primary, replica, timeout=10)
    with replica.connect("root") as conn, conn.cursor() as cur:
        cur.execute("STOP SLAVE SQL_THREAD")
    with primary.connect("app") as conn, conn.cursor() as cur:
        for i in range(40):
            cur.execute("INSERT INTO t VALUES (%s)", (i,))
        cur.execute("SELECT @@gtid_binlog_pos")
        primary_pos = cur.fetchone()[0]
    # Wait until the IO thread received all 40 (they sit in the relay log, unapplied).
    deadline = time.monotonic() + 10
    while (status := replication_status(replica)) and status.gtid_io_pos != primary_pos:
        assert time.monotonic() < deadline, f"replica never received {primary_pos}: {status}"
        time.sleep(0.05)
    assert _count(replica, "SELECT COUNT(*) FROM app.t") == 0
    primary.kill()

    result = promote_replica(replica, timeout=10)

    assert result.caught_up
    assert result.received_gtid == result.applied_gtid == primary_pos
    assert _count(replica, "SELECT COUNT(*) FROM app.t") == 40
    assert replication_status(replica) is None
    assert result.total_s >= result.stop_io_s + result.catch_up_s
    with replica.connect("app") as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (1000)")  # writable for the app now
    assert not replica.read_only


def test_promoting_a_server_that_is_not_a_replica_is_an_error(server: MariaDBServer) -> None:
    with pytest.raises(ReplicationError, match="is not a replica"):
        promote_replica(server)


def test_the_sandboxs_connections_do_not_offer_tls(
    pair: tuple[MariaDBServer, MariaDBServer],
) -> None:
    """The sandbox's MariaDB serves no TLS. PyMySQL 1.2 offers TLS by default and builds an SSL
    context for it (loading the CA bundle: ~40 ms of CPU) on every connection, which on a busy
    machine slowed each new DR task and put ~0.1 s into every promotion's connect. The
    sandbox's own connections offer none: the supervisor's (root and the app's user), and a
    task's pool as the app builds it from the command line the scheduler gives it (the
    sandbox target's are held to it in test_partition)."""
    primary, _replica = pair
    config = primary.config
    argv = ["--db-host", config.host, "--db-port", str(config.port)]
    argv += ["--db-user", config.app_user, "--db-password", config.app_password]
    pool = ConnectionPool(app.db_settings(app.arguments().parse_args(argv)))
    for conn in (primary.connect("root"), primary.connect("app"), pool.connect()):
        with conn, conn.cursor() as cur:
            assert conn.ssl is False
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
