"""Rebuild a database as a fresh GTID replica of another: what failback needs.

An old primary that comes back after a failover may hold transactions the new primary never got
(the acknowledged writes the failover lost); it cannot simply replicate from the new one. Like
restoring an RDS replica from a snapshot, it is rebuilt: a new data directory, a consistent dump
of the source (``mariadb-dump --single-transaction --gtid --master-data``) loaded without binary
logging, then GTID replication from the dump's position.
"""

from __future__ import annotations

import shutil
import subprocess
import time

from drdrill.sandbox.mariadb import (
    MariaDBError,
    MariaDBServer,
    ReplicationError,
    wait_for_replica,
)

MARIADB_DUMP = shutil.which("mariadb-dump") or "/usr/bin/mariadb-dump"
MARIADB = shutil.which("mariadb") or "/usr/bin/mariadb"


def _users_without_binlog(server: MariaDBServer) -> None:
    """The app's database and users, created without writing GTIDs of the server's own."""
    c = server.config
    with server.connect("root") as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{c.database}`")
        cur.execute(
            f"CREATE USER IF NOT EXISTS '{c.app_user}'@'%%' IDENTIFIED BY %s", (c.app_password,)
        )
        cur.execute(f"GRANT ALL PRIVILEGES ON `{c.database}`.* TO '{c.app_user}'@'%'")
        cur.execute(f"GRANT SLAVE MONITOR, BINLOG MONITOR ON *.* TO '{c.app_user}'@'%'")
        cur.execute(
            f"CREATE USER IF NOT EXISTS '{c.repl_user}'@'%%' IDENTIFIED BY %s",
            (c.repl_password,),
        )
        cur.execute(f"GRANT REPLICATION SLAVE ON *.* TO '{c.repl_user}'@'%'")


def reseed_replica(
    replica: MariaDBServer,
    source: MariaDBServer,
    timeout: float = 60.0,
    via: tuple[str, int] | None = None,
) -> float:
    """Rebuild ``replica`` from ``source`` and make it a read-only GTID replica of it.

    Returns the seconds it took. The source keeps serving throughout (the dump is one
    consistent-snapshot transaction). ``via``: where the replica reaches the source, when not
    at the source's own address (the sandbox's inter-region link).
    """
    started = time.monotonic()
    if replica.is_running():
        if replica.is_frozen:
            replica.thaw()
        replica.kill()
    shutil.rmtree(replica.datadir, ignore_errors=True)
    replica.read_only = True
    replica.install()
    replica.start(wait=True, timeout=timeout)
    _users_without_binlog(replica)
    dump = subprocess.Popen(
        [
            MARIADB_DUMP,
            "--no-defaults",
            f"--socket={source.socket_path}",
            "--user=root",
            "--single-transaction",
            "--gtid",
            "--master-data=1",
            "--databases",
            source.config.database,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    load = subprocess.run(
        [
            MARIADB,
            "--no-defaults",
            f"--socket={replica.socket_path}",
            "--user=root",
            "--init-command=SET SESSION sql_log_bin=0",
        ],
        stdin=dump.stdout,
        capture_output=True,
        timeout=timeout,
    )
    assert dump.stdout is not None
    dump.stdout.close()
    dump_err = dump.stderr.read().decode(errors="replace") if dump.stderr else ""
    if dump.wait(timeout) != 0:
        raise MariaDBError(f"{replica.label}: dump of {source.label} failed: {dump_err[-300:]}")
    if load.returncode != 0:
        raise MariaDBError(
            f"{replica.label}: loading the dump of {source.label} failed: "
            f"{load.stderr.decode(errors='replace')[-300:]}"
        )
    s = source.config
    host, port = via or (s.host, s.port)
    with replica.connect("root") as conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL read_only = 1")
        cur.execute(
            "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, "
            "MASTER_PASSWORD=%s, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
            (host, port, s.repl_user, s.repl_password),
        )
        cur.execute("START SLAVE")
    try:
        wait_for_replica(source, replica, timeout)
    except ReplicationError:
        raise
    return time.monotonic() - started


def freeze_writes(server: MariaDBServer) -> None:
    """``read_only`` on: the app's writes fail from now (root's do not)."""
    with server.connect("root") as conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL read_only = 1")
    server.read_only = True
