"""The local demo endpoint: a one-process visitor-analytics app for drills without a sandbox.

It serves the runbook's endpoints (``/health-simple.php``, ``/``, ``/api.php?action=stats``) and a
write endpoint for RPO markers, stored in SQLite with a commit before each acknowledgement.
Run it with ``python -m drdrill.demo --port 8080 --db demo.sqlite``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

SCHEMA = """
CREATE TABLE IF NOT EXISTS visits (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS drdrill_markers (
    run_id TEXT NOT NULL, marker_id INTEGER NOT NULL, sent_utc REAL NOT NULL,
    PRIMARY KEY (run_id, marker_id)
);
"""


class Store:
    """The app's database: SQLite, one connection guarded by a lock."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def ping(self) -> bool:
        """Whether the database answers."""
        with self._lock:
            return bool(self._db.execute("SELECT 1").fetchone() == (1,))

    def stats(self) -> dict[str, int]:
        """Visit and marker counts."""
        with self._lock:
            visits = self._db.execute("SELECT COUNT(*) FROM visits").fetchone()[0]
            markers = self._db.execute("SELECT COUNT(*) FROM drdrill_markers").fetchone()[0]
        return {"visits": int(visits), "markers": int(markers)}

    def write_marker(self, run_id: str, marker: int, sent_utc: float) -> None:
        """Record a visit carrying an RPO marker; returns only after the commit."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("INSERT INTO visits (at) VALUES (?)", (sent_utc,))
                self._db.execute(
                    "INSERT OR IGNORE INTO drdrill_markers VALUES (?, ?, ?)",
                    (run_id, marker, sent_utc),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def markers(self, run_id: str) -> list[int]:
        """The marker ids of a run that are in the database."""
        with self._lock:
            rows = self._db.execute(
                "SELECT marker_id FROM drdrill_markers WHERE run_id = ? ORDER BY marker_id",
                (run_id,),
            ).fetchall()
        return [int(r[0]) for r in rows]


class DemoHandler(BaseHTTPRequestHandler):
    """Request handler; the store hangs off the server."""

    server: DemoServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: probes send many requests a second."""

    def _send(self, status: int, body: str, ctype: str = "application/json") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        """Health, index and stats."""
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        store = self.server.store
        if url.path == "/health-simple.php":
            ok = store.ping()
            self._send(200 if ok else 503, "OK" if ok else "DB DOWN", "text/plain")
        elif url.path in ("/", "/index.php"):
            count = store.stats()["visits"]
            page = f"<html><body><h1>Visitor Analytics</h1><p>Visits: {count}</p></body></html>"
            self._send(200, page, "text/html")
        elif url.path == "/api.php" and query.get("action") == ["stats"]:
            self._send(200, json.dumps({"status": "ok", **store.stats()}))
        elif url.path == "/api.php" and query.get("action") == ["markers"]:
            run = query.get("run", [""])[0]
            self._send(200, json.dumps({"run": run, "markers": store.markers(run)}))
        else:
            self._send(404, json.dumps({"error": "not found"}))

    def do_POST(self) -> None:
        """The write endpoint: acknowledges a marker only after its commit."""
        url = urlsplit(self.path)
        if url.path != "/api.php" or parse_qs(url.query).get("action") != ["write"]:
            self._send(404, json.dumps({"error": "not found"}))
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            run, marker, sent = str(body["run"]), int(body["marker"]), float(body["ts"])
        except (ValueError, KeyError, TypeError):
            self._send(400, json.dumps({"error": "expected {run, marker, ts}"}))
            return
        self.server.store.write_marker(run, marker, sent)
        self._send(200, json.dumps({"ok": True, "marker": marker}))


class DemoServer(ThreadingHTTPServer):
    """The HTTP server with its store."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: Store) -> None:
        super().__init__(address, DemoHandler)
        self.store = store


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until killed; prints ``listening on HOST:PORT`` once ready."""
    parser = argparse.ArgumentParser(prog="python -m drdrill.demo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--db", type=Path, required=True, help="SQLite file for visits and markers")
    args = parser.parse_args(argv)
    server = DemoServer((args.host, args.port), Store(args.db))
    host, port = server.server_address[:2]
    print(f"listening on {host!s}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
