"""RPO write markers: the verifier on hand-made logs, the writer's grid on a fake clock, and
real writes into a MariaDB primary, directly and through an HTTP app, across a kill -9 and a
promotion of the replica."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from drdrill.probes.writes import (
    HttpSink,
    Marker,
    MarkerRecord,
    MarkerWriter,
    MySqlSink,
    WriteLog,
    WriterError,
    ensure_marker_table,
    read_present_markers,
    verify_markers,
)
from drdrill.sandbox.mariadb import promote_replica, replication_status, wait_for_replica
from drdrill.timeline import Clock

# --- helpers ------------------------------------------------------------------------------------

EPOCH = 1_760_000_000.0  # UTC of mono 0 in the hand-made logs


def rec(marker_id: int, sent: float, done: float, acked: bool = True) -> MarkerRecord:
    """A record sent at ``sent`` and done at ``done`` (seconds after ``EPOCH``)."""
    return MarkerRecord(
        marker_id=marker_id,
        slot=marker_id - 1,
        due_mono=sent,
        sent_mono=sent,
        sent_utc=EPOCH + sent,
        done_mono=done,
        done_utc=EPOCH + done,
        acknowledged=acked,
        error=None if acked else "OperationalError",
    )


def steady_log(
    n: int, period: float = 0.1, latency: float = 0.01, failed: set[int] | None = None
) -> WriteLog:
    """Markers 1..n sent every ``period``, each done ``latency`` later; ``failed`` not acked."""
    failed = failed or set()
    records = tuple(
        rec(i, (i - 1) * period, (i - 1) * period + latency, acked=i not in failed)
        for i in range(1, n + 1)
    )
    return WriteLog("run", 1 / period, 0.0, EPOCH, n * period, records)


class FakeClock:
    """A clock that moves only when someone sleeps (or a sink pretends to be slow)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def mono(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + EPOCH

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def clock(self) -> Clock:
        return Clock(mono=self.mono, wall=self.wall)


class ListSink:
    """An in-memory sink: keeps what it is given, can be slow or fail on chosen markers."""

    def __init__(
        self,
        clock: FakeClock | None = None,
        slow: dict[int, float] | None = None,
        fail: set[int] | None = None,
    ) -> None:
        self.clock = clock
        self.slow = slow or {}
        self.fail = fail or set()
        self.got: list[Marker] = []
        self.closed = False

    def write(self, marker: Marker) -> None:
        if self.clock is not None:
            self.clock.sleep(self.slow.get(marker.marker_id, 0.0))
        if marker.marker_id in self.fail:
            raise ConnectionError(f"refused {marker.marker_id}")
        self.got.append(marker)

    def close(self) -> None:
        self.closed = True


# --- verify_markers: pure -----------------------------------------------------------------------


def test_nothing_lost_gives_zero_window() -> None:
    log = steady_log(10)
    result = verify_markers(log, set(range(1, 11)))
    assert (result.sent, result.acknowledged, result.lost_acknowledged) == (10, 10, 0)
    assert result.lost_ids == ()
    assert result.data_loss_window_s == 0.0
    assert result.last_safe_utc is None and result.first_lost_utc is None


def test_tail_lost_window_runs_from_last_safe_ack_to_last_lost_ack() -> None:
    log = steady_log(10)  # marker i acked at (i-1)*0.1 + 0.01
    result = verify_markers(log, set(range(1, 8)))
    assert result.lost_ids == (8, 9, 10)
    assert result.lost_acknowledged == 3
    assert result.present_acknowledged == 7
    assert result.last_safe_utc == pytest.approx(EPOCH + 0.61)  # ack of marker 7
    assert result.first_lost_utc == pytest.approx(EPOCH + 0.71)  # ack of marker 8
    assert result.last_lost_utc == pytest.approx(EPOCH + 0.91)  # ack of marker 10
    assert result.data_loss_window_s == pytest.approx(0.3)


def test_one_lost_marker_costs_one_period() -> None:
    result = verify_markers(steady_log(10, period=0.02), set(range(1, 10)))
    assert result.lost_ids == (10,)
    assert result.data_loss_window_s == pytest.approx(0.02)


def test_nothing_safe_before_first_loss_starts_window_at_its_send() -> None:
    result = verify_markers(steady_log(3), set())
    assert result.lost_ids == (1, 2, 3)
    assert result.last_safe_utc == pytest.approx(EPOCH + 0.0)  # send of marker 1
    assert result.data_loss_window_s == pytest.approx(0.21)  # ack of marker 3


def test_scattered_losses_span_from_before_the_first_to_the_last() -> None:
    result = verify_markers(steady_log(7), {1, 2, 4, 5, 7})
    assert result.lost_ids == (3, 6)
    assert result.last_safe_utc == pytest.approx(EPOCH + 0.11)  # marker 2, not 5
    assert result.data_loss_window_s == pytest.approx(0.51 - 0.11)


def test_unacknowledged_writes_are_never_losses_but_landed_ones_are_reported() -> None:
    log = steady_log(8, failed={4, 7, 8})
    result = verify_markers(log, {1, 2, 3, 4, 5, 6, 8, 99})
    assert result.acknowledged == 5
    assert result.lost_acknowledged == 0
    assert result.unacknowledged_landed_ids == (4, 8)
    assert result.unacknowledged_landed == 2
    assert result.unexpected_present == 1  # 99 was never sent by this log


def test_counts_add_up_and_json_is_plain() -> None:
    log = steady_log(20, failed={18, 19, 20})
    result = verify_markers(log, set(range(1, 15)) | {19})
    assert result.acknowledged == result.present_acknowledged + result.lost_acknowledged
    assert result.lost_ids == (15, 16, 17)
    assert result.unacknowledged_landed_ids == (19,)
    data = json.loads(json.dumps(result.to_json()))
    assert data["lost_ids"] == [15, 16, 17]
    assert data["data_loss_window_s"] == pytest.approx(result.data_loss_window_s)
    assert json.loads(json.dumps(log.to_json()))["acknowledged"] == 17


# --- MarkerWriter on a fake clock ---------------------------------------------------------------


def test_writer_sends_on_a_steady_grid() -> None:
    fake = FakeClock()
    sink = ListSink(fake)
    log = MarkerWriter(sink, 10, "grid", clock=fake.clock(), sleep=fake.sleep).run(1.0)
    assert [r.marker_id for r in log.records] == list(range(1, 11))
    assert [r.slot for r in log.records] == list(range(10))
    for r in log.records:
        assert r.sent_mono == pytest.approx(1000.0 + r.slot * 0.1)
        assert r.acknowledged and r.ack_utc == pytest.approx(r.sent_utc)
    assert log.skipped_slots == ()
    assert [m.marker_id for m in sink.got] == list(range(1, 11))
    assert sink.got[3].sent_utc == pytest.approx(EPOCH + 1000.3)
    assert sink.closed


def test_a_stalled_write_skips_the_slots_it_covered_and_numbering_stays_consecutive() -> None:
    fake = FakeClock()
    sink = ListSink(fake, slow={3: 0.35})  # marker 3 (slot 2, due 0.2) is done at 0.55
    log = MarkerWriter(sink, 10, "stall", clock=fake.clock(), sleep=fake.sleep).run(1.0)
    assert [r.slot for r in log.records] == [0, 1, 2, 5, 6, 7, 8, 9]
    assert [r.marker_id for r in log.records] == list(range(1, 9))
    assert log.skipped_slots == (3, 4)
    stalled = log.record(3)
    assert stalled.latency_s == pytest.approx(0.35)
    late = log.record(4)  # slot 5 was due at 0.5: sent at once when marker 3 was done
    assert late.due_mono == pytest.approx(1000.5)
    assert late.sent_mono == pytest.approx(1000.55)
    assert log.record(5).sent_mono == pytest.approx(1000.6)  # back on the grid


def test_failed_writes_are_recorded_with_their_error_class() -> None:
    fake = FakeClock()
    log = MarkerWriter(
        ListSink(fake, fail={2, 3}), 20, "fail", clock=fake.clock(), sleep=fake.sleep
    ).run(0.25)
    assert log.sent == 5
    assert log.acknowledged_ids == frozenset({1, 4, 5})
    failed = log.record(2)
    assert not failed.acknowledged and failed.ack_utc is None
    assert failed.error == "ConnectionError"
    assert failed.error_message == "refused 2"


def test_writer_rejects_bad_rate() -> None:
    with pytest.raises(WriterError, match="rate"):
        MarkerWriter(ListSink(), 0, "bad")


def test_stop_reports_a_write_that_hangs_then_recovers() -> None:
    release = threading.Event()
    entered = threading.Event()

    class HangingSink(ListSink):
        def write(self, marker: Marker) -> None:
            entered.set()
            release.wait(10)
            super().write(marker)

    writer = MarkerWriter(HangingSink(), 100, "hang")
    writer.start()
    assert entered.wait(5)
    with pytest.raises(WriterError, match=r"did not stop within 0\.2 s"):
        writer.stop(timeout=0.2)
    release.set()
    log = writer.stop(timeout=5)
    assert log.sent == 1 and log.records[0].acknowledged


# --- real MariaDB -------------------------------------------------------------------------------


def test_mysql_sink_at_50hz_everything_acknowledged_and_present(
    mariadb_pair: Any, run_id: str
) -> None:
    primary, replica = mariadb_pair.primary, mariadb_pair.replica
    with primary.connect("app") as conn:
        ensure_marker_table(conn)
    writer = MarkerWriter(MySqlSink(mariadb_pair.app_endpoint(primary).connect), 50, run_id)
    writer.start()
    time.sleep(1.0)
    log = writer.stop()
    assert log.sent >= 10
    assert [r for r in log.records if not r.acknowledged] == []
    with primary.connect("app") as conn:
        on_primary = read_present_markers(conn, run_id)
    assert on_primary == set(range(1, log.sent + 1))
    wait_for_replica(primary, replica, timeout=10)
    with replica.connect("app") as conn:
        result = verify_markers(log, read_present_markers(conn, run_id))
        with conn.cursor() as cur:
            cur.execute(
                "SELECT sent_utc FROM drdrill_markers WHERE run_id=%s AND marker_id=1", (run_id,)
            )
            (stored_ts,) = cur.fetchone()
    assert (result.lost_acknowledged, result.unacknowledged_landed) == (0, 0)
    assert result.acknowledged == log.sent
    assert stored_ts == pytest.approx(log.record(1).sent_utc)  # the marker carries its own time


def test_kill_primary_mid_writing_then_promote_counts_exactly_the_missing_acks(
    fresh_mariadb_pair: Any, run_id: str
) -> None:
    primary, replica = fresh_mariadb_pair.primary, fresh_mariadb_pair.replica
    with primary.connect("app") as conn:
        ensure_marker_table(conn)
    wait_for_replica(primary, replica, timeout=10)
    writer = MarkerWriter(MySqlSink(fresh_mariadb_pair.app_endpoint(primary).connect), 50, run_id)
    writer.start()
    time.sleep(0.6)
    primary.kill()
    killed_at = time.monotonic()
    time.sleep(0.3)
    log = writer.stop()
    promotion = promote_replica(replica, timeout=10)
    assert promotion.caught_up
    assert replication_status(replica) is None

    with replica.connect("app") as conn:
        present = read_present_markers(conn, run_id)
        result = verify_markers(log, present)
        # Cross-check every acknowledged id with its own query on the promoted replica.
        missing = []
        with conn.cursor() as cur:
            for marker_id in sorted(log.acknowledged_ids):
                cur.execute(
                    "SELECT COUNT(*) FROM drdrill_markers WHERE run_id=%s AND marker_id=%s",
                    (run_id, marker_id),
                )
                if cur.fetchone()[0] == 0:
                    missing.append(marker_id)
        # The promoted replica takes app writes (read_only is off; new ids, not auto-increment).
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO drdrill_markers VALUES (%s, %s, %s)", (run_id, 10**9, time.time())
            )
        conn.commit()

    print(f"\nkill+promote: {result.to_json()} promotion={promotion.to_json()}")
    assert result.lost_ids == tuple(missing)
    assert result.lost_acknowledged == len(missing)
    assert result.acknowledged == result.present_acknowledged + result.lost_acknowledged
    assert result.acknowledged == len(log.acknowledged_ids) > 0
    # Writes sent once the kill had happened all failed, and none of them landed.
    after_kill = [r for r in log.records if r.sent_mono > killed_at]
    assert after_kill and not any(r.acknowledged for r in after_kill)
    assert not any(r.marker_id in present for r in after_kill)
    landed = tuple(sorted(r.marker_id for r in log.failed if r.marker_id in present))
    assert result.unacknowledged_landed_ids == landed
    assert result.sent == log.sent > result.acknowledged
    if result.lost_acknowledged:
        assert result.data_loss_window_s > 0
    else:
        assert result.data_loss_window_s == 0.0


