"""The sandbox's visitor-analytics app: one process an ECS task, backed by its region's MariaDB.

It serves the runbook's endpoints and the RPO write endpoint:

- ``GET /health-simple.php``: ``200 OK`` only when ``SELECT 1`` on its database answers within the
  timeouts, else 503;
- ``GET /``: the "Visitor Analytics" page with the visit count;
- ``GET /api.php?action=stats``: ``{"status": "ok", "visits", "task", "region"}``, 503
  ``{"status": "error"}`` when the database fails;
- ``POST /api.php?action=write`` with ``{"run", "marker", "ts"}``: a visit and a marker row in one
  transaction, acknowledged ``{"ok": true, "marker": id}`` only after the COMMIT; any database
  error (a read-only replica included) is a 503 ``{"ok": false, "error"}``;
- ``GET /api.php?action=markers&run=R``: the marker ids of a run present in the database.

Run it with ``python -m drdrill.sandbox.app --host IP --port P --db-host H --db-port N --db-user app
--db-password X --db-name app --task-id ID --region primary``; it prints ``listening on IP:PORT``
once it accepts connections and exits 0 on SIGTERM after the requests in flight (at most
``--drain-timeout`` seconds).

Every database call is bounded: connect 1 s, read 2 s, write 2 s (PyMySQL also reads the server
greeting with the read timeout, so a frozen server costs at most ~2 s a request).

Ground truth (``--truth PATH``, the sandbox's ``truth.jsonl``): each task process logs the first
request it answered with a 2xx, once the status line and headers are sent
(``app_first_request`` {region, task, path, status}), and the first write it committed, right
after the COMMIT (``app_first_write`` {region, task, marker_id, run}): one line each a process,
not one a request.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pymysql

from drdrill.errors import DrillError
from drdrill.probes.writes import MARKER_TABLE, MySqlEndpoint, ensure_marker_table
from drdrill.sandbox import dbclient
from drdrill.sandbox.truth import TruthLog

T = TypeVar("T")


VISITS_TABLE = "visits"
#: The environment variable the scheduler passes the database password in.
PASSWORD_ENV = "DRDRILL_DB_PASSWORD"
_VISITS_DDL = (
    f"CREATE TABLE IF NOT EXISTS `{VISITS_TABLE}` ("
    " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " visited_utc DOUBLE NOT NULL,"
    " task_id VARCHAR(64) NOT NULL DEFAULT '',"
    " region VARCHAR(16) NOT NULL DEFAULT ''"
    ") ENGINE=InnoDB"
)
_INSERT_MARKER = (
    f"INSERT IGNORE INTO `{MARKER_TABLE}` (run_id, marker_id, sent_utc) VALUES (%s, %s, %s)"
)
_INSERT_VISIT = f"INSERT INTO `{VISITS_TABLE}` (visited_utc, task_id, region) VALUES (%s, %s, %s)"

#: MariaDB error codes the app reacts to.
ER_NO_SUCH_TABLE = 1146
ER_OPTION_PREVENTS_STATEMENT = 1290  # read_only
#: Client and server codes of a connection that is gone (not of a statement that failed).
_DISCONNECT_CODES = frozenset({0, 1927, 2006, 2013, 2055, 4031})
#: A pooled connection that fails faster than this was dead already (closed by a restarted
#: server); one that took longer hit a timeout, and a retry would only double the wait.
_FAST_FAILURE_S = 0.5
_MAX_RUN_ID = 64


class AppDbError(DrillError):
    """A database call of the app that failed or returned something unusable."""


#: where the app's database is and how long any call to it may take (the RPO writer's endpoint)
DbSettings = MySqlEndpoint


def _code(exc: BaseException) -> int | None:
    """The MySQL error code of a PyMySQL error, if it has one."""
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return int(args[0])
    return None


def short_error(exc: BaseException) -> str:
    """An error as one short line for a JSON answer or a log."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:200]


