"""The sandbox target's replica lag readiness check against a real MariaDB primary and replica.

The pair is this module's own (server ids 71/72, loopback addresses 127.27.1.5 and 127.27.2.5,
block 27's), not the shared session pair: the tests stop its replica's threads. A
:class:`SandboxTarget` is pointed at it through an ordinary config (the regions' subnets and the
database port), so ``replica_lag`` runs exactly as in a drill: the app user's connections, the
heartbeat table, the sampling. Its control port is a free one with nothing behind it, so no
sandbox (anybody's) is ever driven from here; nothing here brings a sandbox up.

Ground truth comes from outside the sampler: when the replica's thread was stopped, and how long
the check ran (a heartbeat cannot have gone unseen for longer than that).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drdrill.config import load_config
from drdrill.probes.lag import HEARTBEAT_TABLE, LagReading, ensure_heartbeat_table
from drdrill.sandbox.mariadb import (
    MariaDBConfig,
    MariaDBServer,
    free_port,
    replication_status,
    start_pair,
    unavailable_reason,
    wait_for_replica,
)
from drdrill.targets.sandbox import SandboxTarget
from drdrill.timeline import Timeline

pytestmark = pytest.mark.slow  # a MariaDB pair of the module's own

PRIMARY_SUBNET = "127.27.1"
DR_SUBNET = "127.27.2"
#: the sandbox's database host number in a region's /24 (``RegionSettings.ip(5)``)
DB_HOST = 5
#: the RPO the stopped-replica tests prove the lag over
RPO_S = 0.5
#: a replica on loopback keeps up far within this, even on a loaded machine
HEALTHY_RPO_S = 2.0
_UNSEEN = re.compile(r"^heartbeat not seen on the replica within 0\.5 s \(lag >= (\d+\.\d{3}) s\)$")


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _shared_free_port() -> int:
    """A port free on both databases' addresses (the sandbox gives both regions one db port)."""
    for _ in range(20):
        port = free_port(f"{PRIMARY_SUBNET}.{DB_HOST}")
        if _bindable(f"{DR_SUBNET}.{DB_HOST}", port):
            return port
    raise RuntimeError(f"no port free on both {PRIMARY_SUBNET}.5 and {DR_SUBNET}.5 in 20 tries")


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[MariaDBServer, MariaDBServer]]:
    """This module's own primary and replica, on the sandbox's database addresses."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    port = _shared_free_port()
    primary, replica = start_pair(
        MariaDBConfig(
            name="readiness-primary",
            server_id=71,
            host=f"{PRIMARY_SUBNET}.{DB_HOST}",
            port=port,
        ),
        MariaDBConfig(
            name="readiness-replica", server_id=72, host=f"{DR_SUBNET}.{DB_HOST}", port=port
        ),
    )
    try:
        with primary.connect("app") as conn:
            ensure_heartbeat_table(conn)
        wait_for_replica(primary, replica, timeout=20)
        yield primary, replica
    finally:
        primary.cleanup()
        replica.cleanup()


@pytest.fixture
def replicating(
    pair: tuple[MariaDBServer, MariaDBServer],
) -> Iterator[tuple[MariaDBServer, MariaDBServer]]:
    """The pair, replicating before the test and again after it, whatever the test stopped."""
    primary, replica = pair
    status = replication_status(replica)
    assert status is not None and status.io_running and status.sql_running, status
    yield pair
    with replica.connect("root") as conn, conn.cursor() as cur:
        cur.execute("START SLAVE")
    wait_for_replica(primary, replica, timeout=20)


@pytest.fixture
def lag_target(pair: tuple[MariaDBServer, MariaDBServer], tmp_path: Path) -> SandboxTarget:
    """A sandbox lag_target whose regions' databases are this module's pair."""
    port = pair[0].config.port
    config = tmp_path / "drdrill.yaml"
    config.write_text(
        f"""target: sandbox
targets:
  sandbox:
    run_dir: {tmp_path / "sandbox"}
    primary: {{name: eu-west-1, subnet: "{PRIMARY_SUBNET}", desired: 2}}
    dr: {{name: eu-central-1, subnet: "{DR_SUBNET}", desired: 0}}
    ports: {{db: {port}, control: {free_port()}}}
"""
    )
    return SandboxTarget(load_config(config))


def _stop(replica: MariaDBServer, thread: str) -> None:
    """Stop one of the replica's threads (the ``replicating`` fixture starts it again)."""
    with replica.connect("root") as conn, conn.cursor() as cur:
        cur.execute(f"STOP SLAVE {thread}")


