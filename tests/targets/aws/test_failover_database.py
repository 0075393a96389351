"""The AWS target's own connection to a database (``<region>.database``): whether it takes
writes (``@@global.read_only`` on one kept connection) and the RPO markers in it, against a real
MariaDB on loopback standing in for the RDS instance (its address given as a tunnel's: moto's
RDS endpoints lead nowhere). Skips when the MariaDB binaries are missing (CI installs them).

RDS's side of the answer (available, not a read replica) comes from the stack in moto, where the
primary is writable and the replica is not.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from drdrill.errors import ConfigError, DrillError
from drdrill.probes.writes import ensure_marker_table
from drdrill.sandbox.aws.provision import ProvisionedStack
from drdrill.sandbox.mariadb import MariaDBConfig, MariaDBServer, setup_primary, unavailable_reason
from drdrill.targets.aws.target import AwsTarget

from .aws_target import aws_target

PASSWORD_ENV = "DRDRILL_TEST_DB_PASSWORD"


@pytest.fixture(scope="module")
def database() -> Iterator[MariaDBServer]:
    """One MariaDB server with the app's database and user."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    server = MariaDBServer(MariaDBConfig(name="aws-primary-db", server_id=11))
    try:
        server.start()
        setup_primary(server)
        with server.connect("app") as conn:
            ensure_marker_table(conn)
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def writable(database: MariaDBServer) -> Iterator[MariaDBServer]:
    """The database taking writes again after the test."""
    yield database
    if database.is_running():
        with database.connect() as conn, conn.cursor() as cur:
            cur.execute("SET GLOBAL read_only = 0")


def _set_read_only(server: MariaDBServer, on: bool) -> None:
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"SET GLOBAL read_only = {1 if on else 0}")


def _connections(server: MariaDBServer) -> int:
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Connections'")
        return int(cur.fetchone()[1])


def _target(
    tmp_path: Path, stack: ProvisionedStack, server: MariaDBServer, **database: object
) -> AwsTarget:
    c = server.config
    settings = {
        "user": c.app_user,
        "password_env": PASSWORD_ENV,
        "name": c.database,
        "host": c.host,
        "port": c.port,
        **database,
    }
    return aws_target(tmp_path, stack, primary={"database": settings})


def test_the_database_says_whether_it_takes_writes(
    stack: ProvisionedStack,
    writable: MariaDBServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, writable.config.app_password)
    target = _target(tmp_path, stack, writable)
    assert target.db_writable("primary") is True
    probe = target.writable_probe("primary")
    assert probe() is True

    _set_read_only(writable, True)  # what RDS does to a replica

    assert target.db_writable("primary") is False  # RDS still says writable: the db does not
    before = _connections(writable)
    assert [probe() for _ in range(5)] == [False] * 5
    # one connection kept across the polls (the +1 is this count's own)
    assert _connections(writable) - before == 1

    _set_read_only(writable, False)
    assert probe() is True and target.db_writable("primary") is True
    target.stop()


def test_a_database_that_went_away_is_not_writable_and_is_reconnected(
    stack: ProvisionedStack,
    writable: MariaDBServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, writable.config.app_password)
    target = _target(tmp_path, stack, writable)
    probe = target.writable_probe("primary")
    assert probe() is True and target.db_writable("primary") is True
    writable.restart()  # the kept connections die with it (a reboot for the promotion)
    # a dead kept connection says nothing of the database now: each connects again at once
    assert probe() is True
    assert target.db_writable("primary") is True
    writable.stop()
    assert probe() is False and target.db_writable("primary") is False
    writable.start()
    assert probe() is True and target.db_writable("primary") is True
    target.stop()


def test_present_markers_come_from_the_database_that_takes_writes(
    stack: ProvisionedStack,
    writable: MariaDBServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, writable.config.app_password)
    with writable.connect("app") as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO drdrill_markers (run_id, marker_id, sent_utc) VALUES (%s, %s, 0)",
            [("aws-run", 1), ("aws-run", 2), ("aws-run", 5), ("other-run", 3)],
        )
    target = _target(tmp_path, stack, writable)
    assert target.writer_region() == "primary"  # RDS: the DR database is a replica
    assert target.present_markers("aws-run") == {1, 2, 5}
    assert target.present_markers("aws-run", region="primary") == {1, 2, 5}
    # the DR region has no credentials: one line naming the key
    with pytest.raises(ConfigError, match=r"targets\.aws\.dr\.database: required to read the"):
        target.present_markers("aws-run", region="dr")


def test_the_password_is_never_printed(
    stack: ProvisionedStack,
    writable: MariaDBServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "s3cr3t-not-this-one"
    target = _target(tmp_path, stack, writable, password_env=None, password=secret)
    with pytest.raises(DrillError) as refused:
        target.present_markers("aws-run", region="primary")
    assert "Access denied" in str(refused.value) and secret not in str(refused.value)
    assert secret not in repr(target.settings) and secret not in str(target.describe())
    assert target.db_writable("primary") is False  # RDS says yes; the database cannot tell

    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    unset = _target(tmp_path, stack, writable)
    with pytest.raises(
        ConfigError,
        match=rf"targets\.aws\.primary\.database\.password_env: environment variable "
        rf"{PASSWORD_ENV} is not set",
    ):
        unset.present_markers("aws-run", region="primary")
