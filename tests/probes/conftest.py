"""MariaDB fixtures for the probe tests: a real primary and a GTID read replica on loopback.

``mariadb_pair`` is session-scoped and shared: tests keep it healthy (their own run ids,
heartbeat ids and tables; replication restarted in ``finally``). ``fresh_mariadb_pair`` is a
pair of one's own for tests that kill or promote. Both skip with the reason when the MariaDB
binaries are missing (CI installs mariadb-server).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from drdrill.probes.writes import MySqlEndpoint
from drdrill.sandbox.mariadb import (
    MariaDBConfig,
    MariaDBServer,
    replication_status,
    start_pair,
    unavailable_reason,
)


@dataclass(frozen=True)
class MariaDBPair:
    """A running primary and its read-only GTID replica."""

    primary: MariaDBServer
    replica: MariaDBServer

    def app_endpoint(self, server: MariaDBServer) -> MySqlEndpoint:
        """How the app user reaches ``server`` (short timeouts, like a writer would use)."""
        c = server.config
        return MySqlEndpoint(c.host, c.port, c.app_user, c.app_password, c.database)


def _start_pair() -> Iterator[MariaDBPair]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    primary, replica = start_pair(
        MariaDBConfig(name="primary", server_id=1),
        MariaDBConfig(name="replica", server_id=2),
    )
    try:
        yield MariaDBPair(primary, replica)
    finally:
        primary.cleanup()
        replica.cleanup()


@pytest.fixture(scope="session")
def _session_pair() -> Iterator[MariaDBPair]:
    yield from _start_pair()


@pytest.fixture
def mariadb_pair(_session_pair: MariaDBPair) -> MariaDBPair:
    """The shared pair, checked to be replicating before each test that uses it."""
    status = replication_status(_session_pair.replica)
    assert status is not None and status.io_running and status.sql_running, (
        f"shared mariadb pair not replicating (a previous test broke it): {status}"
    )
    return _session_pair


@pytest.fixture
def fresh_mariadb_pair() -> Iterator[MariaDBPair]:
    """A pair of the test's own, for killing the primary or promoting the replica."""
    yield from _start_pair()


@pytest.fixture
def run_id(request: pytest.FixtureRequest) -> str:
    """A run id unique to the test (marker rows and heartbeat rows are keyed by it)."""
    return f"{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"
