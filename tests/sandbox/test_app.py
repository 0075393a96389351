"""The sandbox app as a real process against real MariaDB: endpoints on the primary, refused
writes on the read-only replica (replication unharmed), a killed, frozen and restarted database,
graceful SIGTERM, no orphan when its parent dies, and its own log of its first answer and write."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from drdrill.probes.writes import HttpSink, Marker, read_present_markers
from drdrill.sandbox.app import PASSWORD_ENV, ensure_schema
from drdrill.sandbox.mariadb import (
    MariaDBConfig,
    MariaDBServer,
    replication_status,
    setup_primary,
    unavailable_reason,
    wait_for_replica,
)
from drdrill.sandbox.truth import TruthLog

_REASON = unavailable_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]

Pair = tuple[MariaDBServer, MariaDBServer]

#: Where the tests' app processes listen: the sandbox's primary and DR ranges.
PRIMARY_IP = "127.0.1.10"
DR_IP = "127.0.2.10"

#: The app's database timeouts (connect 1 s, read 2 s) plus slack for a loaded 2-core machine:
#: a request to a frozen database must be answered within this, not hang.
DB_BOUND_S = 2.0 + 1.5


@dataclass(frozen=True)
class AppProcess:
    """One app process started by a test."""

    proc: subprocess.Popen[str]
    host: str
    port: int
    task_id: str

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"


StartApp = Callable[..., AppProcess]


@pytest.fixture
def start_app() -> Iterator[StartApp]:
    """Start ``python -m drdrill.sandbox.app`` against a server; killed after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(
        server: MariaDBServer,
        *,
        host: str = PRIMARY_IP,
        region: str = "primary",
        task_id: str = "test-task-1",
        extra: tuple[str, ...] = (),
    ) -> AppProcess:
        c = server.config
        cmd = [
            sys.executable,
            "-m",
            "drdrill.sandbox.app",
            *("--host", host, "--port", "0", "--db-host", c.host, "--db-port", str(c.port)),
            *("--db-user", c.app_user, "--db-name", c.database),
            *("--task-id", task_id, "--region", region),
            *extra,
        ]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, PASSWORD_ENV: c.app_password},
        )
        started.append(proc)
        assert proc.stdout is not None
        # An app that fails exits, and readline returns "" (EOF) rather than hanging.
        line = proc.stdout.readline()
        assert line.startswith("listening on "), f"app did not start: {line!r} rc={proc.poll()}"
        ip, port = line.split()[-1].rsplit(":", 1)
        return AppProcess(proc, ip, int(port), task_id)

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()  # SIGKILL works on a frozen process as well
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


def request(
    app: AppProcess, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, str, float]:
    """One request on a new connection: status, body text and seconds taken."""
    conn = http.client.HTTPConnection(app.host, app.port, timeout=10)
    started = time.monotonic()
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode()
    finally:
        conn.close()
    return resp.status, text, time.monotonic() - started


def write(app: AppProcess, run: str, marker: int) -> tuple[int, dict[str, Any]]:
    status, text, _ = request(
        app, "POST", "/api.php?action=write", {"run": run, "marker": marker, "ts": time.time()}
    )
    return status, json.loads(text)


def visits(server: MariaDBServer) -> int:
    with server.connect("root", database="app") as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM visits")
        return int(cur.fetchone()[0])


def markers(server: MariaDBServer, run: str) -> set[int]:
    with server.connect("root", database="app") as conn:
        return read_present_markers(conn, run)


def local_gtids(replica: MariaDBServer) -> list[str]:
    """GTIDs in the replica's binlog that it wrote itself (server id 32): must stay empty."""
    with replica.connect("root") as conn, conn.cursor() as cur:
        cur.execute("SELECT @@gtid_binlog_pos")
        pos = str(cur.fetchone()[0])
    return [g for g in pos.split(",") if g and g.split("-")[1] == str(replica.config.server_id)]


@pytest.fixture
def run() -> str:
    return f"app-{uuid.uuid4().hex[:12]}"


# --- against the primary --------------------------------------------------------------------


