"""RPO write markers: numbered, timestamped writes at a steady rate, and what survived them.

A :class:`MarkerWriter` sends markers 1, 2, 3, ... through a :class:`WriteSink` (the database
directly, or the app's write endpoint) on a fixed grid of slots, and records for each one when it
was sent and whether, and when, it was acknowledged. After a failover, the ids present on the new
primary (:func:`read_present_markers`) and the log give an :class:`RpoResult`
(:func:`verify_markers`): the acknowledged writes that were lost, and the data-loss window.

Markers carry their own ids and never use the table's AUTO_INCREMENT: a promoted replica reuses
the auto-increment values of rows it never received.

**Scheduling.** Slot ``k`` is due at ``start + k / rate_hz`` (monotonic clock). Writes are
sequential: one outstanding write at a time, each bounded by the sink's own timeouts. A marker is
sent at ``max(due time, previous write done)``. When a write finishes after later slots have come
due, the marker goes out at once for the latest slot that came due and the slots in between are
recorded in :attr:`WriteLog.skipped_slots`: a stall shows as skipped slots, never as a burst of
back-dated writes. Marker ids stay consecutive whatever the slots do.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import pymysql

from drdrill.errors import DrillError
from drdrill.timeline import Clock

#: The default marker table.
MARKER_TABLE = "drdrill_markers"

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: Slices of a wait, so that ``stop()`` is honoured promptly whatever the clock.
_WAIT_SLICE_S = 0.05


class WriteRejected(DrillError):
    """A write the sink refused or could not confirm (a non-2xx answer, a wrong echo)."""


class WriterError(DrillError):
    """A marker writer used wrongly or that did not stop in time."""


@dataclass(frozen=True)
class Marker:
    """One numbered write: the run it belongs to, its id and its send time (UTC epoch s)."""

    run_id: str
    marker_id: int
    sent_utc: float


class WriteSink(Protocol):
    """Where markers go. ``write`` returns only once the write is acknowledged, else raises."""

    def write(self, marker: Marker) -> None:
        """Write one marker durably; raise on any failure or doubt."""
        ...

    def close(self) -> None:
        """Release connections; the writer calls it once when it stops."""
        ...


@dataclass(frozen=True)
class MarkerRecord:
    """What happened to one marker: when it was due, sent and done, and how it ended."""

    marker_id: int
    slot: int
    due_mono: float
    sent_mono: float
    sent_utc: float
    done_mono: float
    done_utc: float
    acknowledged: bool
    error: str | None = None  # the exception class, e.g. "OperationalError"
    error_message: str | None = None

    @property
    def ack_utc(self) -> float | None:
        """When the acknowledgement came back (UTC epoch s), None if it never did."""
        return self.done_utc if self.acknowledged else None

    @property
    def latency_s(self) -> float:
        """From send to acknowledgement or failure."""
        return self.done_mono - self.sent_mono

    def to_json(self) -> dict[str, Any]:
        """The record at the JSON edge."""
        return {
            "marker_id": self.marker_id,
            "slot": self.slot,
            "due_mono": self.due_mono,
            "sent_mono": self.sent_mono,
            "sent_utc": self.sent_utc,
            "done_mono": self.done_mono,
            "done_utc": self.done_utc,
            "acknowledged": self.acknowledged,
            "error": self.error,
            "error_message": self.error_message,
        }


@dataclass(frozen=True)
class WriteLog:
    """Every marker a writer sent, in order, and the grid slots it had to skip."""

    run_id: str
    rate_hz: float
    started_mono: float
    started_utc: float
    stopped_mono: float | None
    records: tuple[MarkerRecord, ...]
    skipped_slots: tuple[int, ...] = ()

    @property
    def sent(self) -> int:
        """How many markers were sent."""
        return len(self.records)

    @property
    def acknowledged_ids(self) -> frozenset[int]:
        """The ids of the acknowledged markers."""
        return frozenset(r.marker_id for r in self.records if r.acknowledged)

    @property
    def failed(self) -> tuple[MarkerRecord, ...]:
        """The markers that were not acknowledged."""
        return tuple(r for r in self.records if not r.acknowledged)

    def record(self, marker_id: int) -> MarkerRecord:
        """The record of one marker (ids are consecutive from 1)."""
        if 1 <= marker_id <= len(self.records):
            found = self.records[marker_id - 1]
            if found.marker_id == marker_id:
                return found
        for rec in self.records:
            if rec.marker_id == marker_id:
                return rec
        raise KeyError(marker_id)

    def to_json(self) -> dict[str, Any]:
        """The log at the JSON edge."""
        return {
            "run_id": self.run_id,
            "rate_hz": self.rate_hz,
            "started_mono": self.started_mono,
            "started_utc": self.started_utc,
            "stopped_mono": self.stopped_mono,
            "sent": self.sent,
            "acknowledged": len(self.acknowledged_ids),
            "skipped_slots": list(self.skipped_slots),
            "records": [r.to_json() for r in self.records],
        }


class MarkerWriter:
    """Send markers through a sink at ``rate_hz`` on a fixed grid (see the module docstring).

    Run it in a background thread with :meth:`start` / :meth:`stop`, or in the calling thread
    for a set time with :meth:`run`. ``clock`` and ``sleep`` are injectable so that the grid
    logic can be tested without waiting; without ``sleep`` the writer waits on its stop event,
    so :meth:`stop` interrupts a wait at once.
    """

    def __init__(
        self,
        sink: WriteSink,
        rate_hz: float,
        run_id: str,
        *,
        clock: Clock | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if not (rate_hz > 0 and math.isfinite(rate_hz)):
            raise WriterError(f"marker writer '{run_id}': rate {rate_hz!r} Hz must be > 0")
        if not run_id or len(run_id) > 64:
            raise WriterError(f"marker writer: run id {run_id!r} must be 1-64 characters")
        self.sink = sink
        self.rate_hz = float(rate_hz)
        self.run_id = run_id
        self._clock = clock or Clock()
        self._sleep = sleep
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._records: list[MarkerRecord] = []
        self._skipped: list[int] = []
        self._started_mono: float | None = None
        self._started_utc = 0.0
        self._stopped_mono: float | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    # - control -

    def start(self) -> None:
        """Start writing in a background thread."""
        if self._started_mono is not None:
            raise WriterError(f"marker writer '{self.run_id}' already started")
        self._begin()
        self._thread = threading.Thread(
            target=self._loop_guarded, args=(None,), name=f"drdrill-writer-{self.run_id}"
        )
        self._thread.daemon = True
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> WriteLog:
        """Stop after the write in flight (bounded by the sink's timeouts); return the log."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise WriterError(
                    f"marker writer '{self.run_id}' did not stop within {timeout:.1f} s: "
                    "a write is hanging (sink without timeouts?)"
                )
        if self._failure is not None:
            raise WriterError(
                f"marker writer '{self.run_id}' crashed: {self._failure!r}"
            ) from self._failure
        return self.log()

    def run(self, duration_s: float) -> WriteLog:
        """Write in the calling thread for ``duration_s`` (on the writer's clock); return the log.

        Slots due before ``start + duration_s`` are sent: ``duration_s * rate_hz`` markers when
        no write stalls.
        """
        if self._started_mono is not None:
            raise WriterError(f"marker writer '{self.run_id}' already started")
        self._begin()
        self._loop(duration_s)
        return self.log()

    def log(self) -> WriteLog:
        """A snapshot of the log so far (safe while the writer runs)."""
        with self._lock:
            return WriteLog(
                run_id=self.run_id,
                rate_hz=self.rate_hz,
                started_mono=self._started_mono if self._started_mono is not None else 0.0,
                started_utc=self._started_utc,
                stopped_mono=self._stopped_mono,
                records=tuple(self._records),
                skipped_slots=tuple(self._skipped),
            )

    # - the loop -

    def _begin(self) -> None:
        self._started_mono = self._clock.mono()
        self._started_utc = self._clock.wall()

    def _loop_guarded(self, duration_s: float | None) -> None:
        try:
            self._loop(duration_s)
        except BaseException as exc:  # surfaced by stop(); a thread must not die silently
            self._failure = exc

    def _loop(self, duration_s: float | None) -> None:
        assert self._started_mono is not None
        start = self._started_mono
        period = 1.0 / self.rate_hz
        end = None if duration_s is None else start + duration_s
        slot = 0
        next_id = 1
        try:
            while not self._stop.is_set():
                due = start + slot * period
                if end is not None and due >= end:
                    break
                if not self._wait_until(due):
                    break
                self._write_one(next_id, slot, due)
                next_id += 1
                # The latest slot that has come due by now; slots before it that passed while
                # the write was outstanding are skipped, not sent late in a burst.
                latest_due = math.floor((self._clock.mono() - start) * self.rate_hz + 1e-9)
                following = slot + 1
                if latest_due > following:
                    with self._lock:
                        self._skipped.extend(range(following, latest_due))
                    following = latest_due
                slot = following
        finally:
            with self._lock:
                self._stopped_mono = self._clock.mono()
            self.sink.close()

    def _wait_until(self, due: float) -> bool:
        """Wait until ``due`` on the clock; False if stopped meanwhile."""
        while True:
            if self._stop.is_set():
                return False
            remaining = due - self._clock.mono()
            if remaining <= 0:
                return True
            if self._sleep is None:
                self._stop.wait(min(remaining, _WAIT_SLICE_S))
            else:
                self._sleep(min(remaining, _WAIT_SLICE_S))

    def _write_one(self, marker_id: int, slot: int, due: float) -> None:
        sent_mono = self._clock.mono()
        sent_utc = self._clock.wall()
        error: str | None = None
        message: str | None = None
        try:
            self.sink.write(Marker(self.run_id, marker_id, sent_utc))
        except Exception as exc:  # any failure is an unacknowledged write, recorded as such
            error = type(exc).__name__
            message = " ".join(str(exc).split())[:200]
        record = MarkerRecord(
            marker_id=marker_id,
            slot=slot,
            due_mono=due,
            sent_mono=sent_mono,
            sent_utc=sent_utc,
            done_mono=self._clock.mono(),
            done_utc=self._clock.wall(),
            acknowledged=error is None,
            error=error,
            error_message=message,
        )
        with self._lock:
            self._records.append(record)


