"""drdrill's own connection to a region's database (``targets.aws.<region>.database``).

RDS says whether an instance is available and whether it is a read replica; whether the
database takes the app's writes is what the database itself says: ``@@global.read_only``
(RDS sets it on a replica, and clears it when the replica is promoted). With credentials
configured, drdrill asks it on a connection it keeps (a new one after a failure), and reads the
RPO markers back from it. The host and port are the instance's endpoint as RDS reports it,
unless the settings give a tunnel's.

The password is never printed nor logged: it is read from the settings (a secret) or the
environment when a connection is made, and PyMySQL's errors do not carry it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql

from drdrill.errors import ConfigError, DrillError
from drdrill.probes.writes import read_present_markers
from drdrill.targets.aws import rds
from drdrill.targets.aws.session import AwsClients
from drdrill.targets.aws.settings import AwsSettings, DatabaseSettings
from drdrill.targets.base import Region

#: what a connection may take to open, and one statement to answer
CONNECT_TIMEOUT_S = 2.0
STATEMENT_TIMEOUT_S = 5.0


class DatabaseUnreachable(DrillError):
    """A database drdrill could not connect to (down, rebooting, refused, wrong credentials)."""


#: what a database that does not answer raises, on connecting or on a statement
_DOWN = (pymysql.err.Error, OSError, DatabaseUnreachable)


class DatabaseAccess:
    """Each region's database, through the credentials the settings give."""

    def __init__(
        self,
        aws: AwsClients,
        settings: AwsSettings,
        where: str,
        connect: Callable[..., Any] = pymysql.connect,
    ) -> None:
        """``where`` names the config file in errors (``drdrill.yaml``)."""
        self.aws = aws
        self.settings = settings
        self.where = where
        self._connect = connect
        self._lock = threading.Lock()
        self._kept: dict[Region, list[Any]] = {}

    def credentials(self, key: Region) -> DatabaseSettings | None:
        """A region's database settings, None when there are none."""
        region = self.settings.primary if key == "primary" else self.settings.dr
        return region.database

    def configured(self, key: Region) -> bool:
        """Whether drdrill can connect to the region's database itself."""
        return self.credentials(key) is not None

    def _require(self, key: Region, why: str) -> DatabaseSettings:
        found = self.credentials(key)
        if found is None:
            raise ConfigError(
                f"{self.where}: targets.aws.{key}.database",
                f"required to {why} (user, password_env or password, name)",
            )
        return found

    def connect(self, key: Region, why: str = "connect to the database") -> Any:
        """A new autocommit connection to the region's database."""
        creds = self._require(key, why)
        password = creds.secret()
        if password is None:
            raise ConfigError(
                f"{self.where}: targets.aws.{key}.database.password_env",
                f"environment variable {creds.password_env} is not set",
            )
        host, port = creds.host, creds.port
        if host is None or port is None:
            region = self.settings.primary if key == "primary" else self.settings.dr
            instance = rds.describe_instance(self.aws, region.region, region.rds.instance_id)
            if host is None and instance.endpoint is None:
                raise DrillError(f"rds instance '{instance.id}' has no endpoint yet")
            host = host or instance.endpoint
            port = port or instance.port or 3306
        try:
            return self._connect(
                host=host,
                port=port,
                user=creds.user,
                password=password,
                database=creds.name,
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=STATEMENT_TIMEOUT_S,
                write_timeout=STATEMENT_TIMEOUT_S,
                autocommit=True,
            )
        except (pymysql.err.Error, OSError) as exc:
            # PyMySQL's errors name the user, never the password
            raise DatabaseUnreachable(
                f"{key} database {creds.name} at {host}:{port} as '{creds.user}': {exc}"
            ) from exc

    def read_only(self, key: Region) -> bool:
        """The database's own ``@@global.read_only`` now, on the connection kept for the
        region (a new one after a failure, which is raised)."""
        with self._lock:
            held = self._kept.setdefault(key, [])
            return _read_only_kept(
                held, lambda: self.connect(key, "ask it whether it takes writes")
            )

    def takes_writes(self, key: Region) -> bool:
        """Whether the database says it takes writes (``read_only`` off); False when it cannot
        be reached (down, rebooting)."""
        try:
            return not self.read_only(key)
        except _DOWN:
            return False

    def writable_probe(self, key: Region) -> Callable[[], bool]:
        """A cheap repeated poll of whether the database takes writes (``read_only`` off), on
        one connection kept across calls; a failure (the database down, rebooting for its
        promotion) counts as not writable and the next call connects again."""
        held: list[Any] = []

        def writable() -> bool:
            try:
                return not _read_only_kept(
                    held, lambda: self.connect(key, "ask it whether it takes writes")
                )
            except _DOWN:
                return False

        return writable

    def markers(self, key: Region, run_id: str) -> set[int]:
        """The RPO marker ids of ``run_id`` in the region's database (a connection of its own)."""
        conn = self.connect(key, "read the RPO markers back")
        try:
            return read_present_markers(conn, run_id)
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        """Close the kept connections."""
        with self._lock:
            kept, self._kept = self._kept, {}
        for held in kept.values():
            _close_all(held)


def _read_only(conn: Any) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT @@global.read_only")
        row = cur.fetchone()
    return bool(int(row[0]))


def _close_all(held: list[Any]) -> None:
    for conn in held:
        with contextlib.suppress(Exception):
            conn.close()
    held.clear()


def _read_only_kept(held: list[Any], connect: Callable[[], Any]) -> bool:
    """``read_only`` on the connection kept in ``held`` (made when there is none). A kept
    connection that fails is replaced once: it may have died with a restart since its last use,
    which says nothing of the database now. A new one that fails raises."""
    for fresh in (not held, True):
        if not held:
            held.append(connect())
        try:
            return _read_only(held[0])
        except _DOWN:
            _close_all(held)
            if fresh:
                raise
    raise AssertionError("unreachable: the second attempt is always on a new connection")


def rds_writable_probe(
    writable: Callable[[], bool],
    min_interval_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Callable[[], bool]:
    """``writable`` (an RDS API poll) asked at most once every ``min_interval_s``: a call that
    comes sooner waits its turn, so that a drill's fast polls do not hit RDS's API limits and
    each answer is still fresh (the poll's bounds stay true)."""
    last: list[float] = []
    lock = threading.Lock()

    def probe() -> bool:
        with lock:
            if last:
                wait = last[0] + min_interval_s - clock()
                if wait > 0:
                    sleep(wait)
            last[:] = [clock()]
        try:
            return writable()
        except DrillError:
            return False

    return probe