# --- HttpSink against a real (tiny) app ---------------------------------------------------------


class _MarkerApp:
    """A stdlib HTTP app on loopback that inserts markers into the real primary.

    It misbehaves on purpose, by marker id: ``% 5 == 0`` commits then answers 500 (landed,
    unacknowledged); ``% 7 == 0`` answers 503 without writing; ``% 11 == 0`` commits and
    answers 200 with a wrong echo (landed, unacknowledged). The rest: commit, 200, echo.
    """

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.bodies: list[dict[str, Any]] = []
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without this, Nagle and the client's
            # delayed ACK hold every answer for ~40 ms.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                marker = int(body["marker"])
                with app.lock:
                    app.bodies.append(body)
                    if marker % 7 != 0 or marker % 5 == 0:
                        with app.conn.cursor() as cur:
                            cur.execute(
                                "INSERT INTO drdrill_markers VALUES (%s, %s, %s)",
                                (body["run"], marker, body["ts"]),
                            )
                if marker % 5 == 0:
                    self._answer(500, {"ok": False})
                elif marker % 7 == 0:
                    self._answer(503, {"ok": False})
                elif marker % 11 == 0:
                    self._answer(200, {"ok": True, "marker": marker + 1000})
                else:
                    self._answer(200, {"ok": True, "marker": marker})

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api.php?action=write"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def marker_app(mariadb_pair: Any) -> Iterator[_MarkerApp]:
    conn = mariadb_pair.primary.connect("app")
    ensure_marker_table(conn)
    app = _MarkerApp(conn)
    app.thread.start()
    try:
        yield app
    finally:
        app.server.shutdown()
        app.server.server_close()
        conn.close()