# --- verification --------------------------------------------------------------------------


@dataclass(frozen=True)
class RpoResult:
    """What survived a failover, from the writer's log and the ids on the new primary.

    ``data_loss_window_s`` runs from ``last_safe_utc`` to ``last_lost_utc``:

    - ``last_safe_utc``: the acknowledgement time of the latest acknowledged marker that
      survived and was sent before the first lost one (the last moment known to be safe); if
      there is none, the send time of the first lost marker;
    - ``last_lost_utc``: the acknowledgement time of the last lost acknowledged marker.

    It is the span of acknowledged history that the failover took away (one lost marker at
    50 Hz gives ~0.02 s); 0.0 when no acknowledged write was lost. ``first_lost_utc`` is the
    acknowledgement time of the first lost marker. Unacknowledged markers that landed anyway
    are not losses; they are reported in ``unacknowledged_landed``. Ids present on the
    primary that the log does not know (a write in flight when the log was taken) are counted
    in ``unexpected_present`` and otherwise ignored.
    """

    run_id: str
    sent: int
    acknowledged: int
    present_acknowledged: int
    lost_acknowledged: int
    lost_ids: tuple[int, ...]
    unacknowledged_landed: int
    unacknowledged_landed_ids: tuple[int, ...]
    unexpected_present: int
    data_loss_window_s: float
    last_safe_utc: float | None
    first_lost_utc: float | None
    last_lost_utc: float | None

    def to_json(self) -> dict[str, Any]:
        """The result at the JSON edge."""
        return {
            "run_id": self.run_id,
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "present_acknowledged": self.present_acknowledged,
            "lost_acknowledged": self.lost_acknowledged,
            "lost_ids": list(self.lost_ids),
            "unacknowledged_landed": self.unacknowledged_landed,
            "unacknowledged_landed_ids": list(self.unacknowledged_landed_ids),
            "unexpected_present": self.unexpected_present,
            "data_loss_window_s": self.data_loss_window_s,
            "last_safe_utc": self.last_safe_utc,
            "first_lost_utc": self.first_lost_utc,
            "last_lost_utc": self.last_lost_utc,
        }


