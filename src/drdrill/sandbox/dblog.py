"""MariaDB's own record of the statements that change a database's role, as ground truth.

The sandbox's servers write their general query log to a table (``log_output=TABLE``,
``general_log=ON``: :data:`GENERAL_LOG_OPTIONS`). ``mysql.general_log`` is a CSV table whose
``event_time`` has microseconds: the moment the server received the statement, before it ran
it. A :class:`GeneralLogHarvester` reads it and appends to the truth log:

- ``db_read_only_changed`` {region, read_only, statement, user}: a ``SET GLOBAL read_only``;
- ``db_replication_stopped`` {region, statement, user}: ``STOP SLAVE`` (any threads) or
  ``RESET SLAVE [ALL]``;
- ``db_replication_started`` {region, statement, user}: ``START SLAVE`` (any threads).

Each also carries ``thread_id`` and ``session_mono``: when that statement's connection was
logged (its ``Connect`` row), i.e. when the client that sent it (the DR automation's promotion)
began talking to the server; None when the connection is older than the harvester's memory.

Each is stamped with the server's ``event_time`` put on the truth log's monotonic axis (the
wall-minus-monotonic offset is read at the harvest: :func:`drdrill.sandbox.truth.mono_of_wall`);
``logged_mono`` says when it was harvested. The general log records a statement when it
arrives, so a statement that then failed is logged too (only root sends these here, and root's
succeed); one event a statement, even one that sets what was already set.

A harvest rotates the table (``RENAME TABLE`` of the log tables is atomic while logging goes
on), reads the rotated rows and drops them, so each harvest reads only what is new and the log
never grows. Its session logs nothing itself (``sql_log_off``) and writes nothing to the binary
log (``sql_log_bin=0``): a rotation on the primary must not replicate, and one on the replica
must not create a GTID of its own. Measured on MariaDB 10.11: a statement costs ~5 us more with
the log on, a rotation ~1 ms, and ``event_time`` falls between the client's send and the
statement's return.

Nothing here imports pytest.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pymysql

from drdrill.sandbox.mariadb import MariaDBServer
from drdrill.sandbox.truth import TruthLog, mono_of_wall, wall_minus_mono

#: ``[mysqld]`` options that make a server keep its general log in ``mysql.general_log``
GENERAL_LOG_OPTIONS: tuple[tuple[str, str], ...] = (("log_output", "TABLE"), ("general_log", "ON"))

_OLD = "mysql.drdrill_general_log_old"
_NEXT = "mysql.drdrill_general_log_next"
#: only the statements that may concern us leave the server (LIKE is case-insensitive here)
_SELECT = (
    f"SELECT UNIX_TIMESTAMP(event_time), user_host, thread_id, command_type, argument FROM {_OLD} "
    "WHERE command_type = 'Connect' OR (command_type = 'Query' AND (argument LIKE '%%read_only%%' "
    "OR argument LIKE '%%slave%%' OR argument LIKE '%%replica%%'))"
)
_READ_ONLY = re.compile(
    r"^\s*SET\s+(?:GLOBAL\s+|@@GLOBAL\.)\s*read_only\s*(?:=|:=)\s*"
    r"(?P<value>[01]|ON|OFF|TRUE|FALSE)\s*;?\s*$",
    re.IGNORECASE,
)
_STOPPED = re.compile(r"^\s*(?:STOP|RESET)\s+(?:SLAVE|REPLICA)\b", re.IGNORECASE)
_STARTED = re.compile(r"^\s*START\s+(?:SLAVE|REPLICA)\b", re.IGNORECASE)
_TRUE = {"1", "ON", "TRUE"}
#: connections remembered a server, for the session start of a later statement
_SESSIONS_KEPT = 4096


@dataclass(frozen=True)
class LoggedStatement:
    """One statement of interest as the server logged it."""

    event: str
    wall: float
    statement: str
    user: str
    read_only: bool | None = None
    thread_id: int = 0


@dataclass(frozen=True)
class LoggedRows:
    """What one rotation read: the statements of interest and every connection's start."""

    statements: list[LoggedStatement]
    #: thread id -> when its connection was logged (epoch seconds)
    connects: dict[int, float]


def classify(statement: str) -> tuple[str, bool | None] | None:
    """The truth event a statement is (and the read_only it sets), or None for any other."""
    text = " ".join(statement.split())
    match = _READ_ONLY.match(text)
    if match is not None:
        return "db_read_only_changed", match.group("value").upper() in _TRUE
    if _STOPPED.match(text):
        return "db_replication_stopped", None
    if _STARTED.match(text):
        return "db_replication_started", None
    return None