def _heartbeats_on(server: MariaDBServer) -> int:
    with server.connect("app") as conn, conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {HEARTBEAT_TABLE}")
        return int(cur.fetchone()[0])


def test_the_target_points_at_this_modules_pair(
    lag_target: SandboxTarget, pair: tuple[MariaDBServer, MariaDBServer]
) -> None:
    """Guard for the others: the target's databases are the pair, not some sandbox's."""
    assert lag_target.db_address("primary") == (pair[0].config.host, pair[0].config.port)
    assert lag_target.db_address("dr") == (pair[1].config.host, pair[1].config.port)


def test_replicating_gives_the_measured_lag_within_the_rpo(
    lag_target: SandboxTarget, replicating: Any
) -> None:
    timeline = Timeline()
    started = time.monotonic()
    reading = lag_target.replica_lag(timeline, HEALTHY_RPO_S, seconds=1.0)
    ran_s = time.monotonic() - started

    assert not reading.lower_bound_only and reading.reason is None, reading
    assert reading.value is not None
    low, high = reading.value - reading.uncertainty, reading.value + reading.uncertainty
    # a replica on loopback keeps up: the whole interval within the RPO, so the check passes
    assert 0.0 <= low <= high <= HEALTHY_RPO_S, reading
    assert high <= ran_s  # no heartbeat is older than the check itself
    names = [e.name for e in timeline]
    assert names == ["lag_sampling_started", "replica_lag_read"]
    assert timeline.get("replica_lag_read").attrs["value"] == reading.value


@pytest.mark.parametrize("thread", ["IO_THREAD", "SQL_THREAD"])
def test_a_stopped_replica_thread_is_a_lower_bound_over_the_rpo(
    lag_target: SandboxTarget, replicating: tuple[MariaDBServer, MariaDBServer], thread: str
) -> None:
    """Stopped before the check: none of its heartbeats ever shows, so only a lower bound is
    known, and the check samples on until that bound is over the RPO. Before the fix this was
    no reading at all (a skip)."""
    _primary, replica = replicating
    _stop(replica, thread)
    started = time.monotonic()
    reading = lag_target.replica_lag(Timeline(), RPO_S, seconds=0.3)
    ran_s = time.monotonic() - started

    assert reading.lower_bound_only, reading
    assert reading.value is not None and reading.reason is not None
    match = _UNSEEN.match(reading.reason)
    assert match, reading.reason
    bound = float(match.group(1))  # the reading's value, rounded down to the millisecond
    assert reading.value - 1e-3 < bound <= reading.value
    # proven over the RPO, and never longer than the check ran
    assert RPO_S < reading.value <= ran_s
    assert reading.uncertainty == 0.0


@pytest.mark.parametrize("thread", ["IO_THREAD", "SQL_THREAD"])
def test_a_thread_stopped_while_the_heartbeat_runs_fails_with_the_lower_bound(
    lag_target: SandboxTarget, replicating: tuple[MariaDBServer, MariaDBServer], thread: str
) -> None:
    """Stopped mid-check, after the replica showed one of the check's heartbeats: the lag is
    bracketed (the stale heartbeat gives an upper bound) and its lower bound is over the RPO."""
    _primary, replica = replicating
    before = _heartbeats_on(replica)
    result: list[LagReading] = []
    # a check long enough that the stop lands in it on a loaded runner (with 0.3 s, every
    # heartbeat could reach the replica before the stop did)
    check = threading.Thread(
        target=lambda: result.append(lag_target.replica_lag(Timeline(), RPO_S, seconds=2.0))
    )
    started = time.monotonic()
    check.start()
    try:
        # the check's own heartbeat row reaches the replica: then stop replicating
        while _heartbeats_on(replica) == before and check.is_alive():
            time.sleep(0.01)
        _stop(replica, thread)
    finally:
        check.join()
    ran_s = time.monotonic() - started

    (reading,) = result
    assert reading.value is not None and reading.reason is not None, reading
    match = _UNSEEN.match(reading.reason)
    assert match, reading.reason
    low = reading.value - reading.uncertainty  # the lower bound the reason shows
    assert low - 1e-3 < float(match.group(1)) <= low + 1e-9
    # proven over the RPO, and never longer than the check ran
    assert RPO_S < low <= ran_s
    assert not reading.lower_bound_only  # the stale heartbeat bounds it from above too