def verify_markers(log: WriteLog, present_ids: Iterable[int]) -> RpoResult:
    """Compare the writer's log with the marker ids present on the new primary."""
    present = frozenset(present_ids)
    by_id = {r.marker_id: r for r in log.records}
    acked = [r for r in log.records if r.acknowledged]
    lost = sorted(r.marker_id for r in acked if r.marker_id not in present)
    landed = sorted(
        r.marker_id for r in log.records if not r.acknowledged and r.marker_id in present
    )
    window = 0.0
    last_safe: float | None = None
    first_lost: float | None = None
    last_lost: float | None = None
    if lost:
        first = by_id[lost[0]]
        last = by_id[lost[-1]]
        first_lost = first.done_utc
        last_lost = last.done_utc
        safe = [
            r.done_utc for r in acked if r.marker_id < first.marker_id and r.marker_id in present
        ]
        last_safe = max(safe) if safe else first.sent_utc
        window = max(0.0, last_lost - last_safe)
    return RpoResult(
        run_id=log.run_id,
        sent=log.sent,
        acknowledged=len(acked),
        present_acknowledged=len(acked) - len(lost),
        lost_acknowledged=len(lost),
        lost_ids=tuple(lost),
        unacknowledged_landed=len(landed),
        unacknowledged_landed_ids=tuple(landed),
        unexpected_present=len(present - by_id.keys()),
        data_loss_window_s=window,
        last_safe_utc=last_safe,
        first_lost_utc=first_lost,
        last_lost_utc=last_lost,
    )


