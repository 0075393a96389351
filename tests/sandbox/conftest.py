"""Fixtures for the sandbox tests: a real MariaDB primary and its GTID read replica.

``sandbox_db_pair`` is session-scoped and shared: tests keep it replicating (their own run ids,
never a write on the replica). ``db_pair`` checks it before each test and ``app_tables`` also
makes sure the app's tables exist on both. A pair is a ``(primary, replica)`` tuple. Everything
skips with the reason when the MariaDB binaries are missing (CI installs mariadb-server).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drdrill.sandbox.app import ensure_schema
from drdrill.sandbox.mariadb import (
    MariaDBConfig,
    MariaDBServer,
    replication_status,
    start_pair,
    unavailable_reason,
    wait_for_replica,
)


@pytest.fixture(scope="session")
def sandbox_db_pair() -> Iterator[tuple[MariaDBServer, MariaDBServer]]:
    """A primary (``app`` database, ``app`` and ``repl`` users) and its replica, once a session."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    primary, replica = start_pair(
        MariaDBConfig(name="sbx-primary", server_id=31),
        MariaDBConfig(name="sbx-replica", server_id=32),
    )
    try:
        yield primary, replica
    finally:
        primary.cleanup()
        replica.cleanup()


@pytest.fixture
def db_pair(
    sandbox_db_pair: tuple[MariaDBServer, MariaDBServer],
) -> tuple[MariaDBServer, MariaDBServer]:
    """The shared pair, checked to be replicating before the test."""
    status = replication_status(sandbox_db_pair[1])
    assert status is not None and status.io_running and status.sql_running, (
        f"shared mariadb pair not replicating (a previous test broke it): {status}"
    )
    return sandbox_db_pair


@pytest.fixture
def app_tables(
    db_pair: tuple[MariaDBServer, MariaDBServer],
) -> tuple[MariaDBServer, MariaDBServer]:
    """The pair with the app's tables created on the primary and replicated."""
    primary, replica = db_pair
    with primary.connect("app") as conn:
        assert ensure_schema(conn)
    wait_for_replica(primary, replica, timeout=20)
    return db_pair