def test_primary_endpoints_and_acknowledged_write(
    app_tables: Pair, start_app: StartApp, run: str
) -> None:
    primary = app_tables[0]
    app = start_app(primary, task_id="primary-task-1")

    status, text, _ = request(app, "GET", "/health-simple.php")
    assert (status, text) == (200, "OK")

    before = visits(primary)
    status, answer = write(app, run, 7)
    assert (status, answer) == (200, {"ok": True, "marker": 7})
    # Acknowledged means committed: the row is there, with the marker's own id.
    assert markers(primary, run) == {7}
    assert visits(primary) == before + 1

    status, text, _ = request(app, "GET", "/api.php?action=stats")
    stats = json.loads(text)
    assert status == 200
    assert stats["status"] == "ok" and stats["task"] == "primary-task-1"
    assert stats["region"] == "primary" and stats["visits"] >= before + 1

    status, text, _ = request(app, "GET", "/")
    assert status == 200 and "Visitor Analytics" in text and "Visits: " in text

    status, text, _ = request(app, "GET", f"/api.php?action=markers&run={run}")
    assert (status, json.loads(text)) == (200, {"run": run, "markers": [7]})


def test_a_task_logs_its_first_2xx_and_first_write_once(
    app_tables: Pair, start_app: StartApp, run: str, tmp_path: Path
) -> None:
    """One ``app_first_request`` and one ``app_first_write`` a process, however many requests;
    each stamped while the client waited for that very answer."""
    primary = app_tables[0]
    truth = TruthLog(tmp_path / "truth.jsonl")
    app = start_app(primary, task_id="firsts-task", extra=("--truth", str(truth.path)))
    assert request(app, "GET", "/nope")[0] == 404
    assert truth.read() == []  # not a 2xx

    before = time.monotonic()
    assert request(app, "GET", "/api.php?action=stats")[0] == 200
    answered = time.monotonic()
    for _ in range(3):
        assert request(app, "GET", "/health-simple.php")[0] == 200
    sent = time.monotonic()
    assert write(app, run, 41) == (200, {"ok": True, "marker": 41})
    acked = time.monotonic()
    assert write(app, run, 42)[0] == 200
    assert request(app, "GET", "/")[0] == 200

    events = truth.read()
    assert [e.event for e in events] == ["app_first_request", "app_first_write"]
    first, wrote = events
    assert first.attrs == {
        "region": "primary",
        "task": "firsts-task",
        "path": "/api.php?action=stats",
        "status": 200,
    }
    assert before <= first.mono <= answered
    assert wrote.attrs == {"region": "primary", "task": "firsts-task", "marker_id": 41, "run": run}
    assert sent <= wrote.mono <= acked
    assert markers(primary, run) == {41, 42}


def test_retried_write_is_idempotent_and_bad_requests_refused(
    app_tables: Pair, start_app: StartApp, run: str
) -> None:
    primary = app_tables[0]
    app = start_app(primary)
    before = visits(primary)
    assert write(app, run, 1) == (200, {"ok": True, "marker": 1})
    assert write(app, run, 1) == (200, {"ok": True, "marker": 1})  # a client retry
    assert markers(primary, run) == {1}
    assert visits(primary) == before + 1  # one visit, not two

    status, text, _ = request(app, "POST", "/api.php?action=write", {"run": run})
    assert status == 400 and json.loads(text)["ok"] is False
    status, _, _ = request(
        app, "POST", "/api.php?action=write", {"run": run, "marker": "x", "ts": 1}
    )
    assert status == 400
    assert request(app, "GET", "/nope")[0] == 404
    assert markers(primary, run) == {1}


def test_http_sink_through_the_app_keeps_every_acknowledged_marker(
    app_tables: Pair, start_app: StartApp, run: str
) -> None:
    """The RPO writer's HTTP sink on a keep-alive connection: 30 markers, all stored."""
    app = start_app(app_tables[0])
    sink = HttpSink(f"{app.url}/api.php?action=write")
    try:
        for marker_id in range(1, 31):
            sink.write(Marker(run, marker_id, time.time()))
    finally:
        sink.close()
    assert markers(app_tables[0], run) == set(range(1, 31))


# --- against the read-only replica ------------------------------------------------------------