# --- the MySQL sink and table ----------------------------------------------------------------


def _table(name: str) -> str:
    if not _TABLE_NAME.match(name):
        raise WriterError(f"marker table name {name!r} is not a plain identifier")
    return f"`{name}`"


def ensure_marker_table(conn: Any, table: str = MARKER_TABLE) -> None:
    """Create the marker table if it is missing (on the primary; it replicates)."""
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {_table(table)} ("
            " run_id VARCHAR(64) NOT NULL,"
            " marker_id BIGINT NOT NULL,"
            " sent_utc DOUBLE NOT NULL,"
            " PRIMARY KEY (run_id, marker_id)"
            ") ENGINE=InnoDB"
        )


def read_present_markers(conn: Any, run_id: str, table: str = MARKER_TABLE) -> set[int]:
    """The marker ids of ``run_id`` present in the table, read in one statement.

    Use an autocommit connection (or one without an open transaction): an old snapshot would
    hide rows that are there.
    """
    with conn.cursor() as cur:
        cur.execute(f"SELECT marker_id FROM {_table(table)} WHERE run_id = %s", (run_id,))
        return {int(row[0]) for row in cur.fetchall()}


@dataclass(frozen=True)
class MySqlEndpoint:
    """Where and how a sink connects, with short timeouts so a dead server cannot stall it."""

    host: str
    port: int
    user: str
    password: str
    database: str
    connect_timeout_s: float = 1.0
    read_timeout_s: float = 2.0
    write_timeout_s: float = 2.0
    #: offer TLS (PyMySQL's default since 1.2: used when the server has it). False for a server
    #: that serves none (the sandbox's): PyMySQL builds a default SSL context for every
    #: connection that offers it, ~40 ms of CPU loading the system's CA bundle
    tls: bool = True

    def connect(self, autocommit: bool = False) -> Any:
        """A new PyMySQL connection (autocommit off unless asked)."""
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=self.database,
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.read_timeout_s,
            write_timeout=self.write_timeout_s,
            autocommit=autocommit,
            charset="utf8mb4",
            ssl_disabled=not self.tls,
        )


