"""Replica lag from a heartbeat row: write a timestamp on the primary, read it on the replica.

``Seconds_Behind_Master`` only ever showed 0 or 1 on MariaDB 10.11 under a steady trickle of
writes, and says nothing once the SQL thread is stopped, so lag is measured directly: every
``interval_s`` the sampler upserts its heartbeat row (``seq``, ``ts`` = our own UTC clock) on the
primary, then reads the row on the replica. Both timestamps come from the sampler's clock, so the
database servers' clocks do not matter.

Each :class:`LagSample` brackets the true lag at the moment of the read:

- ``lag_s`` (upper bound) = now - ``ts`` of the heartbeat visible on the replica: the replica
  holds at least everything written up to that heartbeat;
- ``lag_min_s`` (lower bound) = now - the acknowledgement time of the first heartbeat written
  after the visible one (the replica does not have it yet, so its state is older than that
  commit); 0.0 when there is none. When the replica shows none of this sampler's heartbeats at
  all, the lower bound is now - the acknowledgement of the first one, and there is no upper
  bound: a heartbeat acknowledged at t0 and still not on the replica at t proves lag >= t - t0.

So the uncertainty is about one interval. ``Seconds_Behind_Master`` is recorded beside it for
comparison, never used for the figure.

:func:`read_replica_lag` is the readiness check built on it: it samples for a while and turns the
samples into a :class:`LagReading` (a figure, a proven lower bound, or the reason there is none).
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pymysql.cursors

from drdrill.errors import DrillError
from drdrill.timeline import Clock, Timeline

#: The default heartbeat table.
HEARTBEAT_TABLE = "drdrill_heartbeat"

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_WAIT_SLICE_S = 0.05
#: ER_SPECIFIC_ACCESS_DENIED_ERROR: the user lacks SLAVE MONITOR / REPLICATION CLIENT.
_ACCESS_DENIED = 1227
#: ER_NO_SUCH_TABLE: a replica that has not applied the table's creation has no heartbeat either.
_NO_SUCH_TABLE = 1146

#: Makes a new DB-API connection (PyMySQL); the sampler switches it to autocommit.
ConnectionFactory = Callable[[], Any]


class LagSamplerError(DrillError):
    """A lag sampler used wrongly or that did not stop in time."""


@dataclass(frozen=True)
class LagSample:
    """One reading of the replica: the lag bounds and what went wrong, if anything."""

    mono: float
    utc: float
    lag_s: float | None  # upper bound; None when no heartbeat is visible on the replica
    lag_min_s: float | None  # lower bound
    visible_seq: int | None
    written_seq: int | None  # the heartbeat written this tick; None if the write failed
    seconds_behind_master: int | None
    primary_error: str | None = None
    replica_error: str | None = None

    @property
    def uncertainty_s(self) -> float | None:
        """Width of the bracket ``[lag_min_s, lag_s]``."""
        if self.lag_s is None or self.lag_min_s is None:
            return None
        return self.lag_s - self.lag_min_s

    def to_json(self) -> dict[str, Any]:
        """The sample at the JSON edge."""
        return {
            "mono": self.mono,
            "utc": self.utc,
            "lag_s": self.lag_s,
            "lag_min_s": self.lag_min_s,
            "visible_seq": self.visible_seq,
            "written_seq": self.written_seq,
            "seconds_behind_master": self.seconds_behind_master,
            "primary_error": self.primary_error,
            "replica_error": self.replica_error,
        }


@dataclass(frozen=True)
class LagStats:
    """Summary of the samples that saw a heartbeat (upper bounds; nearest-rank percentiles)."""

    count: int
    max_s: float | None
    p50_s: float | None
    p95_s: float | None
    last_s: float | None
    max_uncertainty_s: float | None
    max_seconds_behind_master: int | None

    def to_json(self) -> dict[str, Any]:
        """The stats at the JSON edge."""
        return {
            "count": self.count,
            "max_s": self.max_s,
            "p50_s": self.p50_s,
            "p95_s": self.p95_s,
            "last_s": self.last_s,
            "max_uncertainty_s": self.max_uncertainty_s,
            "max_seconds_behind_master": self.max_seconds_behind_master,
        }


def percentile(values: Iterable[float], pct: float) -> float | None:
    """The nearest-rank percentile (``pct`` in 0-100) of ``values``; None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def lag_stats(samples: Iterable[LagSample]) -> LagStats:
    """Max, p50, p95 and last of the lag upper bounds, and the largest uncertainty."""
    seen = [s for s in samples if s.lag_s is not None]
    lags = [s.lag_s for s in seen if s.lag_s is not None]
    widths = [u for s in seen if (u := s.uncertainty_s) is not None]
    sbms = [s.seconds_behind_master for s in seen if s.seconds_behind_master is not None]
    return LagStats(
        count=len(lags),
        max_s=max(lags) if lags else None,
        p50_s=percentile(lags, 50),
        p95_s=percentile(lags, 95),
        last_s=lags[-1] if lags else None,
        max_uncertainty_s=max(widths) if widths else None,
        max_seconds_behind_master=max(sbms) if sbms else None,
    )