def rotate_and_read(conn: Any) -> LoggedRows:
    """Rotate ``mysql.general_log`` and return the statements of interest it held, and the
    connections that started.

    A rotated table left by an interrupted harvest is read (and dropped) first.
    """
    with conn.cursor() as cur:
        cur.execute("SHOW TABLES FROM mysql LIKE 'drdrill\\_general\\_log\\_old'")
        if cur.fetchone() is None:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {_NEXT} LIKE mysql.general_log")
            cur.execute(f"RENAME TABLE mysql.general_log TO {_OLD}, {_NEXT} TO mysql.general_log")
        cur.execute(_SELECT)
        rows = cur.fetchall()
        cur.execute(f"DROP TABLE {_OLD}")
    found = []
    connects: dict[int, float] = {}
    for wall, user_host, thread_id, command, argument in rows:
        text = argument.decode(errors="replace") if isinstance(argument, bytes) else str(argument)
        if command == "Connect":
            connects[int(thread_id)] = float(wall)
            continue
        kind = classify(text)
        if kind is None:
            continue
        user = str(user_host).split("[", 1)[0].strip()
        statement = " ".join(text.split())
        found.append(
            LoggedStatement(kind[0], float(wall), statement, user, kind[1], int(thread_id))
        )
    found.sort(key=lambda s: s.wall)
    return LoggedRows(found, connects)


class GeneralLogHarvester:
    """Harvests each region's general log into the truth log, a thread a server.

    A thread a server, so that a frozen one (a region down as a black hole) delays only its own
    harvest. ``servers`` maps a region key to a callable that returns its server object now
    (failback replaces nothing, but a reseed wipes a data directory: :meth:`harvest` it first).
    """

    def __init__(
        self,
        servers: Mapping[str, Callable[[], MariaDBServer]],
        truth: TruthLog,
        interval_s: float = 0.1,
        *,
        component: str = "rds",
    ) -> None:
        self.servers = dict(servers)
        self.truth = truth
        self.interval_s = interval_s
        self.component = component
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        #: region -> (connection, pid of the server process it is connected to)
        self._conns: dict[str, tuple[Any, int | None]] = {}
        self._locks = {region: threading.Lock() for region in self.servers}
        self._failing: set[str] = set()
        #: region -> thread id -> when that connection was logged (epoch seconds)
        self._sessions: dict[str, dict[int, float]] = {}

    def start(self) -> None:
        """Harvest every ``interval_s`` in the background until :meth:`stop`."""
        if self._threads:
            return
        self._stop.clear()
        for region in self.servers:
            thread = threading.Thread(
                target=self._run, args=(region,), name=f"general-log-{region}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the threads and close their connections (a last :meth:`harvest` is the
        caller's, before the servers stop)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(5.0)
        self._threads = []
        for region in list(self._conns):
            with self._locks[region]:
                self._close(region)

    def harvest(self, region: str) -> int:
        """Harvest one server now; the number of events appended (0 when it cannot answer)."""
        server = self.servers[region]()
        if not server.is_running() or server.is_frozen:
            return 0
        with self._locks[region]:
            try:
                conn = self._connection(region, server)
                rows = rotate_and_read(conn)
                offset = wall_minus_mono()
            except (pymysql.err.Error, OSError) as exc:
                self._close(region)
                if region not in self._failing:  # once a streak, not at every attempt
                    self._failing.add(region)
                    print(f"general log of {region}: {exc}", file=sys.stderr, flush=True)
                return 0
            self._failing.discard(region)
            sessions = self._sessions.setdefault(region, {})
            sessions.update(rows.connects)
            while len(sessions) > _SESSIONS_KEPT:  # the oldest connections first
                del sessions[next(iter(sessions))]
            for item in rows.statements:
                attrs: dict[str, Any] = {"region": region, "statement": item.statement}
                if item.read_only is not None:
                    attrs["read_only"] = item.read_only
                connected = sessions.get(item.thread_id)
                self.truth.append_at(
                    item.event,
                    f"{self.component}-{region}",
                    mono_of_wall(item.wall, offset),
                    datetime.fromtimestamp(item.wall, UTC),
                    user=item.user,
                    thread_id=item.thread_id,
                    # when the statement's session connected: where an action on it began
                    session_mono=None if connected is None else mono_of_wall(connected, offset),
                    stamped="mariadb general_log event_time",
                    logged_mono=time.monotonic(),
                    **attrs,
                )
            statements = rows.statements
            return len(statements)

    def harvest_all(self) -> int:
        """Harvest every server now."""
        return sum(self.harvest(region) for region in self.servers)

    def _run(self, region: str) -> None:
        while not self._stop.wait(self.interval_s):
            self.harvest(region)

    def _connection(self, region: str, server: MariaDBServer) -> Any:
        kept = self._conns.get(region)
        if kept is not None and kept[1] == server.pid:
            return kept[0]
        self._close(region)  # a restarted server: the old connection is dead
        self._sessions.pop(region, None)  # and its thread ids start again
        conn = server.connect("root", connect_timeout=1.0, read_timeout=2.0, write_timeout=2.0)
        try:
            with conn.cursor() as cur:
                # the harvest's own statements stay out of the general log and the binlog
                cur.execute("SET SESSION sql_log_off = 1")
                cur.execute("SET SESSION sql_log_bin = 0")
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        self._conns[region] = (conn, server.pid)
        return conn

    def _close(self, region: str) -> None:
        kept = self._conns.pop(region, None)
        if kept is not None:
            with contextlib.suppress(Exception):
                kept[0].close()
