"""Replica lag from a heartbeat row: the bounds and stats on known numbers, and a real replica
whose SQL thread is paused and resumed."""

from __future__ import annotations

import time
from typing import Any

import pytest

from drdrill.probes.lag import (
    HeartbeatLagSampler,
    LagSample,
    LagSamplerError,
    ensure_heartbeat_table,
    lag_bounds,
    lag_stats,
    percentile,
)
from drdrill.probes.writes import MySqlEndpoint
from drdrill.sandbox.mariadb import free_port, wait_for_replica

# --- pure ---------------------------------------------------------------------------------------


def test_lag_bounds_bracket_the_visible_and_the_next_written_heartbeat() -> None:
    written = {1: 100.0, 2: 100.2, 3: 100.4}
    # The replica shows beat 2 (ts 100.2); beat 3 (ts 100.4) was acknowledged but is missing.
    low, high = lag_bounds(101.0, 101.01, visible_ts=100.2, visible_seq=2, written=written)
    assert high == pytest.approx(0.81)
    assert low == pytest.approx(0.6)


def test_lag_bounds_when_the_replica_has_the_latest_heartbeat() -> None:
    low, high = lag_bounds(100.25, 100.26, visible_ts=100.2, visible_seq=2, written={2: 100.2})
    assert low == 0.0
    assert high == pytest.approx(0.06)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert percentile(values, 50) == 10.0
    assert percentile(values, 95) == 19.0
    assert percentile(values, 100) == 20.0
    assert percentile([], 50) is None


def _sample(lag: float | None, low: float | None = 0.0, sbm: int | None = 0) -> LagSample:
    return LagSample(0.0, 0.0, lag, low, 1, 1, sbm)


def test_stats_ignore_samples_without_a_visible_heartbeat() -> None:
    samples = [_sample(None, None, None), _sample(0.1), _sample(0.3, 0.1, 1), _sample(0.2, 0.15)]
    stats = lag_stats(samples)
    assert stats.count == 3
    assert (stats.max_s, stats.p50_s, stats.last_s) == (0.3, 0.2, 0.2)
    assert stats.max_uncertainty_s == pytest.approx(0.2)
    assert stats.max_seconds_behind_master == 1
    assert lag_stats([]).max_s is None


def test_sampler_rejects_bad_interval() -> None:
    with pytest.raises(LagSamplerError, match="interval"):
        HeartbeatLagSampler(lambda: None, lambda: None, interval_s=0)


# --- real replica -------------------------------------------------------------------------------


def test_paused_replication_builds_lag_the_sampler_sees_and_it_drops_after_restart(
    mariadb_pair: Any, run_id: str
) -> None:
    primary, replica = mariadb_pair.primary, mariadb_pair.replica
    with primary.connect("app") as conn:
        ensure_heartbeat_table(conn)
    wait_for_replica(primary, replica, timeout=10)
    interval = 0.1
    sampler = HeartbeatLagSampler(
        lambda: primary.connect("app", read_timeout=2.0, write_timeout=2.0),
        lambda: replica.connect("app", read_timeout=2.0, write_timeout=2.0),
        interval_s=interval,
        heartbeat_id=run_id,
    )
    root = replica.connect("root")
    sampler.start()
    try:
        time.sleep(0.6)
        with root.cursor() as cur:
            cur.execute("STOP SLAVE SQL_THREAD")
        paused_utc = time.time()
        time.sleep(1.5)
        during = [s for s in sampler.samples() if s.utc > paused_utc + 0.3]
        with root.cursor() as cur:
            cur.execute("START SLAVE")
        resumed_utc = time.time()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            after = [s for s in sampler.samples() if s.utc > resumed_utc]
            if after and after[-1].lag_s is not None and after[-1].lag_s < 0.5:
                break
            time.sleep(0.05)
    finally:
        with root.cursor() as cur:
            cur.execute("START SLAVE")  # the session pair must stay healthy
        root.close()
        samples = sampler.stop()

    before = [s for s in samples if s.utc < paused_utc]
    print(f"\nlag: before={lag_stats(before)} during={lag_stats(during)} after={after[-1]}")
    assert before and all(s.lag_s is not None for s in before)
    assert all(s.primary_error is None and s.replica_error is None for s in samples)
    assert any(s.seconds_behind_master is not None for s in before)

    assert during, "no sample while replication was paused"
    assert max(s.lag_s or 0.0 for s in during) > 0.5
    # Ground truth: the replica stopped applying at paused_utc, so its lag at a sample is
    # about (sample time - paused_utc). Tolerance: one interval plus 0.3 s of scheduling.
    for s in during:
        assert s.lag_s is not None and s.lag_min_s is not None
        truth = s.utc - paused_utc
        assert s.lag_min_s - 0.3 <= truth <= s.lag_s + 0.3
        assert abs(s.lag_s - truth) <= interval + 0.3
    # Seconds_Behind_Master says nothing while the SQL thread is stopped: why we do not use it.
    assert all(s.seconds_behind_master is None for s in during)

    assert after and after[-1].lag_s is not None and after[-1].lag_s < 0.5
    stats = lag_stats(samples)
    assert stats.max_s is not None and stats.max_s > 0.5
    assert stats.last_s == after[-1].lag_s


def test_a_dead_primary_is_recorded_in_the_sample_not_raised(
    mariadb_pair: Any, run_id: str
) -> None:
    primary, replica = mariadb_pair.primary, mariadb_pair.replica
    with primary.connect("app") as conn:
        ensure_heartbeat_table(conn)
    wait_for_replica(primary, replica, timeout=10)
    dead = MySqlEndpoint("127.0.0.1", free_port(), "app", "x", "app", connect_timeout_s=1.0)
    sampler = HeartbeatLagSampler(
        dead.connect,
        lambda: replica.connect("app", read_timeout=2.0),
        interval_s=0.1,
        heartbeat_id=run_id,
    )
    try:
        sample = sampler.sample_once()
    finally:
        sampler.close()
    assert sample.written_seq is None
    assert sample.primary_error is not None and "OperationalError" in sample.primary_error
    assert sample.replica_error is None
    assert sample.lag_s is None  # this heartbeat id never reached the replica