def lag_bounds(
    read_started_utc: float,
    read_done_utc: float,
    visible_ts: float,
    visible_seq: int,
    written: Mapping[int, float],
) -> tuple[float, float]:
    """``(lower, upper)`` bounds of the lag seen by a replica read (see the module docstring).

    ``written`` maps the sequence numbers of acknowledged heartbeats to the time the primary
    acknowledged them (a heartbeat's commit is no later than that). The read happened somewhere
    in ``[read_started_utc, read_done_utc]``, so the upper bound uses the end and the lower bound
    the start.
    """
    upper = max(0.0, read_done_utc - visible_ts)
    later = [ts for seq, ts in written.items() if seq > visible_seq]
    lower = max(0.0, read_started_utc - min(later)) if later else 0.0
    return min(lower, upper), upper


def unseen_lower_bound(read_started_utc: float, written: Mapping[int, float]) -> float | None:
    """The lag's lower bound when the replica shows none of the acknowledged heartbeats:
    ``read_started_utc`` - the first acknowledgement; None when none was acknowledged."""
    if not written:
        return None
    return max(0.0, read_started_utc - min(written.values()))


def _table(name: str) -> str:
    if not _TABLE_NAME.match(name):
        raise LagSamplerError(f"heartbeat table name {name!r} is not a plain identifier")
    return f"`{name}`"


def ensure_heartbeat_table(conn: Any, table: str = HEARTBEAT_TABLE) -> None:
    """Create the heartbeat table if it is missing (on the primary; it replicates)."""
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {_table(table)} ("
            " id VARCHAR(64) NOT NULL PRIMARY KEY,"
            " seq BIGINT NOT NULL,"
            " ts DOUBLE NOT NULL"
            ") ENGINE=InnoDB"
        )