def test_replica_answers_health_but_refuses_writes_without_breaking_replication(
    app_tables: Pair, start_app: StartApp, run: str
) -> None:
    primary, replica = app_tables
    app = start_app(replica, host=DR_IP, region="dr", task_id="dr-task-1")

    status, text, _ = request(app, "GET", "/health-simple.php")
    assert (status, text) == (200, "OK")
    status, text, _ = request(app, "GET", "/api.php?action=stats")
    assert status == 200 and json.loads(text)["region"] == "dr"

    before = visits(replica)
    status, answer = write(app, run, 1)
    assert status == 503 and answer["ok"] is False
    assert "read-only" in answer["error"] or "1290" in answer["error"]
    assert markers(replica, run) == set() and markers(primary, run) == set()
    assert visits(replica) == before

    # Nothing was written on the replica itself, so GTID replication goes on.
    assert local_gtids(replica) == []
    with primary.connect("app") as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO drdrill_markers (run_id, marker_id, sent_utc) VALUES (%s, 2, 0)", (run,)
        )
    wait_for_replica(primary, replica, timeout=20)
    assert markers(replica, run) == {2}
    status_after = replication_status(replica)
    assert status_after is not None and status_after.sql_running and status_after.io_running
    assert status_after.last_sql_error == ""


def test_schema_is_created_on_the_primary_only(db_pair: Pair) -> None:
    """On a read-only server ensure_schema sends no DDL; on the primary it creates the tables."""
    primary, replica = db_pair
    database = f"schema_{uuid.uuid4().hex[:8]}"
    with primary.connect("root") as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {database}")
        cur.execute(f"GRANT ALL PRIVILEGES ON {database}.* TO 'app'@'%'")
    wait_for_replica(primary, replica, timeout=20)

    with replica.connect("app", database=database) as conn:
        assert ensure_schema(conn) is False
    assert local_gtids(replica) == []

    with primary.connect("app", database=database) as conn:
        assert ensure_schema(conn) is True
        assert ensure_schema(conn) is True  # tables present: nothing more to do
    wait_for_replica(primary, replica, timeout=20)
    with replica.connect("app", database=database) as conn:
        assert ensure_schema(conn) is True  # replicated
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            assert {row[0] for row in cur.fetchall()} == {"visits", "drdrill_markers"}


# --- a database that fails ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def solo_db() -> Iterator[MariaDBServer]:
    """A primary of the module's own, to kill, freeze and restart."""
    if _REASON is not None:
        pytest.skip(_REASON)
    server = MariaDBServer(MariaDBConfig(name="app-solo", server_id=41))
    try:
        server.start(timeout=30)
        setup_primary(server)
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def healthy_solo(solo_db: MariaDBServer) -> Iterator[MariaDBServer]:
    """The module's primary, running and not frozen before and after the test."""
    solo_db.start(timeout=30)
    try:
        yield solo_db
    finally:
        if solo_db.is_frozen:
            solo_db.thaw()
        solo_db.start(timeout=30)


def test_frozen_database_answers_503_within_the_timeouts(
    healthy_solo: MariaDBServer, start_app: StartApp, run: str
) -> None:
    app = start_app(healthy_solo)
    assert request(app, "GET", "/health-simple.php")[0] == 200
    healthy_solo.freeze()
    try:
        status, text, took = request(app, "GET", "/health-simple.php")
        assert status == 503 and took < DB_BOUND_S, (status, text, took)
        status, text, took = request(app, "GET", "/api.php?action=stats")
        assert status == 503 and json.loads(text)["status"] == "error" and took < DB_BOUND_S
        status, text, took = request(
            app, "POST", "/api.php?action=write", {"run": run, "marker": 1, "ts": time.time()}
        )
        assert status == 503 and json.loads(text)["ok"] is False and took < DB_BOUND_S
    finally:
        healthy_solo.thaw()
    assert request(app, "GET", "/health-simple.php")[0] == 200


def test_killed_database_answers_503_and_recovers(
    healthy_solo: MariaDBServer, start_app: StartApp
) -> None:
    app = start_app(healthy_solo)
    assert request(app, "GET", "/health-simple.php")[0] == 200
    healthy_solo.kill()
    status, _, took = request(app, "GET", "/health-simple.php")
    assert status == 503 and took < DB_BOUND_S
    assert request(app, "GET", "/")[0] == 503
    healthy_solo.start(timeout=30)
    assert request(app, "GET", "/health-simple.php")[0] == 200


def test_restarted_database_costs_no_failed_health_check(
    healthy_solo: MariaDBServer, start_app: StartApp
) -> None:
    """Pooled connections die with a restart; the first check after it must still pass."""
    app = start_app(healthy_solo)
    for _ in range(3):  # fill the pool
        assert request(app, "GET", "/health-simple.php")[0] == 200
    healthy_solo.restart(timeout=30)
    assert request(app, "GET", "/health-simple.php")[:2] == (200, "OK")


