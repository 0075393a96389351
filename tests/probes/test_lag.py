"""Replica lag from a heartbeat row: the bounds, stats and readiness verdicts on known numbers,
and a real replica whose SQL thread is paused and resumed, or whose IO thread is stopped."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from drdrill.probes.lag import (
    HeartbeatLagSampler,
    LagReading,
    LagSample,
    LagSamplerError,
    ReplicationState,
    ensure_heartbeat_table,
    judge_lag,
    lag_bounds,
    lag_stats,
    percentile,
    read_replica_lag,
    unseen_lower_bound,
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


def test_a_replica_without_any_heartbeat_gives_a_lower_bound_from_the_first_ack() -> None:
    assert unseen_lower_bound(101.0, {1: 100.0, 2: 100.2}) == pytest.approx(1.0)
    assert unseen_lower_bound(99.0, {1: 100.0}) == 0.0  # clock order, never negative
    assert unseen_lower_bound(101.0, {}) is None  # nothing acknowledged: nothing proven


def _beat(
    lag: float | None,
    low: float | None,
    *,
    seq: int | None = 1,
    written: int | None = 1,
    primary_error: str | None = None,
    replica_error: str | None = None,
) -> LagSample:
    return LagSample(0.0, 0.0, lag, low, seq, written, None, primary_error, replica_error)


def test_judge_lag_brackets_the_worst_lag_of_a_replica_that_keeps_up() -> None:
    samples = [_beat(None, 0.004, seq=None), _beat(0.05, 0.0), _beat(0.12, 0.02), _beat(0.06, 0.0)]
    reading = judge_lag(samples, 1.2, 2.0)
    assert not reading.lower_bound_only and reading.reason is None
    assert reading.value is not None
    # worst lag in [largest lower bound, largest upper bound] = [0.02, 0.12]
    assert reading.value - reading.uncertainty == pytest.approx(0.02)
    assert reading.value + reading.uncertainty == pytest.approx(0.12)


def test_judge_lag_a_heartbeat_never_seen_is_a_lower_bound_not_a_gap() -> None:
    samples = [_beat(None, 0.3, seq=None), _beat(None, 1.3049, seq=None)]
    reading = judge_lag(samples, 1.2, 1.4)
    assert reading.lower_bound_only and reading.value == pytest.approx(1.3049)
    assert reading.reason == "heartbeat not seen on the replica within 1.2 s (lag >= 1.304 s)"
    # under the RPO the bound proves nothing about it: the reason says how long was sampled
    short = judge_lag(samples, 5.0, 1.4)
    assert short.lower_bound_only
    assert short.reason == "heartbeat not seen on the replica in 1.4 s of sampling (lag >= 1.304 s)"


def test_judge_lag_a_replica_that_stopped_mid_way_is_bracketed_and_says_so() -> None:
    # the replica shows an old heartbeat (upper bound 1.9 s) and lacks newer ones (>= 1.8 s)
    samples = [_beat(0.01, 0.0), _beat(1.0, 0.9), _beat(1.9, 1.8)]
    reading = judge_lag(samples, 1.2, 2.0)
    assert not reading.lower_bound_only
    assert reading.value == pytest.approx(1.85) and reading.uncertainty == pytest.approx(0.05)
    assert reading.reason == "heartbeat not seen on the replica within 1.2 s (lag >= 1.800 s)"


def test_judge_lag_without_a_heartbeat_written_or_a_replica_read_has_no_figure() -> None:
    dead_primary = [_beat(None, None, seq=None, written=None, primary_error="OperationalError: x")]
    reading = judge_lag(dead_primary, 1.2, 2.0)
    assert reading.value is None
    assert reading.reason == "no heartbeat written on the primary in 2.0 s: OperationalError: x"
    dead_replica = [_beat(None, None, seq=None, replica_error="OperationalError: y")]
    assert judge_lag(dead_replica, 1.2, 2.0).reason == (
        "replica unreadable for 2.0 s: OperationalError: y"
    )
    assert judge_lag([], 1.2, 2.0).value is None


def test_readings_and_states_without_a_reason_are_refused() -> None:
    with pytest.raises(ValueError, match="reason"):
        LagReading(None)
    with pytest.raises(ValueError, match="reason"):
        LagReading(1.0, lower_bound_only=True)
    with pytest.raises(ValueError, match="reason"):
        ReplicationState(False)
    assert ReplicationState(True) and not ReplicationState(False, "IO thread stopped")


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


def test_a_stopped_io_thread_gives_lower_bounds_that_never_pass_the_truth(
    mariadb_pair: Any, run_id: str
) -> None:
    """A fresh heartbeat table created while the IO thread is stopped exists on the primary
    only: the replica shows no heartbeat (not even the table), and each sample says the lag is
    at least the time since the first acknowledged heartbeat, which is never more than the time
    since the thread stopped (ground truth: the replica has nothing newer than that)."""
    primary, replica = mariadb_pair.primary, mariadb_pair.replica
    table = f"hb_{uuid.uuid4().hex[:12]}"
    root = replica.connect("root")
    try:
        with root.cursor() as cur:
            cur.execute("STOP SLAVE IO_THREAD")
        stopped_utc = time.time()
        with primary.connect("app") as conn:
            ensure_heartbeat_table(conn, table)
        sampler = HeartbeatLagSampler(
            lambda: primary.connect("app", read_timeout=2.0),
            lambda: replica.connect("app", read_timeout=2.0),
            interval_s=0.1,
            table=table,
            heartbeat_id=run_id,
        )
        try:
            samples = [sampler.sample_once()]
            for _ in range(5):
                time.sleep(0.1)
                samples.append(sampler.sample_once())
        finally:
            sampler.close()
    finally:
        with root.cursor() as cur:
            cur.execute("START SLAVE")  # the session pair must stay healthy
        root.close()
        with primary.connect("app") as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS `{table}`")

    assert all(s.replica_error is None and s.primary_error is None for s in samples), samples
    assert all(s.lag_s is None and s.visible_seq is None for s in samples)
    lows = [s.lag_min_s for s in samples if s.lag_min_s is not None]
    assert len(lows) == len(samples)
    assert all(0.0 <= (s.lag_min_s or 0.0) <= s.utc - stopped_utc for s in samples)
    assert lows == sorted(lows) and lows[-1] > 0.4  # it grows with the stall
    assert lag_stats(samples).count == 0  # no upper bound: stats stay about seen heartbeats


def test_reading_the_lag_with_a_dead_primary_fails_with_the_reason(
    mariadb_pair: Any, run_id: str
) -> None:
    dead = MySqlEndpoint("127.0.0.1", free_port(), "app", "x", "app", connect_timeout_s=1.0)
    reading = read_replica_lag(
        dead.connect,
        lambda: mariadb_pair.replica.connect("app", read_timeout=2.0),
        1.2,
        seconds=0.3,
    )
    assert reading.value is None and reading.reason is not None
    assert reading.reason.startswith("no heartbeat written on the primary in ")
    assert "OperationalError" in reading.reason