def _is_disconnect(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return True
    if isinstance(exc, pymysql.err.OperationalError | pymysql.err.InterfaceError):
        return _code(exc) in _DISCONNECT_CODES and "timed out" not in str(exc)
    return False


class ConnectionPool:
    """A few idle PyMySQL connections shared by the request threads (autocommit on).

    A connection that saw any error is closed, never returned to the pool. Work that fails on a
    reused connection that was already dead (a restarted server) is retried once on a new one.
    """

    def __init__(self, settings: DbSettings, max_idle: int = 8) -> None:
        self.settings = settings
        self._max_idle = max_idle
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    def connect(self) -> Any:
        """A new connection with the short timeouts, autocommit on."""
        return self.settings.connect(autocommit=True)

    def run(self, work: Callable[[Any], T]) -> T:
        """Run ``work(conn)``; raise the database error (pymysql or OSError) if it fails."""
        conn, reused = self._acquire()
        started = time.monotonic()
        try:
            result = work(conn)
        except (pymysql.err.Error, OSError) as exc:
            self._discard(conn)
            if not (
                reused and _is_disconnect(exc) and time.monotonic() - started < _FAST_FAILURE_S
            ):
                raise
            conn = self.connect()
            try:
                result = work(conn)
            except BaseException:
                self._discard(conn)
                raise
        except BaseException:
            self._discard(conn)
            raise
        self._release(conn)
        return result

    def close(self) -> None:
        """Close the idle connections; later releases close theirs."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            self._discard(conn)

    def _acquire(self) -> tuple[Any, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self.connect(), False

    def _release(self, conn: Any) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        self._discard(conn)

    @staticmethod
    def _discard(conn: Any) -> None:
        with contextlib.suppress(Exception):  # broken already: closing is best effort
            conn.close()


def ensure_schema(conn: Any) -> bool:
    """Create the app's missing tables on a writable server; False when it is read-only.

    A read-only server (a replica) is never sent DDL: the app user could not write there anyway,
    and the tables arrive by replication. Tables that exist are left alone, so a restart of a
    task writes nothing to the binlog.
    """
    with conn.cursor() as cur:
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
        )
        present = {str(row[0]).lower() for row in cur.fetchall()}
        if {VISITS_TABLE, MARKER_TABLE} <= present:
            return True
        cur.execute("SELECT @@read_only")
        row = cur.fetchone()
        if row is not None and int(row[0]):
            return False
        try:
            cur.execute(_VISITS_DDL)
        except pymysql.err.OperationalError as exc:
            if _code(exc) == ER_OPTION_PREVENTS_STATEMENT:  # made read-only meanwhile
                return False
            raise
    ensure_marker_table(conn)
    return True


@dataclass(frozen=True)
class WriteRequest:
    """One marker write as the endpoint received it."""

    run_id: str
    marker_id: int
    sent_utc: float


class VisitorApp:
    """What the endpoints do, independent of HTTP: queries through a connection pool."""

    def __init__(self, db: DbSettings, task_id: str, region: str) -> None:
        self.db = db
        self.task_id = task_id
        self.region = region
        self.pool = ConnectionPool(db)
        self._state_lock = threading.Lock()
        self._db_ok: bool | None = None

    def prepare(self) -> bool:
        """Create the schema if the database is writable; False if it could not (yet)."""
        try:
            return self.pool.run(ensure_schema)
        except (pymysql.err.Error, OSError) as exc:
            self._log(f"schema not checked: {short_error(exc)}")
            return False

    def ping(self) -> bool:
        """Whether ``SELECT 1`` answers within the timeouts."""
        try:
            ok = self.pool.run(_select_one) == 1
        except (pymysql.err.Error, OSError) as exc:
            self._note(False, exc)
            return False
        self._note(ok, None)
        return ok

    def visits(self) -> int:
        """The number of visits; raises the database error."""
        try:
            count = self.pool.run(_count_visits)
        except (pymysql.err.Error, OSError) as exc:
            self._note(False, exc)
            raise
        self._note(True, None)
        return count

    def write(self, request: WriteRequest) -> None:
        """Store a visit carrying a marker; returns only after the COMMIT, else raises.

        A marker already present (a retried request) is acknowledged without a second visit.
        """

        def work(conn: Any) -> None:
            _write(conn, request, self.task_id, self.region)

        try:
            try:
                self.pool.run(work)
            except pymysql.err.ProgrammingError as exc:
                # Tables missing: a task that started before its database was writable.
                if _code(exc) != ER_NO_SUCH_TABLE or not self.pool.run(ensure_schema):
                    raise
                self.pool.run(work)
        except (pymysql.err.Error, OSError, AppDbError) as exc:
            if _code(exc) == ER_OPTION_PREVENTS_STATEMENT:
                # A read-only replica answers: the database is fine, it just refuses writes.
                self._note(True, None)
            else:
                self._note(False, exc)
            raise
        self._note(True, None)

    def markers(self, run_id: str) -> list[int]:
        """The marker ids of ``run_id`` present in the database."""

        def work(conn: Any) -> list[int]:
            with conn.cursor() as cur:
                cur.execute(
                    f"SELECT marker_id FROM `{MARKER_TABLE}` WHERE run_id = %s ORDER BY marker_id",
                    (run_id,),
                )
                return [int(r[0]) for r in cur.fetchall()]

        return self.pool.run(work)

    def close(self) -> None:
        """Close pooled connections."""
        self.pool.close()

    def _note(self, ok: bool, exc: BaseException | None) -> None:
        """Log a change of the database's state once, not once a request."""
        with self._state_lock:
            changed = self._db_ok is not ok
            self._db_ok = ok
        if changed:
            why = short_error(exc) if exc is not None else "no answer"
            self._log("database ok" if ok else f"database failing: {why}")

    def _log(self, message: str) -> None:
        print(f"app {self.task_id}: {message}", file=sys.stderr, flush=True)


def _select_one(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        row = cur.fetchone()
    return int(row[0]) if row else 0


def _count_visits(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM `{VISITS_TABLE}`")
        row = cur.fetchone()
    return int(row[0]) if row else 0


def _write(conn: Any, request: WriteRequest, task_id: str, region: str) -> None:
    conn.begin()
    try:
        with conn.cursor() as cur:
            cur.execute(_INSERT_MARKER, (request.run_id, request.marker_id, request.sent_utc))
            if cur.rowcount == 1:
                cur.execute(_INSERT_VISIT, (request.sent_utc, task_id, region))
            else:
                # IGNORE also turns some errors into warnings: acknowledge only a marker that
                # is really there.
                cur.execute(
                    f"SELECT 1 FROM `{MARKER_TABLE}` WHERE run_id = %s AND marker_id = %s",
                    (request.run_id, request.marker_id),
                )
                if cur.fetchone() is None:
                    raise AppDbError(f"marker {request.marker_id} neither inserted nor present")
        conn.commit()
    except BaseException:
        with contextlib.suppress(Exception):
            conn.rollback()
        raise


# --- HTTP -----------------------------------------------------------------------------------------


class AppHandler(BaseHTTPRequestHandler):
    """The endpoints; the app and the drain state hang off the server."""

    server: AppServer
    protocol_version = "HTTP/1.1"
    #: Idle keep-alive connections are closed after this long (a thread each).
    timeout = 30
    #: Headers and body leave in one segment (the handler flushes after each request): written
    #: apart, Nagle held the body until HAProxy's delayed ACK, 40 ms on one write in four
    wbufsize = -1
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: probes and health checks send many requests a second."""

    def do_GET(self) -> None:
        """Health, index, stats and markers."""
        with self.server.request():
            self._get(head=False)

    def do_HEAD(self) -> None:
        """As GET, without the body (some health checkers use HEAD)."""
        with self.server.request():
            self._get(head=True)

    def do_POST(self) -> None:
        """The write endpoint."""
        with self.server.request():
            self._post()

    def _get(self, *, head: bool) -> None:
        url = urlsplit(self.path)
        action = parse_qs(url.query).get("action", [""])[0]
        app = self.server.app
        if url.path == "/health-simple.php":
            ok = app.ping()
            self._send(200 if ok else 503, "OK" if ok else "DB DOWN", "text/plain", head=head)
        elif url.path in ("/", "/index.php"):
            try:
                count = app.visits()
            except (pymysql.err.Error, OSError):
                page = _page("Database unavailable", app)
                self._send(503, page, "text/html; charset=utf-8", head=head)
                return
            self._send(200, _page(f"Visits: {count}", app), "text/html; charset=utf-8", head=head)
        elif url.path == "/api.php" and action == "stats":
            try:
                count = app.visits()
            except (pymysql.err.Error, OSError) as exc:
                body = {"status": "error", "error": short_error(exc)}
                self._json(503, {**body, "task": app.task_id, "region": app.region}, head=head)
                return
            answer = {"status": "ok", "visits": count, "task": app.task_id, "region": app.region}
            self._json(200, answer, head=head)
        elif url.path == "/api.php" and action == "markers":
            run = parse_qs(url.query).get("run", [""])[0]
            try:
                found = app.markers(run)
            except (pymysql.err.Error, OSError) as exc:
                self._json(503, {"status": "error", "error": short_error(exc)}, head=head)
                return
            self._json(200, {"run": run, "markers": found}, head=head)
        else:
            self._json(404, {"error": "not found"}, head=head)

    def _post(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if url.path != "/api.php" or parse_qs(url.query).get("action") != ["write"]:
            self._json(404, {"error": "not found"})
            return
        try:
            request = _parse_write(raw)
        except ValueError as exc:
            self._json(400, {"ok": False, "error": str(exc)})
            return
        try:
            self.server.app.write(request)
        except (pymysql.err.Error, OSError, AppDbError) as exc:
            self._json(503, {"ok": False, "error": short_error(exc)})
            return
        self.server.firsts.wrote(request)
        self._json(200, {"ok": True, "marker": request.marker_id})

    def _json(self, status: int, body: dict[str, Any], *, head: bool = False) -> None:
        self._send(status, json.dumps(body), "application/json", head=head)

    def _send(self, status: int, body: str, ctype: str, *, head: bool = False) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if self.server.draining.is_set():
            # Going away: the client must not reuse this connection.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if 200 <= status < 300:
            # the status line is on its way: HAProxy's checks reset the connection as soon as
            # they have read it, so a log after the body would miss them
            self.server.firsts.served(self.path, status)
        if not head:
            self.wfile.write(data)
        # sent now, in one segment, while the request still counts as in flight: a drain
        # that ends with the count must not exit with the answer still in the buffer
        self.wfile.flush()


def _page(text: str, app: VisitorApp) -> str:
    return (
        "<!DOCTYPE html><html><head><title>Visitor Analytics</title></head><body>"
        "<h1>Visitor Analytics</h1>"
        f"<p>{html.escape(text)}</p>"
        f"<p>Served by {html.escape(app.task_id)} ({html.escape(app.region)})</p>"
        "</body></html>"
    )


def _parse_write(raw: bytes) -> WriteRequest:
    try:
        body = json.loads(raw or b"{}")
        run, marker, sent = body["run"], body["marker"], body["ts"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError("expected a json object {run, marker, ts}") from exc
    if not isinstance(run, str) or not 1 <= len(run) <= _MAX_RUN_ID:
        raise ValueError(f"run must be a string of 1-{_MAX_RUN_ID} characters")
    if isinstance(marker, bool) or not isinstance(marker, int):
        raise ValueError("marker must be an integer")
    if isinstance(sent, bool) or not isinstance(sent, int | float):
        raise ValueError("ts must be a number")
    return WriteRequest(run, marker, float(sent))


class Firsts:
    """Logs a task's first 2xx answer and its first committed write, once each, as truth."""

    def __init__(self, truth: TruthLog | None, task_id: str, region: str) -> None:
        self.truth = truth
        self.task_id = task_id
        self.region = region
        self._lock = threading.Lock()
        self._done: set[str] = set()

    def _once(self, what: str) -> bool:
        with self._lock:
            if self.truth is None or what in self._done:
                return False
            self._done.add(what)
            return True

    def served(self, path: str, status: int) -> None:
        """A request was answered with a 2xx (logged the first time only)."""
        if self._once("request"):
            assert self.truth is not None
            self.truth.append(
                "app_first_request",
                self.task_id,
                region=self.region,
                task=self.task_id,
                path=path,
                status=status,
            )

    def wrote(self, request: WriteRequest) -> None:
        """A write was committed (logged the first time only)."""
        if self._once("write"):
            assert self.truth is not None
            self.truth.append(
                "app_first_write",
                self.task_id,
                region=self.region,
                task=self.task_id,
                marker_id=request.marker_id,
                run=request.run_id,
            )


class AppServer(ThreadingHTTPServer):
    """The HTTP server with its app; counts requests in flight so that SIGTERM can drain them."""

    daemon_threads = True
    # server_close() must not wait for idle keep-alive connections; the drain counts requests.
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self, address: tuple[str, int], app: VisitorApp, truth: TruthLog | None = None
    ) -> None:
        super().__init__(address, AppHandler)
        self.app = app
        self.firsts = Firsts(truth, app.task_id, app.region)
        self.draining = threading.Event()
        self._in_flight = 0
        self._idle = threading.Condition()

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """Count one request in flight for the drain."""
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away is ordinary (HAProxy's health checks reset their connection
        once they read the status line): nothing logged. Anything else: one line, no
        traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, TimeoutError)):
            return
        print(
            f"app {self.app.task_id}: request from {client_address[0]}:{client_address[1]} "
            f"failed: {type(exc).__name__}: {exc}",
            file=sys.stderr,
            flush=True,
        )

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight; False if some still were after ``timeout``."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)