class MySqlSink:
    """Markers straight into the database: ``INSERT``, then ``COMMIT`` acknowledges.

    ``connect`` makes a new connection (e.g. :meth:`MySqlEndpoint.connect`); it should carry short
    read/write timeouts. After any failure the connection is dropped and the next write
    reconnects; a failed write is never retried (the next marker is the retry).
    """

    def __init__(self, connect: Callable[[], Any], table: str = MARKER_TABLE) -> None:
        self._connect = connect
        self._insert = (
            f"INSERT INTO {_table(table)} (run_id, marker_id, sent_utc) VALUES (%s, %s, %s)"
        )
        self._conn: Any = None

    def write(self, marker: Marker) -> None:
        """Insert and commit one marker; raise (and drop the connection) on any failure."""
        try:
            if self._conn is None:
                self._conn = self._connect()
                self._conn.autocommit(False)
            with self._conn.cursor() as cur:
                cur.execute(self._insert, (marker.run_id, marker.marker_id, marker.sent_utc))
            self._conn.commit()
        except BaseException:
            self._drop()
            raise

    def close(self) -> None:
        """Close the connection, if any."""
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: closing is best effort
                conn.close()


# --- the HTTP sink --------------------------------------------------------------------------------


class HttpSink:
    """Markers through the app's write endpoint: ``POST {"run", "marker", "ts"}`` as JSON.

    Acknowledged only on a 2xx answer whose JSON body is ``{"ok": true, "marker": <id>}`` with
    the id echoed. Uses the standard library (``http.client``) with one keep-alive connection;
    ``timeout_s`` bounds each socket operation. A request on a reused connection that the
    server had already closed is retried once on a fresh one (the usual keep-alive race).
    """

    def __init__(self, url: str, *, timeout_s: float = 2.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WriterError(f"http sink: {url!r} is not an http(s) url")
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def write(self, marker: Marker) -> None:
        """POST one marker; raise unless the answer acknowledges this very marker."""
        body = json.dumps(
            {"run": marker.run_id, "marker": marker.marker_id, "ts": marker.sent_utc}
        ).encode()
        reused = self._conn is not None
        try:
            status, data = self._post(body)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self._drop()
            if not reused:
                raise
            status, data = self._post(body)
        except BaseException:
            self._drop()
            raise
        if not 200 <= status < 300:
            raise WriteRejected(f"http write {marker.marker_id} to {self.url}: status {status}")
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if not (
            isinstance(answer, dict)
            and answer.get("ok") is True
            and answer.get("marker") == marker.marker_id
        ):
            raise WriteRejected(
                f"http write {marker.marker_id} to {self.url}: answer does not acknowledge it: "
                f"{data[:100]!r}"
            )

    def close(self) -> None:
        """Close the keep-alive connection, if any."""
        self._drop()

    def _post(self, body: bytes) -> tuple[int, bytes]:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        conn = self._conn
        try:
            conn.request(
                "POST", self._path, body=body, headers={"Content-Type": "application/json"}
            )
            resp = conn.getresponse()
            data = resp.read()
        except BaseException:
            self._drop()
            raise
        if resp.will_close:
            self._drop()
        return resp.status, data

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