class HeartbeatLagSampler:
    """Write a heartbeat on the primary and read it on the replica every ``interval_s``.

    One row per sampler (``heartbeat_id``, random by default), upserted with ``seq`` and
    ``ts``. Run it in a background thread (:meth:`start` / :meth:`stop`) or tick it by hand
    (:meth:`sample_once`). Connections are made by the factories, kept, switched to autocommit
    (a long-lived snapshot would hide new heartbeats), and remade after any error. Give them
    short read timeouts: a frozen server would otherwise stall the sampler.
    """

    def __init__(
        self,
        primary_conn_factory: ConnectionFactory,
        replica_conn_factory: ConnectionFactory,
        interval_s: float = 0.2,
        *,
        table: str = HEARTBEAT_TABLE,
        heartbeat_id: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not (interval_s > 0 and math.isfinite(interval_s)):
            raise LagSamplerError(f"lag sampler: interval {interval_s!r} s must be > 0")
        self.interval_s = float(interval_s)
        self.heartbeat_id = heartbeat_id or f"hb-{uuid.uuid4().hex[:16]}"
        self._primary_factory = primary_conn_factory
        self._replica_factory = replica_conn_factory
        self._table = _table(table)
        self._clock = clock or Clock()
        self._primary: Any = None
        self._replica: Any = None
        self._next_seq = 1
        self._written: dict[int, float] = {}
        self._samples: list[LagSample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._status_allowed = True

    # - control -

    def start(self) -> None:
        """Sample in a background thread until :meth:`stop`."""
        if self._thread is not None:
            raise LagSamplerError(f"lag sampler '{self.heartbeat_id}' already started")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name=f"drdrill-lag-{self.heartbeat_id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> tuple[LagSample, ...]:
        """Stop after the tick in progress, close the connections, return all samples."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise LagSamplerError(
                    f"lag sampler '{self.heartbeat_id}' did not stop within {timeout:.1f} s"
                )
        self.close()
        if self._failure is not None:
            raise LagSamplerError(
                f"lag sampler '{self.heartbeat_id}' crashed: {self._failure!r}"
            ) from self._failure
        return self.samples()

    def close(self) -> None:
        """Close both connections (they are remade on the next tick)."""
        self._primary = _closed(self._primary)
        self._replica = _closed(self._replica)

    def samples(self) -> tuple[LagSample, ...]:
        """The samples so far (safe while sampling)."""
        with self._lock:
            return tuple(self._samples)

    def stats(self) -> LagStats:
        """Summary of the samples so far."""
        return lag_stats(self.samples())

    # - one tick -

    def sample_once(self) -> LagSample:
        """Write one heartbeat on the primary, read the replica, record and return the sample."""
        seq = self._next_seq
        self._next_seq += 1
        written_seq, primary_error = self._beat(seq)
        sample = self._read(written_seq, primary_error)
        with self._lock:
            self._samples.append(sample)
        return sample

    def _beat(self, seq: int) -> tuple[int | None, str | None]:
        try:
            if self._primary is None:
                self._primary = _autocommit(self._primary_factory())
            ts = self._clock.wall()
            with self._primary.cursor() as cur:
                cur.execute(
                    f"INSERT INTO {self._table} (id, seq, ts) VALUES (%s, %s, %s) "
                    "ON DUPLICATE KEY UPDATE seq = VALUES(seq), ts = VALUES(ts)",
                    (self.heartbeat_id, seq, ts),
                )
            # the commit happened by now (autocommit): a lower bound measured from here never
            # counts the INSERT's own round trip as lag
            acked = self._clock.wall()
        except Exception as exc:  # a failed beat is data (the primary is down), not a crash
            self._primary = _closed(self._primary)
            return None, _short(exc)
        self._written[seq] = acked
        return seq, None

    def _read(self, written_seq: int | None, primary_error: str | None) -> LagSample:
        mono = self._clock.mono()
        before = self._clock.wall()
        visible: tuple[int, float] | None = None
        sbm: int | None = None
        replica_error: str | None = None
        try:
            if self._replica is None:
                self._replica = _autocommit(self._replica_factory())
            row = self._heartbeat_row()
            after = self._clock.wall()
            if row is not None:
                visible = (int(row[0]), float(row[1]))
            sbm = self._seconds_behind_master()
        except Exception as exc:  # the replica being unreachable is data too
            self._replica = _closed(self._replica)
            replica_error = _short(exc)
            after = self._clock.wall()
        lag: float | None = None
        lag_min: float | None = None
        visible_seq: int | None = None
        if visible is not None:
            visible_seq = visible[0]
            lag_min, lag = lag_bounds(before, after, visible[1], visible_seq, self._written)
            # Heartbeats the replica has are no longer needed for a lower bound.
            for old in [s for s in self._written if s < visible_seq]:
                del self._written[old]
        elif replica_error is None:
            # the replica answered and has none of our heartbeats: only a lower bound
            lag_min = unseen_lower_bound(before, self._written)
        return LagSample(
            mono=mono,
            utc=after,
            lag_s=lag,
            lag_min_s=lag_min,
            visible_seq=visible_seq,
            written_seq=written_seq,
            seconds_behind_master=sbm,
            primary_error=primary_error,
            replica_error=replica_error,
        )

    def _heartbeat_row(self) -> Any:
        """This sampler's heartbeat row on the replica; None when it has none (or not even the
        table: a replica that has not applied its creation has no heartbeat either)."""
        try:
            with self._replica.cursor() as cur:
                cur.execute(
                    f"SELECT seq, ts FROM {self._table} WHERE id = %s", (self.heartbeat_id,)
                )
                return cur.fetchone()
        except pymysql.err.ProgrammingError as exc:
            if exc.args and exc.args[0] == _NO_SUCH_TABLE:
                return None
            raise

    def _seconds_behind_master(self) -> int | None:
        """``Seconds_Behind_Master`` (``_Source`` on MySQL 8), None if absent or not allowed."""
        if not self._status_allowed:
            return None
        try:
            with self._replica.cursor(pymysql.cursors.DictCursor) as cur:
                cur.execute("SHOW SLAVE STATUS")
                row = cur.fetchone()
        except pymysql.err.MySQLError as exc:
            if exc.args and exc.args[0] == _ACCESS_DENIED:
                self._status_allowed = False  # permanent: stop asking
                return None
            raise
        if not row:
            return None
        value = row.get("Seconds_Behind_Master", row.get("Seconds_Behind_Source"))
        return None if value is None else int(value)

    def _loop(self) -> None:
        try:
            start = self._clock.mono()
            slot = 0
            while not self._stop.is_set():
                due = start + slot * self.interval_s
                remaining = due - self._clock.mono()
                if remaining > 0:
                    self._stop.wait(min(remaining, _WAIT_SLICE_S))
                    continue
                self.sample_once()
                # A slow tick is not followed by a burst of catch-up ticks.
                elapsed = math.floor((self._clock.mono() - start) / self.interval_s + 1e-9)
                slot = max(slot + 1, elapsed)
        except BaseException as exc:  # surfaced by stop(); a thread must not die silently
            self._failure = exc


# --- readiness ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LagReading:
    """What a readiness check learnt of a replica's lag, in seconds; one of three shapes:

    - :meth:`measured`: the lag lies in ``value`` ± ``uncertainty``;
    - :meth:`at_least`: ``lower_bound_only``, the lag is at least ``value`` and could be any
      amount more (a heartbeat never seen on the replica); ``reason`` says so;
    - :meth:`missing`: no figure at all (``value`` None); ``reason`` says why.

    A readiness check fails on a missing figure: no lag is no evidence that the replica keeps up.
    """

    value: float | None
    uncertainty: float = 0.0
    lower_bound_only: bool = False
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.value is None and not self.reason:
            raise ValueError("a lag reading without a value needs a reason")
        if self.lower_bound_only and (self.value is None or not self.reason):
            raise ValueError("a lower-bound lag reading needs a value and a reason")
        if not (math.isfinite(self.uncertainty) and self.uncertainty >= 0):
            raise ValueError(f"lag uncertainty {self.uncertainty!r} must be finite and >= 0")

    @classmethod
    def measured(cls, value: float, uncertainty: float, reason: str | None = None) -> LagReading:
        """The lag lies in ``value`` ± ``uncertainty``."""
        return cls(value, uncertainty, False, reason)

    @classmethod
    def at_least(cls, lower: float, reason: str) -> LagReading:
        """The lag is at least ``lower`` (no upper bound); ``reason`` says how that is known."""
        return cls(lower, 0.0, True, reason)

    @classmethod
    def missing(cls, reason: str) -> LagReading:
        """No figure; ``reason`` says why."""
        return cls(None, 0.0, False, reason)

    def to_json(self) -> dict[str, Any]:
        """The reading at the JSON edge."""
        return {
            "value": self.value,
            "uncertainty": self.uncertainty,
            "lower_bound_only": self.lower_bound_only,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ReplicationState:
    """Whether the DR database replicates and, when it does not, why; true when it does."""

    running: bool
    reason: str | None = None

    def __post_init__(self) -> None:
        if not self.running and not self.reason:
            raise ValueError("replication that is not running needs a reason")

    def __bool__(self) -> bool:
        return self.running


def _settled(previous: LagSample | None, sample: LagSample, rpo_s: float | None) -> bool:
    """Whether sampling longer could no longer change the verdict against ``rpo_s``."""
    if rpo_s is None or sample.lag_min_s is None:
        return True  # nothing to judge against, or nothing acknowledged or readable to wait for
    if sample.lag_min_s > rpo_s:
        return True  # proven over the RPO
    if sample.lag_s is None:
        return False  # no heartbeat seen yet: wait for one, or for the proof
    caught_up = sample.lag_min_s == 0.0  # every acknowledged heartbeat is on the replica
    advancing = (
        previous is not None
        and previous.visible_seq is not None
        and sample.visible_seq is not None
        and sample.visible_seq > previous.visible_seq
    )
    # a replica that stopped applying still shows its last heartbeat, with a small lag at
    # first: only one that keeps up, within the RPO, is done
    return (caught_up or advancing) and sample.lag_s <= rpo_s


def judge_lag(samples: Iterable[LagSample], rpo_s: float | None, window_s: float) -> LagReading:
    """The lag over ``samples`` (taken over ``window_s``) as one reading.

    The worst lag over the window lies between the largest lower bound and the largest upper
    bound; where no heartbeat was ever seen, or one went unseen for longer than any seen one's
    upper bound, only the lower bound is known. No acknowledged heartbeat, or a replica that never
    answered, gives no figure at all.
    """
    taken = list(samples)
    if not taken:
        return LagReading.missing("no heartbeat lag sample was taken")
    if all(s.written_seq is None for s in taken):
        error = next((s.primary_error for s in reversed(taken) if s.primary_error), "no error")
        return LagReading.missing(
            f"no heartbeat written on the primary in {window_s:.1f} s: {error}"
        )
    lows = [s.lag_min_s for s in taken if s.lag_min_s is not None]
    highs = [s.lag_s for s in taken if s.lag_s is not None]
    if not lows:
        error = next((s.replica_error for s in reversed(taken) if s.replica_error), "no error")
        return LagReading.missing(f"replica unreadable for {window_s:.1f} s: {error}")
    low = max(lows)
    over = rpo_s is not None and low > rpo_s
    within = f"within {rpo_s:g} s" if over else f"in {window_s:.1f} s of sampling"
    # a lower bound > 0 is always a heartbeat the primary acknowledged that the replica lacked
    # shown rounded down to the millisecond, so that the figure shown is a lower bound too
    unseen = (
        f"heartbeat not seen on the replica {within} (lag >= {math.floor(low * 1000) / 1000:.3f} s)"
    )
    if not highs or low > max(highs):
        return LagReading.at_least(low, unseen)
    high = max(highs)
    return LagReading.measured((low + high) / 2, (high - low) / 2, unseen if over else None)


def read_replica_lag(
    primary_conn_factory: ConnectionFactory,
    replica_conn_factory: ConnectionFactory,
    rpo_s: float | None,
    *,
    seconds: float = 2.0,
    interval_s: float = 0.1,
    table: str = HEARTBEAT_TABLE,
    timeline: Timeline | None = None,
    clock: Clock | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> LagReading:
    """Sample the heartbeat lag every ``interval_s`` for ``seconds``; judge it (:func:`judge_lag`).

    A replica that after ``seconds`` shows no heartbeat, or no newer one than before while newer
    ones were acknowledged, is sampled on until it keeps up again or the lower bound passes
    ``rpo_s`` (at most ``seconds + rpo_s`` and three intervals): a stopped replica is proven over
    its RPO rather than passed as merely unseen, or seen with a lag that has not grown yet.
    The heartbeat table must exist on the primary (:func:`ensure_heartbeat_table`). With a
    ``timeline``, the start of the sampling and the reading are marked on it.
    """
    if not (seconds > 0 and math.isfinite(seconds)):
        raise LagSamplerError(f"lag reading: sampling time {seconds!r} s must be > 0")
    if rpo_s is not None and not (rpo_s >= 0 and math.isfinite(rpo_s)):
        raise LagSamplerError(f"lag reading: rpo {rpo_s!r} s must be >= 0")
    clock = clock or Clock()
    sampler = HeartbeatLagSampler(
        primary_conn_factory, replica_conn_factory, interval_s, table=table, clock=clock
    )
    # a stall that starts by ``seconds`` is proven over the RPO within this: its first unseen
    # heartbeat is written within an interval, and read on within another
    limit = seconds + (rpo_s or 0.0) + 3 * interval_s
    started = clock.mono()
    if timeline is not None:
        timeline.mark("lag_sampling_started", heartbeat_id=sampler.heartbeat_id, rpo_s=rpo_s)
    try:
        slot = 0
        previous: LagSample | None = None
        while True:
            sample = sampler.sample_once()
            elapsed = clock.mono() - started
            if elapsed >= limit or (elapsed >= seconds and _settled(previous, sample, rpo_s)):
                break
            previous = sample
            # a slow tick is not followed by a burst of catch-up ticks
            slot = max(slot + 1, math.floor(elapsed / interval_s + 1e-9))
            sleep(max(0.0, started + slot * interval_s - clock.mono()))
    finally:
        sampler.close()
    reading = judge_lag(sampler.samples(), rpo_s, clock.mono() - started)
    if timeline is not None:
        timeline.mark("replica_lag_read", **reading.to_json())
    return reading


def _autocommit(conn: Any) -> Any:
    conn.autocommit(True)
    return conn


def _closed(conn: Any) -> Any:
    """Close ``conn`` if there is one; return what the slot should hold now (None)."""
    if conn is not None:
        with contextlib.suppress(Exception):  # already broken: closing is best effort
            conn.close()
    return None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:200]