def test_http_sink_acknowledges_only_an_echoed_2xx(
    marker_app: _MarkerApp, mariadb_pair: Any, run_id: str
) -> None:
    fake = FakeClock()  # the grid on a fake clock: exactly 30 real writes, however slow
    writer = MarkerWriter(
        HttpSink(marker_app.url, timeout_s=2.0), 50, run_id, clock=fake.clock(), sleep=fake.sleep
    )
    log = writer.run(0.6)
    assert log.sent == 30

    ids = range(1, 31)
    acked = {i for i in ids if i % 5 and i % 7 and i % 11}
    landed_unacked = {i for i in ids if i % 5 == 0 or (i % 11 == 0 and i % 7)}
    assert log.acknowledged_ids == acked
    errors = {r.marker_id: r.error for r in log.failed}
    assert errors[5] == errors[7] == errors[11] == "WriteRejected"

    with mariadb_pair.primary.connect("app") as conn:
        present = read_present_markers(conn, run_id)
    result = verify_markers(log, present)
    assert result.lost_acknowledged == 0
    assert set(result.unacknowledged_landed_ids) == landed_unacked
    assert present == acked | landed_unacked

    first = marker_app.bodies[0]
    assert set(first) == {"run", "marker", "ts"}
    assert (first["run"], first["marker"]) == (run_id, 1)
    assert first["ts"] == pytest.approx(log.record(1).sent_utc)
    assert first["ts"] == pytest.approx(EPOCH + 1000.0)  # the writer's clock, not the server's


def test_http_sink_to_a_closed_port_fails_fast_and_is_recorded() -> None:
    from drdrill.sandbox.mariadb import free_port

    url = f"http://127.0.0.1:{free_port()}/write"
    log = MarkerWriter(HttpSink(url, timeout_s=1.0), 20, "closed").run(0.15)
    assert log.sent >= 1
    assert {r.error for r in log.records} == {"ConnectionRefusedError"}