def test_app_starts_while_its_database_is_down(
    healthy_solo: MariaDBServer, start_app: StartApp
) -> None:
    healthy_solo.kill()
    app = start_app(healthy_solo)  # listens anyway, like a container whose DB is away
    assert request(app, "GET", "/health-simple.php")[0] == 503
    healthy_solo.start(timeout=30)
    assert request(app, "GET", "/health-simple.php")[0] == 200


def test_write_recreates_missing_tables(healthy_solo: MariaDBServer, start_app: StartApp) -> None:
    """Tables dropped (or never made) while the app runs: the next write creates them."""
    database = f"lazy_{uuid.uuid4().hex[:8]}"
    with healthy_solo.connect("root") as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {database}")
        cur.execute(f"GRANT ALL PRIVILEGES ON {database}.* TO 'app'@'%'")
    app = start_app(healthy_solo, extra=("--db-name", database))
    # The app made its tables in the background after listening; take them away.
    deadline = time.monotonic() + 10
    while request(app, "GET", "/api.php?action=stats")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with healthy_solo.connect("root", database=database) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE visits, drdrill_markers")
    assert request(app, "GET", "/api.php?action=stats")[0] == 503
    assert write(app, "lazy", 3) == (200, {"ok": True, "marker": 3})
    with healthy_solo.connect("root", database=database) as conn:
        assert read_present_markers(conn, "lazy") == {3}


# --- process life cycle ---------------------------------------------------------------------


def test_sigterm_finishes_the_request_in_flight_then_exits_0(
    healthy_solo: MariaDBServer, start_app: StartApp
) -> None:
    app = start_app(healthy_solo, extra=("--drain-timeout", "5"))
    healthy_solo.freeze()  # the request in flight takes ~2 s: the read timeout
    answers: list[tuple[int, str, float]] = []
    try:
        thread = threading.Thread(
            target=lambda: answers.append(request(app, "GET", "/health-simple.php"))
        )
        thread.start()
        time.sleep(0.3)
        app.proc.send_signal(signal.SIGTERM)
        assert app.proc.wait(10) == 0
        thread.join(10)
    finally:
        healthy_solo.thaw()
    assert answers and answers[0][0] == 503  # answered in full, not cut off


def test_sigterm_on_an_idle_app_exits_0_and_frees_the_port(
    healthy_solo: MariaDBServer, start_app: StartApp
) -> None:
    app = start_app(healthy_solo)
    keep_alive = http.client.HTTPConnection(app.host, app.port, timeout=5)
    keep_alive.request("GET", "/health-simple.php")
    assert keep_alive.getresponse().read() == b"OK"  # an idle keep-alive connection stays open
    started = time.monotonic()
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(10) == 0
    took = time.monotonic() - started
    keep_alive.close()
    print(f"sigterm to exit: {took * 1000:.0f} ms")
    with pytest.raises(OSError):
        request(app, "GET", "/health-simple.php")


def test_app_exits_when_its_parent_dies(healthy_solo: MariaDBServer) -> None:
    """Started with --parent-pid, an app whose parent was SIGKILLed does not linger."""
    c = healthy_solo.config
    launcher = textwrap.dedent(
        f"""
        import os, subprocess, sys, time
        proc = subprocess.Popen([sys.executable, "-m", "drdrill.sandbox.app",
            "--host", "{PRIMARY_IP}", "--port", "0", "--db-host", "{c.host}",
            "--db-port", "{c.port}", "--parent-pid", str(os.getpid())],
            stdout=subprocess.PIPE, text=True)
        sys.stdout.write(str(proc.pid) + " " + proc.stdout.readline())
        sys.stdout.flush()
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid_text, _, rest = parent.stdout.readline().partition(" ")
        assert rest.startswith("listening on "), rest
        child = psutil.Process(int(pid_text))
        parent.kill()
        parent.wait(10)
        child.wait(5)  # raises TimeoutExpired if the orphan lingers
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()
    assert not psutil.pid_exists(child.pid) or child.status() == psutil.STATUS_ZOMBIE


def test_bind_failure_exits_1(healthy_solo: MariaDBServer) -> None:
    with socket.socket() as taken:
        taken.bind((PRIMARY_IP, 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "drdrill.sandbox.app",
                "--host",
                PRIMARY_IP,
                "--port",
                str(port),
                "--db-host",
                healthy_solo.host,
                "--db-port",
                str(healthy_solo.port),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1 and "cannot listen" in done.stderr