def arguments() -> argparse.ArgumentParser:
    """The app's command line, as the ECS scheduler gives it to each task."""
    parser = argparse.ArgumentParser(prog="python -m drdrill.sandbox.app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--db-host", required=True)
    parser.add_argument("--db-port", type=int, required=True)
    parser.add_argument("--db-user", default="app")
    parser.add_argument(
        "--db-password",
        default=os.environ.get(PASSWORD_ENV, ""),
        help=f"the database password (default: ${PASSWORD_ENV}, kept out of the process list)",
    )
    parser.add_argument("--db-name", default="app")
    parser.add_argument("--task-id", default=f"task-{os.getpid()}")
    parser.add_argument("--region", choices=("primary", "dr"), default="primary")
    parser.add_argument(
        "--start-delay", type=float, default=0.0, help="seconds before listening (a slow start)"
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=0.8,
        help="on SIGTERM, at most this long for the requests in flight",
    )
    parser.add_argument(
        "--truth", default=None, help="the ground-truth log to append this task's firsts to"
    )
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="exit when this process is no longer the parent (no orphans)",
    )
    return parser


def db_settings(args: argparse.Namespace) -> DbSettings:
    """The database a task's pool connects to, from its command line."""
    return dbclient.endpoint(
        args.db_host, args.db_port, args.db_user, args.db_password, args.db_name
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM (or the parent's death); prints ``listening on IP:PORT`` once ready."""
    args = arguments().parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.start_delay > 0 and stop.wait(args.start_delay):
        return 0
    app = VisitorApp(
        db_settings(args),
        task_id=args.task_id,
        region=args.region,
    )
    try:
        truth = TruthLog(Path(args.truth)) if args.truth else None
        server = AppServer((args.host, args.port), app, truth)
    except OSError as exc:
        where = f"{args.host}:{args.port}"
        print(f"app {args.task_id}: cannot listen on {where}: {exc}", file=sys.stderr)
        return 1
    serving = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="serve", daemon=True
    )
    serving.start()
    host, port = server.server_address[:2]
    print(f"listening on {host!s}:{port}", flush=True)
    # In the background: a frozen database must delay neither listening nor a SIGTERM. A write
    # that comes before the tables creates them itself (see VisitorApp.write).
    threading.Thread(target=app.prepare, name="schema", daemon=True).start()
    while not stop.wait(0.2):
        if args.parent_pid is not None and os.getppid() != args.parent_pid:
            print(f"app {args.task_id}: parent gone, exiting", file=sys.stderr, flush=True)
            break
    server.draining.set()
    server.shutdown()  # no new connections are accepted after this
    server.server_close()
    server.wait_idle(args.drain_timeout)
    app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
